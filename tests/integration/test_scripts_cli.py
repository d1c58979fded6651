"""`keyturn script attach|list|detach` against a real vault in a temporary home."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keyturn.cli.main import app
from keyturn.config import load_settings
from keyturn.scripts.attachments import attachments_of
from keyturn.scripts.runner import run_rotation_scripts
from keyturn.secret import Secret
from keyturn.vault import Field, Vault

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    for var in ("KEYTURN_DATABASE_URL", "KEYTURN_MASTER_KEY", "KEYTURN_PASSPHRASE", "KEYTURN_KEY_FILE",
                "KEYTURN_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KEYTURN_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    with Vault.init(load_settings()) as vault:
        vault.add(type="pamUser", title="dev user",
                  fields=[Field("login", value=["developer"]), Field("password", value=[Secret("Old-1")])])
        vault.add(type="login", title="Cisco Authentication Record",
                  fields=[Field("login", value=["admin"]), Field("password", value=[Secret("Adm-1")])],
                  custom=[Field("text", label="network_id", value=["N_1"])])
    (tmp_path / "probe.py").write_text(
        f"#!{sys.executable}\nimport os, sys\nopen(os.environ['OUT'], 'wb').write(sys.stdin.buffer.read())\n")
    (tmp_path / "probe.py").chmod(0o755)
    (tmp_path / "plain.py").write_text("print('x')\n")
    yield tmp_path


def invoke(*args: str) -> tuple[int, str]:
    # Through the root command, as users run it (its callback resets per-invocation overrides).
    result = runner.invoke(app, ["script", *args])
    return result.exit_code, result.output


def listing() -> list[dict[str, object]]:
    code, out = invoke("list", "dev user", "--json")
    assert code == 0, out
    data: list[dict[str, object]] = json.loads(out)
    return data


def test_attach_list_detach_round_trip(home: Path) -> None:
    code, out = invoke("attach", "dev user", "probe.py", "--with", "Cisco Authentication Record",
                       "--timeout", "30", "--env", f"OUT={home / 'got'}", "--fail-on", "^Failed")
    assert code == 0, out
    assert out.startswith("attached probe.py to 'dev user' (")
    code, out = invoke("attach", "dev user", "plain.py", "--prefix", sys.executable)
    assert code == 0, out
    with Vault.open(load_settings()) as vault:
        auth_uid = vault.resolve("Cisco Authentication Record")
    [first, second] = listing()
    assert first == {"index": 1, "script": str(home / "probe.py"), "prefix": None,
                     "with_records": [auth_uid], "timeout": 30.0, "env": {"OUT": str(home / "got")},
                     "fail_on": ["^Failed"]}
    assert second["script"] == str(home / "plain.py") and second["prefix"] == sys.executable

    code, out = invoke("list", "dev user")
    assert code == 0 and "probe.py" in out and "(shebang)" in out

    code, out = invoke("detach", "dev user", "plain.py")
    assert code == 0, out
    assert out == "detached plain.py (script 2) from 'dev user'\n"
    assert [a["script"] for a in listing()] == [str(home / "probe.py")]
    code, out = invoke("detach", "dev user", "1")
    assert code == 0 and listing() == []
    code, out = invoke("list", "dev user")
    assert out == "no scripts attached to 'dev user'\n"


def test_attached_script_runs_with_real_vault_records(home: Path) -> None:
    assert invoke("attach", "dev user", "probe.py", "--with", "Cisco Authentication Record",
                  "--env", f"OUT={home / 'got'}")[0] == 0
    with Vault.open(load_settings()) as vault:
        user = vault.get("dev user")
        [provider] = vault.find(type="pamConfiguration")
        assert len(attachments_of(user)) == 1
        [result] = asyncio.run(run_rotation_scripts(
            get_record=vault.get, provider=provider, resource=None, user=user,
            new_password=Secret("New-2"), old_password=Secret("Old-1"),
        ))
    assert result.ok, result.error
    obj = json.loads(base64.b64decode((home / "got").read_bytes()))
    records = json.loads(base64.b64decode(obj["records"]))
    assert [r["title"] for r in records] == [provider.title, "Cisco Authentication Record", "dev user"]
    assert records[1]["password"] == "Adm-1" and records[1]["network_id"] == "N_1"
    assert records[2]["password"] == "New-2" and obj["user"] == "developer"
    assert "scripts" not in json.dumps(records)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plain.py"], "chmod +x"),
        (["missing.py"], "script not found"),
        (["probe.py", "--prefix", "nope-interp-9"], "prefix not found"),
        (["probe.py", "--fail-on", "("], "not a valid regex"),
        (["probe.py", "--env", "NOVALUE"], "--env expects NAME=VALUE"),
        (["probe.py", "--timeout", "0"], "timeout must be"),
    ],
)
def test_attach_refuses_what_cannot_run(home: Path, args: list[str], message: str) -> None:
    code, out = invoke("attach", "dev user", *args)
    assert code == 2, out
    assert message in out
    assert listing() == []


def test_attach_no_check_and_detach_errors(home: Path) -> None:
    assert invoke("attach", "dev user", "plain.py", "--no-check")[0] == 0
    assert invoke("attach", "dev user", "plain.py", "--no-check")[0] == 0
    code, out = invoke("detach", "dev user", "plain.py")
    assert code == 2 and "matches scripts 1, 2; detach by position" in out
    code, out = invoke("detach", "dev user", "7")
    assert code == 2 and "no script 7: the record has 2" in out
    code, out = invoke("attach", "no such record", "plain.py")
    assert code == 4
