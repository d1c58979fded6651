"""A lab for the automation plugins: `keyturn sim lab` (one IOS XE switch), its records imported, the
account `netops1 @ sw0001` rotated over SSH, and `keyturn serve` over HTTPS (a trustme CA) — all real
subprocesses. `Lab.env` is what a consumer is given: KEYTURN_URL, KEYTURN_TOKEN, KEYTURN_CA_BUNDLE.

The token is a consumer token granted that one record when `keyturn token create --role consumer`
exists, else an admin token (the reveal route is the same).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import trustme

ACCOUNT = "netops1 @ sw0001"
USER = "netops1"


@dataclass
class Lab:
    work: Path
    ssh_port: int
    initial: str = field(repr=False)   # netops1's password before keyturn rotated it
    url: str
    token: str = field(repr=False)
    token_role: str
    ca_file: Path
    base_env: dict[str, str]   # KEYTURN_HOME set, no server variables: the local vault

    @property
    def env(self) -> dict[str, str]:
        """A consumer's environment: the server, its token and CA; no KEYTURN_HOME."""
        env = {k: v for k, v in self.base_env.items() if k != "KEYTURN_HOME"}
        env.update(KEYTURN_URL=self.url, KEYTURN_TOKEN=self.token, KEYTURN_CA_BUNDLE=str(self.ca_file))
        return env

    def keyturn(self, *args: str, stdin: str | None = None) -> str:
        return keyturn(self.base_env, self.work, *args, stdin=stdin)

    def current(self) -> str:
        return self.keyturn("reveal", ACCOUNT).strip()

    def rotate(self) -> None:
        out = self.keyturn("rotate", ACCOUNT)
        assert "1 rotated" in out, out


def keyturn(env: dict[str, str], cwd: Path, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run([sys.executable, "-m", "keyturn.cli.main", *args], cwd=cwd, env=env, text=True,
                          input=stdin, capture_output=True, check=False, timeout=120)
    assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc.stdout


def _base_env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env["KEYTURN_HOME"] = str(work / ".keyturn")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', os.defpath)}"
    return env


def _consumer_token(env: dict[str, str], work: Path) -> tuple[str, str]:
    help_text = subprocess.run([sys.executable, "-m", "keyturn.cli.main", "token", "create", "--help"],
                               env=env, cwd=work, text=True, capture_output=True, check=False).stdout
    if "consumer" in help_text and "--grant" in help_text:
        token = keyturn(env, work, "token", "create", "--role", "consumer", "--grant", f"record:{ACCOUNT}",
                        "--name", "automation", "--expires", "1h").strip()
        return token, "consumer"
    return keyturn(env, work, "token", "create", "--role", "admin", "--name", "automation",
                   "--expires", "1h").strip(), "admin"


@contextlib.contextmanager
def _serve(env: dict[str, str], work: Path, cert: Path, key: Path) -> Iterator[str]:
    argv = [sys.executable, "-m", "keyturn.cli.main", "serve", "--port", "0", "--grace", "5",
            "--cert", str(cert), "--key", str(key)]
    proc = subprocess.Popen(argv, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        url = None
        while url is None:
            msg = json.loads(lines.get(timeout=60))["msg"]
            if "listening on" in msg:
                url = msg.rsplit(" ", 1)[1]
        yield url.replace("127.0.0.1", "localhost")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


@contextlib.contextmanager
def automation_lab(work: Path) -> Iterator[Lab]:
    work.mkdir(parents=True, exist_ok=True)
    env = _base_env(work)
    sim = subprocess.Popen([sys.executable, "-m", "keyturn.cli.main", "sim", "lab", "--iosxe", "1",
                            "--meraki-orgs", "0", "--seed", "2", "--state-file", "lab.json",
                            "--records-file", "lab-records.json", "-q"],
                           cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        keyturn(env, work, "init")
        keyturn(env, work, "sim", "get", "lab.json", "control_url")      # waits until the lab is up
        ssh_port = int(keyturn(env, work, "sim", "get", "lab.json", "iosxe.sw0001.ssh_port"))
        initial = keyturn(env, work, "sim", "get", "lab.json", f"iosxe.sw0001.users.{USER}.password").strip()
        keyturn(env, work, "record", "import", "lab-records.json")
        keyturn(env, work, "rotation", "set", ACCOUNT, "--target", "iosxe-ssh", "--resource", "sw0001",
                "--admin", "sw0001 admin")
        keyturn(env, work, "device", "trust", "sw0001", "--yes", "--ssh-only")
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        ca_file, cert_file, key_file = work / "ca.pem", work / "server.pem", work / "server.key"
        ca.cert_pem.write_to_path(str(ca_file))
        cert.cert_chain_pems[0].write_to_path(str(cert_file))
        cert.private_key_pem.write_to_path(str(key_file))
        key_file.chmod(0o600)
        token, role = _consumer_token(env, work)
        with _serve(env, work, cert_file, key_file) as url:
            yield Lab(work, ssh_port, initial, url, token, role, ca_file, env)
    finally:
        sim.terminate()
        try:
            sim.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()
