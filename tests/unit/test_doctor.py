"""`keyturn doctor` (issue 18, item 2) on real installations: a healthy one (SQLite and PostgreSQL, a broker
on the local Redis, a live worker, audit sinks to a file and to a TCP syslog receiver listening here,
pinned devices, a valid serve certificate) exits 0 with every check ok; a deliberately broken one
reports each broken thing once, with its fix, and exits 1; an unreachable database or a sealed vault
still runs every check that does not need them.
"""

from __future__ import annotations

import base64
import json
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from keyturn.cli.main import app
from keyturn.config import Settings
from keyturn.dispatch.ledger import RequestLedger
from keyturn.doctor import PROBLEM, SKIPPED, WARNING, expiry_status, skew_status
from keyturn.scheduler.state import schedule_state
from keyturn.vault import Field, Vault
from tests.pg import pg_schema_url

REDIS = "redis://127.0.0.1:6379/14"
CLOSED = "127.0.0.1:1"   # nothing listens on port 1


def redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
        return True
    except OSError:
        return False


def cert_file(path: Path, *, days: float) -> Path:
    """A self-signed certificate whose validity ends `days` from now (negative: already expired)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, path.stem)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=400))
            .not_valid_after(now + timedelta(days=days)).sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture
def syslog_receiver() -> Iterator[str]:
    """A TCP listener (accepts, never reads): what the doctor needs to call the sink reachable."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    try:
        yield f"127.0.0.1:{srv.getsockname()[1]}"
    finally:
        srv.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    with pg_schema_url("kt_doctor") as url:
        yield url


def install(home: Path, database_url: str | None, *, sink: str, broker: str, pinned: bool = True,
            ca_days: float = 365) -> dict[str, str]:
    """A vault with two devices and three accounts; returns the environment that runs keyturn on it."""
    settings = Settings(home=home, database_url=database_url)
    with Vault.init(settings) as v:
        trust = [Field("text", "fingerprint", ["ab" * 32]),
                 Field("text", "host_key_fingerprint", ["SHA256:x"])]
        ca = cert_file(home / "ca.pem", days=ca_days)
        sw1 = v.add(type="pamNetworkDevice", title="sw1", fields=[Field("host", None, ["10.0.0.1"])],
                    custom=[*trust, Field("text", "ca_bundle", [str(ca)])])
        sw2 = v.add(type="pamNetworkDevice", title="sw2", fields=[Field("host", None, ["10.0.0.2"])],
                    custom=trust if pinned else [])
        for title, target, resource in (("u1", "iosxe-restconf", sw1.uid), ("u2", "iosxe-ssh", sw1.uid),
                                        ("u3", "iosxe-restconf", sw2.uid)):
            v.add(type="pamUser", title=title, fields=[Field("login", None, [title])],
                  meta={"rotation": {"target": target, "resource": resource}})
        RequestLedger(v.engine).heartbeat("w1", site="default", concurrency=1, in_flight=0)
    host, port = sink.split(":")
    env = {"KEYTURN_HOME": str(home), "KEYTURN_BROKER_URL": broker,
           "KEYTURN_SERVE_CERT": str(cert_file(home / "serve.pem", days=365)),
           "KEYTURN_AUDIT_SINKS": json.dumps([
               {"name": "file", "type": "jsonl", "path": str(home / "audit.jsonl")},
               {"name": "siem", "type": "syslog", "protocol": "tcp", "host": host, "port": int(port)}])}
    if database_url:
        env["KEYTURN_DATABASE_URL"] = database_url
    return env


def doctor(env: dict[str, str],
           monkeypatch: pytest.MonkeyPatch) -> tuple[int, dict[str, dict[str, str]], str]:
    for k in [k for k in os.environ if k.startswith("KEYTURN_")]:
        monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    runner = CliRunner()
    text = runner.invoke(app, ["doctor"])
    r = runner.invoke(app, ["doctor", "--json"])
    data: dict[str, Any] = json.loads(r.output)
    assert text.exit_code == r.exit_code and data["healthy"] == (r.exit_code == 0)
    names = [c["name"] for c in data["checks"]]
    assert len(names) == len(set(names))  # each check once
    return r.exit_code, {c["name"]: c for c in data["checks"]}, text.output


@pytest.mark.skipif(not redis_up(), reason="Redis is not running on 127.0.0.1:6379")
def test_a_healthy_installation_is_all_ok(tmp_path: Path, database_url: str | None, syslog_receiver: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    env = install(tmp_path / "home", database_url, sink=syslog_receiver, broker=REDIS)
    code, checks, text = doctor(env, monkeypatch)
    assert code == 0, text
    assert {n: c["status"] for n, c in checks.items() if c["status"] != "ok"} == {}, text
    assert set(checks) == {"key_file", "database", "schema", "clock", "vault", "broker", "workers",
                           "audit_sink:file", "audit_sink:siem", "trust", "needs_attention", "unverified",
                           "serve_cert", "device_certs"}
    assert "1 live worker(s) on default" in checks["workers"]["detail"]
    assert "2 IOS XE device(s)" in checks["trust"]["detail"]
    assert text.rstrip().endswith("healthy")


def test_a_broken_installation_reports_each_broken_thing_once_with_its_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    env = install(home, None, sink=CLOSED, broker=f"redis://{CLOSED}/0", pinned=False, ca_days=10)
    (home / "master.key").chmod(0o644)
    env["KEYTURN_SERVE_CERT"] = str(cert_file(home / "old.pem", days=-1))
    env.pop("KEYTURN_BROKER_URL")
    env["KEYTURN_BROKER_URL"] = f"redis://{CLOSED}/0"
    engine = sa.create_engine(Settings(home=home).effective_database_url)
    with engine.begin() as conn:
        uid = conn.execute(sa.text("SELECT uid FROM kt_records WHERE title = 'u1'")).scalar_one()
        conn.execute(schedule_state.insert().values(record_uid=uid, needs_attention=True,
                                                    attention_reason="3 failed attempts",
                                                    updated_at=datetime.now(UTC)))
    engine.dispose()

    code, checks, text = doctor(env, monkeypatch)
    assert code == 1
    problems = {n for n, c in checks.items() if c["status"] == PROBLEM}
    assert problems == {"key_file", "broker", "audit_sink:siem", "trust", "needs_attention",
                        "serve_cert"}, text
    assert {n for n, c in checks.items() if c["status"] == WARNING} == {"device_certs"}, text
    assert checks["vault"]["status"] == SKIPPED       # the key file's problem, not reported a second time
    assert checks["key_file"]["fix"] == f"chmod 600 {home / 'master.key'}"
    assert "sw2 (tls)" in checks["trust"]["detail"] and "keyturn device trust" in checks["trust"]["fix"]
    assert "u1" in checks["needs_attention"]["detail"]
    assert "expired" in checks["serve_cert"]["detail"]
    for name in problems | {"device_certs"}:
        assert checks[name]["fix"], name
        # one line per broken thing, its fix under it
        assert sum(line.split()[1:2] == [name] for line in text.splitlines()) == 1, (name, text)
    assert text.count("fix: ") == len(problems) + 1


def test_an_unreachable_database_still_runs_every_other_check(tmp_path: Path, syslog_receiver: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    env = install(home, None, sink=syslog_receiver, broker=f"redis://{CLOSED}/0")
    env["KEYTURN_DATABASE_URL"] = f"postgresql+psycopg://keyturn@{CLOSED}/keyturn?connect_timeout=2"
    code, checks, _ = doctor(env, monkeypatch)
    assert code == 1
    assert checks["database"]["status"] == PROBLEM and "KEYTURN_DATABASE_URL" in checks["database"]["fix"]
    assert {n for n, c in checks.items() if c["status"] == SKIPPED} == {
        "schema", "clock", "vault", "workers", "trust", "needs_attention", "unverified", "device_certs"}
    assert checks["key_file"]["status"] == "ok" and checks["serve_cert"]["status"] == "ok"
    assert checks["broker"]["status"] == PROBLEM                 # still checked, and found down
    assert checks["audit_sink:siem"]["status"] == "ok"


def test_a_sealed_vault_still_runs_every_other_check(tmp_path: Path, syslog_receiver: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    env = install(home, None, sink=syslog_receiver, broker=REDIS)
    env["KEYTURN_MASTER_KEY"] = base64.b64encode(os.urandom(32)).decode()   # not this vault's key
    code, checks, text = doctor(env, monkeypatch)
    assert code == 1
    assert [n for n, c in checks.items() if c["status"] == PROBLEM] == ["vault"], text
    assert "sealed" in checks["vault"]["detail"] and "master key" in checks["vault"]["fix"]
    assert checks["needs_attention"]["status"] == "ok" and checks["trust"]["status"] == "ok"


def test_thresholds() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert [expiry_status(now + timedelta(days=d), now) for d in (-1, 0, 10, 30, 31)] == [
        PROBLEM, PROBLEM, WARNING, WARNING, "ok"]
    assert [skew_status(s) for s in (0.2, -1.5, 12.0, -30.0)] == ["ok", WARNING, PROBLEM, PROBLEM]
