"""Pinned device certificates' expiry (issue 18, item 2): `keyturn device trust` records the pinned
certificate's notAfter and subject with the pin, and `keyturn doctor` warns 30 days ahead and reports an
expired one as a problem, with the fix. The devices are TLS listeners presenting trustme certificates
of short validity; the CLI runs in a worker thread while they serve on the test's loop."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from typer.testing import CliRunner

from keyturn.cli.main import app
from keyturn.targets.tofu import fetch_certificate

CA = trustme.CA()


@asynccontextmanager
async def device(days: float) -> AsyncIterator[int]:
    """A TLS listener on 127.0.0.1 whose certificate ends `days` from now (negative: already expired)."""
    now = datetime.now(UTC)
    leaf = CA.issue_cert("127.0.0.1", common_name=f"sw-{days:g}d", not_before=now - timedelta(days=300),
                         not_after=now + timedelta(days=days))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(ctx)

    async def serve(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


class Keyturn:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.runner = CliRunner()
        self.env = {k: None for k in os.environ if k.startswith("KEYTURN_")} | {"KEYTURN_HOME": str(home)}

    def __call__(self, *args: str, code: int = 0) -> str:
        r = self.runner.invoke(app, list(args), env=self.env)
        assert r.exit_code == code, (r.stdout, r.stderr, r.exception)
        return str(r.stdout)

    def device_with_account(self, title: str, port: int) -> str:
        uid = self("record", "add", "--type", "pamNetworkDevice", "--title", title,
                   "--field", f"host=127.0.0.1:{port}").strip()
        user = self("record", "add", "--type", "pamUser", "--title", f"{title} netops", "--login", "netops",
                    "--password", "old-pass-1").strip()
        self("rotation", "set", user, "--target", "iosxe-restconf", "--resource", uid)
        return uid

    def custom(self, uid: str) -> dict[str, Any]:
        data = json.loads(self("record", "show", uid, "--json"))
        return {f["label"]: f["value"][0] for f in data["custom"]}

    def doctor(self) -> dict[str, Any]:
        r = self.runner.invoke(app, ["doctor", "--json"], env=self.env)
        checks: dict[str, Any] = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
        return checks


@pytest.fixture
def keyturn(tmp_path: Path) -> Keyturn:
    k = Keyturn(tmp_path / "home")
    k("init")
    return k


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def test_trust_records_the_expiry_and_doctor_warns_30_days_ahead(keyturn: Keyturn) -> None:
    async with device(days=12) as port:
        uid = keyturn.device_with_account("sw-soon", port)
        presented = await fetch_certificate("127.0.0.1", port)
        out = await in_thread(keyturn, "device", "trust", "sw-soon", "--tls-only", "--yes")
        assert out.endswith("pinned on sw-soon: fingerprint\n")
        custom = keyturn.custom(uid)
        assert custom["fingerprint"] == presented.sha256
        assert custom["certificate_not_after"] == presented.not_after
        assert custom["certificate_subject"] == presented.subject and "CN=sw-12d" in presented.subject

    check = keyturn.doctor()["device_certs"]
    assert check["status"] == "warning"
    assert "sw-soon: pinned certificate expires" in check["detail"] and "(11 days)" in check["detail"]
    assert "`keyturn device trust sw-soon --tls-only --replace`" in check["fix"]


async def test_an_expired_pinned_certificate_is_a_problem(keyturn: Keyturn) -> None:
    async with device(days=-2) as port, device(days=200) as fine:
        keyturn.device_with_account("sw-old", port)
        keyturn.device_with_account("sw-fine", fine)
        await in_thread(keyturn, "device", "trust", "sw-old", "--tls-only", "--yes")
        await in_thread(keyturn, "device", "trust", "sw-fine", "--tls-only", "--yes")
    check = keyturn.doctor()["device_certs"]
    assert check["status"] == "problem"
    assert "sw-old: pinned certificate expired" in check["detail"] and "sw-fine" not in check["detail"]
    assert "sw-old --tls-only --replace" in check["fix"]
    r = keyturn.runner.invoke(app, ["doctor"], env=keyturn.env)
    assert r.exit_code == 1 and "fix: renew the certificate on sw-old" in r.stdout


async def test_a_pin_made_before_expiries_were_recorded_gets_it_without_a_new_pin(keyturn: Keyturn) -> None:
    async with device(days=200) as port:
        uid = keyturn.device_with_account("sw-legacy", port)
        presented = await fetch_certificate("127.0.0.1", port)
        # A pin stored by an older keyturn: the fingerprint only.
        keyturn("record", "edit", uid, "--custom", f"fingerprint={presented.sha256}")
        assert "certificate_not_after" not in keyturn.custom(uid)
        before = keyturn.doctor()["device_certs"]
        assert "1 pinned before expiries were recorded (sw-legacy)" in before["detail"]
        out = await in_thread(keyturn, "device", "trust", "sw-legacy", "--tls-only", "--yes")
    assert "already pins these values; recorded the certificate's expiry" in out
    custom = keyturn.custom(uid)
    assert custom["fingerprint"] == presented.sha256
    assert custom["certificate_not_after"] == presented.not_after
    check = keyturn.doctor()["device_certs"]
    assert check["status"] == "ok" and "1 pinned certificate(s) valid beyond 30 days" in check["detail"]


def test_a_malformed_recorded_expiry_is_reported_not_fatal(keyturn: Keyturn) -> None:
    uid = keyturn.device_with_account("sw-odd", 1)
    keyturn("record", "edit", uid, "--custom", "fingerprint=" + "ab" * 32, "--custom",
            "certificate_not_after=next tuesday")
    check = keyturn.doctor()["device_certs"]
    assert check["status"] == "warning" and "'next tuesday' is not a date" in check["detail"]
