"""`keyturn serve` as a real subprocess: answers /healthz, serves the API, logs JSON without secrets,
and exits 0 on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

SECRET = "Integration-S3cret-Value-42"


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env["KEYTURN_HOME"] = str(tmp_path / "home")
    return env


def _keyturn(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyturn.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


@contextlib.contextmanager
def _serving(argv_tail: list[str], env: dict[str, str],
             seen: list[str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`keyturn serve` as a subprocess; yields (process, the URL it logged as listening on). Every
    stderr line lands in `seen` (JSON logs); the process is killed if it is still running at exit."""
    argv = [sys.executable, "-m", "keyturn.cli.main", "serve", "--port", "0", "--grace", "5", *argv_tail]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        url = None
        while url is None:
            line = lines.get(timeout=60)
            seen.append(line)
            msg = json.loads(line)["msg"]
            if "listening on" in msg:
                url = msg.rsplit(" ", 1)[1]
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=30)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        while not lines.empty():
            seen.append(lines.get())


def test_serve_subprocess_healthz_api_logs_and_sigterm(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert _keyturn("init", env=env).returncode == 0
    sink = tmp_path / "audit.jsonl"   # an audit sink: serve ships every audit entry to it
    (tmp_path / "home" / "keyturn.toml").write_text(
        f'[[keyturn.audit_sinks]]\nname = "file"\ntype = "jsonl"\npath = "{sink}"\n')
    made = _keyturn("token", "create", "--role", "admin", "--name", "it", "--expires", "1d", env=env)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("kt_")
    listed = _keyturn("token", "list", "--json", env=env)
    assert [t["name"] for t in json.loads(listed.stdout)] == ["it"] and token not in listed.stdout

    seen: list[str] = []
    with _serving([], env, seen) as (proc, url):
        port = int(url.rsplit(":", 1)[1])
        base = f"http://127.0.0.1:{port}"
        h = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, timeout=30) as c:
            assert c.get("/healthz").json() == {"status": "ok"}
            ready = c.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["scheduler"] == "running"
            assert c.get("/records").status_code == 401
            r = c.post("/records", headers=h, json={"type": "pamUser", "title": "svc", "fields": [
                {"type": "login", "value": ["svc"]}, {"type": "password", "value": [SECRET]}]})
            assert r.status_code == 201, r.text
            assert SECRET not in r.text
            shown = c.post(f"/records/{r.json()['uid']}/reveal", headers=h)
            assert shown.json()["value"] == SECRET
            assert "keyturn_rotation_queue_depth" in c.get("/metrics").text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    records = [json.loads(x) for x in seen if x.strip()]   # every line is one JSON object
    assert any(r["msg"] == "POST /records 201" and r.get("actor", "").startswith("api:it#") for r in records)
    assert any("stopped:" in r["msg"] for r in records)
    text = "\n".join(seen)
    assert SECRET not in text and token not in text and token[3:] not in text
    shipped = [json.loads(x) for x in sink.read_text().splitlines()]
    actions = [e["action"] for e in shipped]
    assert [e["id"] for e in shipped] == list(range(1, len(shipped) + 1))   # in order, none twice
    assert "reveal" in actions and any(a.startswith("record.") for a in actions), actions
    assert SECRET not in sink.read_text()


def test_serve_over_tls_with_cert_and_key(tmp_path: Path) -> None:
    """`--cert/--key`: the API answers HTTPS with that certificate, verifiable with its CA; a client
    that does not trust the CA is refused before any request, and plain HTTP gets no API answer."""
    import ssl

    import trustme

    env = _env(tmp_path)
    assert _keyturn("init", env=env).returncode == 0
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, ca_pem = tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_pem))
    key.chmod(0o600)
    with _serving(["--cert", str(cert), "--key", str(key), "--no-scheduler"], env, []) as (proc, url):
        assert url.startswith("https://"), url
        port = int(url.rsplit(":", 1)[1])
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=ssl.create_default_context(
                cafile=str(ca_pem)), timeout=30) as c:
            assert c.get("/healthz").json() == {"status": "ok"}
            assert c.get("/records").status_code == 401
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"https://127.0.0.1:{port}/healthz", timeout=30)          # system trust only
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).raise_for_status()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
