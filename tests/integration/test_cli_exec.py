"""`keyturn exec` as a real process (issue 16, item 2): the command gets the secret in its environment,
never in its argv; keyturn becomes the command (same pid, its exit status); an unknown record runs
nothing (exit 4). From the local vault, and from `keyturn serve` over TLS with a consumer token.

Also the CLI side of groups and grants: `record add|edit --tag/--untag`, `token create --grant`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from keyturn.config import Settings
from keyturn.vault import Vault
from tests.integration.test_serve_process import _serving

SECRET = "Exec-Integration-S3cret-77"
OTHER = "Exec-Ungranted-S3cret-88"

# The child: what it saw (its pid, its argv as the kernel holds it, its environment), then exit N.
CHILD = """
import json, os, sys
with open("/proc/self/cmdline", "rb") as fh:
    cmdline = fh.read().decode()
json.dump({"pid": os.getpid(), "cmdline": cmdline, "pw": os.environ.get("NETOPS_PW"),
           "user": os.environ.get("NETOPS_USER"), "token": os.environ.get("KEYTURN_TOKEN")},
          open(sys.argv[1], "w"))
sys.exit(int(sys.argv[2]))
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env["KEYTURN_HOME"] = str(tmp_path / "home")
    return env


def _keyturn(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyturn.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False, input=stdin)


def _vault_with_records(tmp_path: Path) -> dict[str, str]:
    env = _env(tmp_path)
    assert _keyturn("init", env=env).returncode == 0
    add = _keyturn("record", "add", "--type", "pamUser", "--title", "sw1 admin", "--login", "netops",
                   "--password", "-", "--tag", "backup", "--tag", "lab", env=env, stdin=SECRET + "\n")
    assert add.returncode == 0, add.stderr
    other = _keyturn("record", "add", "--type", "pamUser", "--title", "core admin", "--login", "core",
                     "--password", "-", env=env, stdin=OTHER + "\n")
    assert other.returncode == 0, other.stderr
    return env


def _exec(env: dict[str, str], out: Path, code: int, *specs: str, extra: tuple[str, ...] = ()
          ) -> tuple[subprocess.CompletedProcess[str], dict[str, object] | None, int]:
    argv = [sys.executable, "-m", "keyturn.cli.main", "exec", *extra]
    for spec in specs:
        argv += ["--env", spec]
    argv += ["--", sys.executable, "-c", CHILD, str(out), str(code)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=60)
    done = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
    seen = json.loads(out.read_text()) if out.exists() else None
    return done, seen, proc.pid


def _audit(tmp_path: Path, action: str) -> list[tuple[str, str | None, dict[str, object]]]:
    with Vault.open(Settings(home=tmp_path / "home")) as vault:
        return [(e.actor, e.record_uid, dict(e.details)) for e in vault.audit.list(action=action)]


def test_exec_local_puts_the_secret_in_the_environment_only(tmp_path: Path) -> None:
    env = _vault_with_records(tmp_path)
    out = tmp_path / "seen.json"
    done, seen, pid = _exec(env, out, 7, "NETOPS_PW=sw1 admin", "NETOPS_USER=sw1 admin:login")
    assert done.returncode == 7, done.stderr           # the command's status is keyturn's
    assert seen is not None and seen["pw"] == SECRET and seen["user"] == "netops"
    assert seen["pid"] == pid                          # keyturn became the command
    assert SECRET not in str(seen["cmdline"]) and "-c" in str(seen["cmdline"]).split("\0")
    assert SECRET not in done.stdout + done.stderr
    reads = _audit(tmp_path, "reveal")
    assert sorted(str(d["field"]) for _, _, d in reads) == ["login", "password"]
    assert all(actor.startswith("cli:") for actor, _, _ in reads)


def test_exec_unknown_record_runs_nothing_and_exits_4(tmp_path: Path) -> None:
    env = _vault_with_records(tmp_path)
    out = tmp_path / "seen.json"
    done, seen, _ = _exec(env, out, 0, "NETOPS_PW=sw1 admin", "NETOPS_USER=no such record:login")
    assert done.returncode == 4, done.stderr
    assert seen is None and not out.exists()
    assert "no such record" in done.stderr and SECRET not in done.stderr
    assert _audit(tmp_path, "reveal") == []            # found first, read after: nothing was read
    bad = _keyturn("exec", "--env", "1BAD=sw1 admin", "--", "true", env=env)
    assert bad.returncode == 2 and "NAME=RECORD[:FIELD]" in bad.stderr
    missing = _keyturn("exec", "--env", "PW=sw1 admin", "--", "no-such-program-here", env=env)
    assert missing.returncode == 127 and "command not found" in missing.stderr


def test_record_tags_and_consumer_token_grants_on_the_cli(tmp_path: Path) -> None:
    env = _vault_with_records(tmp_path)
    shown = json.loads(_keyturn("record", "show", "sw1 admin", "--json", env=env).stdout)
    assert shown["meta"]["tags"] == ["backup", "lab"]
    edit = _keyturn("record", "edit", "sw1 admin", "--untag", "lab", "--tag", "core", env=env)
    assert edit.returncode == 0, edit.stderr
    assert json.loads(_keyturn("record", "show", "sw1 admin", "--json", env=env).stdout)["meta"]["tags"] == [
        "backup", "core"]
    listed = _keyturn("record", "list", "--tag", "core", "--json", env=env)
    assert [r["title"] for r in json.loads(listed.stdout)] == ["sw1 admin"]
    assert json.loads(_keyturn("record", "list", "--tag", "lab", "--json", env=env).stdout) == []
    bad = _keyturn("record", "edit", "sw1 admin", "--tag", "Not Valid", env=env)
    assert bad.returncode == 2 and "is not valid" in bad.stderr

    none = _keyturn("token", "create", "--role", "consumer", env=env)
    assert none.returncode == 2 and "--grant" in none.stderr
    ghost = _keyturn("token", "create", "--role", "consumer", "--grant", "record:ghost", env=env)
    assert ghost.returncode == 4
    made = _keyturn("token", "create", "--role", "consumer", "--name", "ci", "--grant", "tag:backup",
                    "--grant", "record:core admin", env=env)
    assert made.returncode == 0, made.stderr
    listed = json.loads(_keyturn("token", "list", "--json", env=env).stdout)
    core_uid = json.loads(_keyturn("record", "show", "core admin", "--json", env=env).stdout)["uid"]
    assert listed[0]["grants"] == ["tag:backup", f"record:{core_uid}"]   # a title is stored as its uid
    wrong = _keyturn("token", "create", "--role", "operator", "--grant", "tag:backup", env=env)
    assert wrong.returncode == 2 and "consumer" in wrong.stderr


def test_exec_against_serve_with_a_consumer_token(tmp_path: Path) -> None:
    import trustme

    env = _vault_with_records(tmp_path)
    made = _keyturn("token", "create", "--role", "consumer", "--name", "backup-job", "--grant", "tag:backup",
                    env=env)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, ca_pem = tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_pem))
    key.chmod(0o600)

    with _serving(["--cert", str(cert), "--key", str(key), "--no-scheduler"], env, []) as (proc, url):
        port = int(url.rsplit(":", 1)[1])
        # The client side has no vault at all: only the URL, the token and the CA.
        client = {k: v for k, v in env.items() if k != "KEYTURN_HOME"}
        client.update(KEYTURN_HOME=str(tmp_path / "nowhere"), KEYTURN_URL=f"https://127.0.0.1:{port}",
                      KEYTURN_TOKEN=token)
        out = tmp_path / "seen.json"
        done, seen, pid = _exec(client, out, 3, "NETOPS_PW=sw1 admin", "NETOPS_USER=sw1 admin:login",
                                extra=("--ca", str(ca_pem)))
        assert done.returncode == 3, done.stderr
        assert seen is not None and seen["pw"] == SECRET and seen["user"] == "netops" and seen["pid"] == pid
        assert seen["token"] is None                       # the token stays with keyturn
        assert SECRET not in str(seen["cmdline"]) and token not in str(seen["cmdline"])

        out.unlink()
        for spec in ("NETOPS_PW=core admin", "NETOPS_PW=ghost"):   # ungranted, missing: the same
            refused, seen, _ = _exec(client, out, 0, spec, extra=("--ca", str(ca_pem)))
            assert refused.returncode == 4, refused.stderr
            assert seen is None and "not found, or this token is not granted it" in refused.stderr
        untrusted, seen, _ = _exec(client, out, 0, "NETOPS_PW=sw1 admin")  # system CAs only: refused
        assert untrusted.returncode == 5 and seen is None and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0

    reads = _audit(tmp_path, "reveal")
    # Two fields of one record: read twice, so a rotation's swap between them is never handed out
    # (both reads audited).
    assert len(reads) == 4 and all(actor.startswith("api:backup-job#") for actor, _, _ in reads)
    assert sorted(d["field"] for _, _, d in reads) == ["login", "login", "password", "password"]
    denied = _audit(tmp_path, "api.denied")
    assert [d["token_name"] for _, _, d in denied] == ["backup-job", "backup-job"]
    assert {d["path"] for _, _, d in denied} == {"/records/core admin/reveal", "/records/ghost/reveal"}
