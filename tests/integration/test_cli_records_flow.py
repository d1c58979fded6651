"""`keyturn` CLI end to end with Typer's CliRunner against a real vault in tmp_path (exact output)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keyturn.cli.main import app


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    runner = CliRunner()
    env = {"KEYTURN_HOME": str(tmp_path / "home"), "KEYTURN_MASTER_KEY": None, "KEYTURN_PASSPHRASE": None,
           "KEYTURN_DATABASE_URL": None, "KEYTURN_KEY_FILE": None}

    def invoke(*args: str, input: str | None = None, code: int = 0):  # type: ignore[no-untyped-def]
        result = runner.invoke(app, list(args), input=input, env=env)
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result

    invoke("init")
    return invoke


def test_init_refuses_existing_vault(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = run("init", code=1)
    assert r.stderr.startswith("error: a vault already exists at sqlite:///")
    assert len(r.stderr.splitlines()) == 1
    assert (tmp_path / "home" / "master.key").stat().st_mode & 0o777 == 0o600


def test_add_show_reveal_list(run) -> None:  # type: ignore[no-untyped-def]
    uid = run("record", "add", "--type", "pamUser", "--title", "sw1 admin", "--login", "admin",
              "--password", "-", "--custom", "host_endpoint=10.0.0.1", input="hunter2\n").stdout.strip()
    assert len(uid) == 22
    show = run("record", "show", "sw1 admin").stdout.splitlines()
    assert show == [
        f"uid:                  {uid}",
        "title:                sw1 admin",
        "type:                 pamUser",
        "login:                admin",
        "password:             ********",
        "custom host_endpoint: 10.0.0.1",
    ]
    data = json.loads(run("record", "show", uid, "--json").stdout)
    assert data["fields"][1] == {"type": "password", "label": None, "value": ["********"]}
    assert run("reveal", "SW1 ADMIN").stdout == "hunter2\n"
    listing = run("record", "list", "--type", "pamUser").stdout.splitlines()
    assert listing == ["UID                     TYPE     TITLE", f"{uid}  pamUser  sw1 admin"]
    assert [r["uid"] for r in json.loads(run("record", "list", "--json").stdout)][-1] == uid
    audit = json.loads(run("audit", "list", "--record", uid, "--json").stdout)
    assert [e["action"] for e in audit] == ["reveal", "record.add"]
    assert "hunter2" not in json.dumps(audit)


def test_password_on_command_line_warns(run) -> None:  # type: ignore[no-untyped-def]
    r = run("record", "add", "--type", "login", "--title", "t", "--password", "pw")
    assert "warning: a password given on the command line" in r.stderr


def test_duplicate_unknown_and_ambiguous(run) -> None:  # type: ignore[no-untyped-def]
    run("record", "add", "--type", "login", "--title", "dup", input="")
    r = run("record", "add", "--type", "login", "--title", "DUP", code=1)
    assert r.stderr.startswith("error: a record titled 'DUP' already exists (uid ")
    run("record", "add", "--type", "login", "--title", "DUP", "--allow-duplicate")
    r = run("record", "show", "dup", code=4)
    assert r.stderr.startswith("error: title 'dup' matches 2 records; use a uid: ")
    r = run("record", "show", "nothing", code=4)
    assert r.stderr == "error: no record with uid or title 'nothing' (see `keyturn record list`)\n"


def test_edit_password_and_rm(run) -> None:  # type: ignore[no-untyped-def]
    uid = run("record", "add", "--type", "pamUser", "--title", "e", "--password", "-",
              input="one\n").stdout.strip()
    run("record", "edit", "e", "--password", "-", "--custom", "site=hq", input="two\n")
    assert run("reveal", uid).stdout == "two\n"
    assert "custom site:" in run("record", "show", uid).stdout
    r = run("record", "rm", uid, code=2)
    assert "pass --yes" in r.stderr
    assert run("record", "rm", uid, "--yes").stdout == f"removed {uid} 'e'\n"
    run("record", "show", uid, code=4)


def test_wrong_key_exit_code(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = tmp_path / "home" / "master.key"
    key.chmod(0o644)
    r = run("record", "list", code=3)
    assert r.stderr == f"error: vault is sealed: key file {key} is accessible by group/others (mode 0644); " \
                       f"fix with: chmod 600 {key}\n"


KEEPER_EXPORT = {
    "shared_folders": [],
    "records": [
        {"uid": "Qm9vbGVhbnNBcmVGdW5ueQ", "title": "Cisco Authentication Record", "$type": "login",
         "login": "admin", "password": "K33per!pw", "login_url": "https://10.0.0.1",
         "custom_fields": {"host_endpoint": "10.0.0.1", "$secret:enable secret": "en-S3cret",
                           "NOOP": "True", "$pinCode": "1234"},
         "folders": [{"folder": "Network"}]},
        {"title": "Meraki org", "$type": "pamMerakiNetwork", "custom_fields": {"$text:network_id": "N_1"}},
    ],
}


def test_keeper_import_export_round_trip(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "keeper.json"
    src.write_text(json.dumps(KEEPER_EXPORT, indent=2))
    assert run("record", "import", str(src), "--format", "keeper").stdout == "imported 2 records\n"
    assert run("reveal", "Cisco Authentication Record").stdout == "K33per!pw\n"
    assert run("reveal", "Qm9vbGVhbnNBcmVGdW5ueQ", "--field", "enable secret").stdout == "en-S3cret\n"
    assert run("reveal", "Qm9vbGVhbnNBcmVGdW5ueQ", "--field", "pinCode").stdout == "1234\n"
    out = tmp_path / "out.json"
    r = run("record", "export", str(out), "--format", "keeper")
    assert "contains every secret in clear" in r.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    exported = {rec["title"]: rec for rec in json.loads(out.read_text())["records"]}
    cisco = exported["Cisco Authentication Record"]
    want = KEEPER_EXPORT["records"][0]
    for key in ("uid", "title", "$type", "login", "password", "login_url", "custom_fields"):
        assert cisco[key] == want[key], key
    # "$text:label" and a plain "label" are the same text custom field; export writes the plain form.
    assert exported["Meraki org"]["custom_fields"] == {"network_id": "N_1"}
    run("record", "export", str(out), code=1)  # never overwrites


def test_keyturn_export_import_round_trip(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("record", "add", "--type", "pamUser", "--title", "rt", "--password", "-",
        "--secret-custom", "enable=-", input="pw\n", code=2)  # only one option may read stdin
    run("record", "add", "--type", "pamUser", "--title", "rt", "--password", "-", input="pw\n")
    out = tmp_path / "kt.json"
    run("record", "export", str(out))
    doc = json.loads(out.read_text())
    assert {r["title"] for r in doc["records"]} == {"rt", "Default PAM Configuration"}
    other = tmp_path / "other"
    env = {"KEYTURN_HOME": str(other)}
    assert CliRunner().invoke(app, ["init"], env=env).exit_code == 0
    r = CliRunner().invoke(app, ["record", "import", str(out), "--allow-duplicate"], env=env)
    assert r.stdout == "imported 2 records\n"
    r = CliRunner().invoke(app, ["reveal", "rt"], env=env)
    assert r.stdout == "pw\n"


def test_malformed_import_imports_nothing(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"records": [\n  {"title": "a",}\n]}')
    r = run("record", "import", str(bad_json), "--format", "keeper", code=1)
    assert r.stderr == f"error: {bad_json}: invalid JSON at line 2 column 17: Expecting property name " \
                       "enclosed in double quotes\n"
    bad_rec = tmp_path / "bad2.json"
    bad_rec.write_text(json.dumps({"records": [{"title": "ok one", "login": "x"},
                                               {"title": "broken", "custom_fields": {"$bad key!": 1}}]}))
    r = run("record", "import", str(bad_rec), "--format", "keeper", code=1)
    assert r.stderr.startswith(f"error: {bad_rec}: record #2 ('broken'): custom field key '$bad key!'")
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps({"records": [{"title": "ok one"}, {"title": "Default PAM Configuration"}]}))
    r = run("record", "import", str(dup), "--format", "keeper", code=1)
    assert "record #2 ('Default PAM Configuration')" in r.stderr
    assert run("record", "list", "--title", "ok one").stdout == "no records\n"


def test_audit_verify_detects_tampering(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("record", "add", "--type", "login", "--title", "a")
    run("record", "add", "--type", "login", "--title", "b")
    assert run("audit", "verify").stdout == "audit chain intact: 4 entries\n"
    con = sqlite3.connect(tmp_path / "home" / "keyturn.db")
    con.execute("UPDATE kt_audit SET actor = 'mallory' WHERE id = 3")
    con.commit()
    con.close()
    r = run("audit", "verify", code=1)
    assert r.stderr == "error: audit chain broken at entry 3 (modified, deleted or reordered)\n"


def test_vault_rekey_default_mode_resumes(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for i in range(3):
        run("record", "add", "--type", "login", "--title", f"r{i}", "--password", "-", input=f"pw{i}\n")
    key = tmp_path / "home" / "master.key"
    old = key.read_text()
    r = run("vault", "rekey", "--limit", "2")
    assert r.stdout.splitlines()[0] == "rewrapped 2 records; 2 still under the old key"
    assert "rekey:           to " in run("vault", "status").stdout  # opens mid-rekey (pending key file)
    r = run("vault", "rekey")
    assert r.stdout.startswith(f"rekey complete: rewrapped 2 records; vault now sealed by key file {key}")
    assert key.read_text() != old
    assert not (tmp_path / "home" / "master.key.new").exists()
    assert run("reveal", "r2").stdout == "pw2\n"
    status = json.loads(run("vault", "status", "--json").stdout)
    assert status["rekey_to"] is None and status["records"] == 4
