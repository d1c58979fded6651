"""`keyturn device trust` against a simulator lab: pin, rotate with the pin alone, refuse a wrong pin.

The CLI runs in a worker thread (it starts its own event loop) while the lab serves on the test's loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from keyturn.cli.main import app
from keyturn.targets.tofu import fetch_fingerprint
from tests.lab_fixtures import RunningLab, running_lab

WRONG_PIN = "ab" * 32


@dataclass
class Bench:
    lab: RunningLab
    runner: CliRunner
    env: dict[str, Any]

    def run_sync(self, *args: str, code: int = 0) -> Any:
        result = self.runner.invoke(app, list(args), env=self.env)
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result

    async def run(self, *args: str, code: int = 0) -> Any:
        return await asyncio.to_thread(self.run_sync, *args, code=code)

    def device_record(self, title: str, *custom: str) -> str:
        dev = self.lab.state.iosxe[0]
        args = ["record", "add", "--type", "pamNetworkDevice", "--title", title,
                "--field", f"host={dev.host}:{dev.restconf_port}", "--custom", f"ssh_port={dev.ssh_port}"]
        for c in custom:
            args += ["--custom", c]
        return str(self.run_sync(*args).stdout.strip())

    def user_record(self, title: str, resource: str) -> str:
        user = self.lab.state.iosxe[0].users[0]
        uid = str(self.run_sync("record", "add", "--type", "pamUser", "--title", title, "--login",
                                user.username, "--password", user.password).stdout.strip())
        self.run_sync("rotation", "set", uid, "--target", "iosxe-restconf", "--resource", resource,
                      "--max-attempts", "1")
        return uid

    def custom(self, uid: str) -> dict[str, Any]:
        data = json.loads(self.run_sync("record", "show", uid, "--json").stdout)
        return {f["label"]: f["value"][0] for f in data["custom"]}

    def trust_audit(self, uid: str) -> list[dict[str, Any]]:
        entries = json.loads(self.run_sync("audit", "list", "--record", uid, "--json").stdout)
        return [e for e in entries if e["action"] == "device.trust"]

    def restconf_requests(self) -> int:
        frontend = self.lab.lab.device(self.lab.state.iosxe[0].name).restconf
        assert frontend is not None
        return int(frontend.requests)


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    async with running_lab(tmp_path, iosxe=1, meraki_orgs=0, users_per_device=1) as lab:
        env = {"KEYTURN_HOME": str(tmp_path / "home"), "KEYTURN_MASTER_KEY": None, "KEYTURN_PASSPHRASE": None,
               "KEYTURN_DATABASE_URL": None, "KEYTURN_KEY_FILE": None}
        b = Bench(lab, CliRunner(), env)
        b.run_sync("init")
        yield b


def _colons(hex_digest: str) -> str:
    return ":".join(hex_digest[i:i + 2] for i in range(0, 64, 2)).upper()


async def test_trust_pins_both_and_a_pin_alone_rotates_over_restconf(bench: Bench) -> None:
    dev = bench.lab.state.iosxe[0]
    cert_sha256 = await fetch_fingerprint(dev.host, dev.restconf_port or 443)
    host_key = str(bench.lab.state.extra["ssh_host_key_fingerprint"])
    res = bench.device_record("sw1")
    user = bench.user_record("sw1 netops", res)

    out = (await bench.run("device", "trust", "sw1", "--yes")).stdout
    assert f"  SHA-256         {_colons(cert_sha256)}\n" in out
    assert f"  fingerprint  {host_key}\n  key type     ssh-ed25519\n  pin          new\n" in out
    assert "show crypto pki certificates verbose" in out
    assert out.endswith("pinned on sw1: fingerprint, host_key_fingerprint\n")
    custom = bench.custom(res)
    assert custom["fingerprint"] == cert_sha256 and custom["host_key_fingerprint"] == host_key
    assert "ca_bundle" not in custom
    [entry] = bench.trust_audit(res)
    assert entry["details"]["fingerprint"] == {"old": None, "new": cert_sha256}
    assert entry["details"]["host_key_fingerprint"] == {"old": None, "new": host_key}

    again = await bench.run("device", "trust", "sw1", "--yes")
    assert again.stdout.endswith("nothing to change: sw1 already pins these values\n")
    assert len(bench.trust_audit(res)) == 1

    # The pinned certificate fingerprint alone (no CA bundle) is the trust for RESTCONF.
    await bench.run("rotate", user)
    new = bench.run_sync("reveal", user).stdout.strip()
    assert new != dev.users[0].password
    async with bench.lab.control() as ctl:
        assert await ctl.verify_iosxe(dev.name, dev.users[0].username, new)


async def test_wrong_pin_refuses_before_any_request_and_trust_needs_replace(bench: Bench) -> None:
    dev = bench.lab.state.iosxe[0]
    res = bench.device_record("sw1", f"fingerprint={WRONG_PIN}")
    user = bench.user_record("sw1 netops", res)

    failed = await bench.run("rotate", user, code=1)
    assert "certificate does not match the pinned fingerprint" in failed.stdout + failed.stderr
    assert bench.restconf_requests() == 0           # no request, so no credential, reached the device
    assert bench.run_sync("reveal", user).stdout.strip() == dev.users[0].password

    refused = await bench.run("device", "trust", "sw1", "--yes", "--tls-only", code=1)
    assert "!! TLS certificate fingerprint of 'sw1' CHANGED since it was pinned" in refused.stderr
    assert f"!!   pinned:  {WRONG_PIN}" in refused.stderr
    assert refused.stderr.splitlines()[-1] == (
        "error: TLS certificate fingerprint of 'sw1' differs from the pinned value: a replaced certificate "
        "or key, or someone in the path; check on the device, then run again with --replace")
    assert bench.custom(res)["fingerprint"] == WRONG_PIN and not bench.trust_audit(res)

    await bench.run("device", "trust", "sw1", "--yes", "--tls-only", "--replace")
    custom = bench.custom(res)
    assert custom["fingerprint"] != WRONG_PIN and "host_key_fingerprint" not in custom
    [entry] = bench.trust_audit(res)
    assert entry["details"]["fingerprint"]["old"] == WRONG_PIN and entry["details"]["replaced"] is True
    await bench.run("rotate", user)
    assert bench.restconf_requests() > 0


async def test_no_tty_without_yes_refuses_and_stores_nothing(bench: Bench) -> None:
    res = bench.device_record("sw1")
    r = await bench.run("device", "trust", "sw1", "--ssh-only", code=2)
    assert r.stderr == ("error: refusing to pin without confirmation: compare the values above with the "
                        "device, then run again with --yes\n")
    assert "host_key_fingerprint" not in bench.custom(res) and not bench.trust_audit(res)
    assert "TLS certificate" not in r.stdout and "SSH host key at" in r.stdout

    both = await bench.run("device", "trust", "sw1", "--ssh-only", "--tls-only", code=2)
    assert both.stderr == "error: --tls-only and --ssh-only exclude each other\n"


async def test_unreachable_device_is_one_clear_line(bench: Bench) -> None:
    bench.run_sync("record", "add", "--type", "pamNetworkDevice", "--title", "gone",
                   "--field", "host=127.0.0.1:1")
    r = await bench.run("device", "trust", "gone", "--tls-only", "--yes", code=1)
    assert r.stderr == "error: 127.0.0.1:1: cannot read the certificate (ConnectionRefusedError)\n"
