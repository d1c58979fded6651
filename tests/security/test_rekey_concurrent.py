"""Red team (issue 12 #8): `keyturn vault rekey` while another process — `keyturn serve`, here a writer
process with its own `Vault` on the same database — keeps adding records. Before the fix the writer
kept wrapping new data keys with the retired key and those records were lost with it.

Now the rekey holds a lease, the final switch rewraps whatever was added meanwhile, and every write that
wraps a data key checks the vault's key id in its own transaction: the writer follows the new key from
the key file, or (key only in its environment) is refused with `VaultKeyRetired` before writing.
Whatever the writer reports as added must be readable afterwards with the new key alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from keyturn.cli.main import app
from keyturn.config import Settings
from keyturn.errors import RekeyLocked, VaultSealed
from keyturn.secret import Secret
from keyturn.vault import Field, Vault
from keyturn.vault.keys import MasterKey, encode_key, load_key_file
from keyturn.vault.lease import RekeyLease

ROOT = Path(__file__).resolve().parents[2]

# The other process: adds records until told to stop, one JSON line per attempt.
WRITER = r"""
import json, sys, time
from pathlib import Path
from keyturn.config import load_settings
from keyturn.errors import KeyturnError
from keyturn.secret import Secret
from keyturn.vault import Field, Vault

out, stop = Path(sys.argv[1]), Path(sys.argv[2])
with Vault.open(load_settings()) as vault, out.open("a") as log:
    i = 0
    while not stop.exists():
        i += 1
        pw = f"writer-pw-{i}"
        try:
            fields = [Field("password", None, [Secret(pw)])]
            uid = vault.add(type="pamUser", title=f"writer {i}", fields=fields).uid
            line = {"ok": uid, "pw": pw, "key": vault.key_id}
        except KeyturnError as exc:
            line = {"error": type(exc).__name__, "message": str(exc)}
        log.write(json.dumps(line) + "\n")
        log.flush()
        time.sleep(0.01)  # a busy server, not a tight loop: leave the CPU to the rekey
"""


def env_for(home: Path, master_key: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env.update({"KEYTURN_HOME": str(home), "PYTHONPATH": str(ROOT / "src")})
    if master_key is not None:
        env["KEYTURN_MASTER_KEY"] = master_key
    return env


class Writer:
    def __init__(self, tmp_path: Path, home: Path, master_key: str | None = None) -> None:
        self.out, self.stop = tmp_path / "writer.jsonl", tmp_path / "writer.stop"
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER, str(self.out), str(self.stop)],
                                     env=env_for(home, master_key), cwd=tmp_path)

    def lines(self) -> list[dict[str, str]]:
        if not self.out.exists():
            return []
        complete = self.out.read_text().rpartition("\n")[0]  # not a line the writer is still writing
        return [json.loads(x) for x in complete.splitlines() if x.strip()]

    def wait_for(self, more: int, what: str = "ok") -> None:
        """Until `more` further lines with `what` have appeared (the writer is slow only under load)."""
        start = sum(1 for x in self.lines() if what in x)
        deadline = time.monotonic() + 60
        while sum(1 for x in self.lines() if what in x) < start + more:
            assert self.proc.poll() is None, f"writer died: {self.lines()[-3:]}"
            assert time.monotonic() < deadline, "writer made no progress"
            time.sleep(0.02)

    def finish(self) -> list[dict[str, str]]:
        self.stop.touch()
        assert self.proc.wait(60) == 0
        return self.lines()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    h = tmp_path / "home"
    with Vault.init(Settings(home=h)) as v:
        for i in range(20):
            v.add(type="pamUser", title=f"before {i}", fields=[Field("password", None, [Secret(f"b-{i}")])])
    yield h


def cli_rekey(home: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["vault", "rekey", *args], env=env_for(home))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def readable_with(settings: Settings, lines: list[dict[str, str]]) -> dict[str, str]:
    """Every record's password, read with `settings`' key alone (raises if any one is lost); returns
    those the writer reported."""
    with Vault.open(settings) as v:
        assert v.status().rekey_remaining == 0 and v.tampered() == [] and v.audit.verify() is None
        every = {r.uid: v.secret(r.uid) for r in v.summaries(type="pamUser")}
        assert all(s is not None for s in every.values())
        return {x["ok"]: every[x["ok"]].reveal() for x in lines if "ok" in x}  # type: ignore[union-attr]


def test_rekey_under_a_writer_that_follows_the_key_file(home: Path, tmp_path: Path) -> None:
    old = load_key_file(home / "master.key")
    writer = Writer(tmp_path, home)
    try:
        writer.wait_for(5)
        # The rekey in slices, the writer adding between each, then to the end while it keeps adding.
        for _ in range(3):
            assert "still under the old key" in cli_rekey(home, "--limit", "4", "--batch-size", "1")
            writer.wait_for(3)
        assert "rekey complete" in cli_rekey(home, "--batch-size", "2")
        writer.wait_for(10)  # after the switch: these need the new key
    finally:
        lines = writer.finish()
    new = load_key_file(home / "master.key")
    assert new.key_id != old.key_id
    assert not any("error" in x for x in lines), [x for x in lines if "error" in x][:3]
    assert {x["key"] for x in lines} == {old.key_id, new.key_id}  # it really wrote on both sides
    only_new = Settings(home=home, master_key=SecretStr(encode_key(new).reveal()))
    got = readable_with(only_new, lines)
    assert got == {x["ok"]: x["pw"] for x in lines if "ok" in x}
    with Vault.open(only_new) as v:
        assert len(v.summaries(type="pamUser")) == 20 + len(got)


def test_rekey_under_a_writer_that_cannot_load_the_new_key(home: Path, tmp_path: Path) -> None:
    """The writer has the old key in its environment only: after the switch it is refused, loudly,
    before writing anything — never a record wrapped by a key that no longer opens the vault."""
    old = load_key_file(home / "master.key")
    writer = Writer(tmp_path, home, master_key=encode_key(old).reveal())
    try:
        writer.wait_for(5)
        new_key = MasterKey.generate()
        with Vault.open(Settings(home=home), new_key=new_key) as v:
            for _ in range(3):
                assert not v.rekey(new_key, limit=4, batch_size=1).finished
                writer.wait_for(2)
            assert v.rekey(new_key, batch_size=2).finished
        writer.wait_for(3, what="error")
    finally:
        lines = writer.finish()
    # Mid-rekey, reading back a record the rekey had already rewrapped fails (the new key is nowhere
    # this process can load it from); once the rekey is done every write is refused before it starts.
    errors = [x for x in lines if "error" in x]
    assert {x["error"] for x in errors} <= {"VaultKeyRetired", "VaultSealed"}
    retired = next(x for x in lines if x.get("error") == "VaultKeyRetired")
    assert "restart this process with the new key" in retired["message"]
    assert all("error" in x for x in lines[lines.index(retired):])  # nothing written after that
    got = readable_with(Settings(home=home, master_key=SecretStr(encode_key(new_key).reveal())), lines)
    assert got == {x["ok"]: x["pw"] for x in lines if "ok" in x}
    with pytest.raises(VaultSealed, match="does not match"):
        Vault.open(Settings(home=home, master_key=SecretStr(encode_key(old).reveal())))


def test_a_second_rekey_is_refused_while_the_lease_is_held(home: Path) -> None:
    settings = Settings(home=home)
    with Vault.open(settings) as v:
        other = RekeyLease(v.storage)
        other.acquire()
        with pytest.raises(RekeyLocked, match=rf"pid {os.getpid()} on .*wait for it to finish"):
            v.rekey(MasterKey.generate())
        other.release()
        assert v.rekey(MasterKey.generate()).finished


def test_a_lease_left_by_a_killed_rekey_is_taken_over(home: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with Vault.open(Settings(home=home)) as v:
        with v.storage.session(write=True) as s:
            from keyturn.vault.lease import HOST, LEASE_KEY
            from keyturn.vault.storage import MetaRow

            s.add(MetaRow(key=LEASE_KEY, value=json.dumps(
                {"owner": "gone", "host": HOST, "pid": dead.pid, "expires_at": time.time() + 3600})))
        assert v.rekey(MasterKey.generate()).finished
