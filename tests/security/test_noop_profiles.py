"""Issue 12, item 3: a `noop` profile without scripts or verifier "rotated" a device admin record to a
secret nothing ever set, and the working password was only in a version nobody could read back.

Attack: give the admin record such a profile and rotate it. Now refused when set (API and CLI), and a
profile stored before the check fails at rotation with the reason, touching nothing. Recovery: every
earlier version is readable by an admin (`keyturn reveal --version N`) and can be made current again
(`keyturn record restore --version N`, audited) — through the API too, for admin tokens only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from keyturn.cli.main import app
from keyturn.config import load_settings
from keyturn.engine.outcome import Outcome
from keyturn.engine.profile import RotationProfile, set_profile
from keyturn.errors import ProfileError, VaultError
from keyturn.scripts.attachments import ScriptAttachment, to_meta
from keyturn.secret import Secret
from keyturn.vault import Field, Vault
from keyturn.vault.versions import VersionState
from tests.unit.api_world import Api
from tests.unit.engine_world import World

WORKING = "Br3ak-Glass-Admin-1"


def break_glass(world: World) -> str:
    """A device admin account kept in the vault, not used by any profile (so item 1 does not apply)."""
    return world.vault.add(type="pamUser", title="break-glass", fields=[
        Field("login", value=["breakglass"]), Field("password", value=[Secret(WORKING)])]).uid


async def test_api_refuses_a_noop_profile_that_changes_nothing(api: Api) -> None:
    uid = break_glass(api.world)
    r = await api.client.put(f"/records/{uid}/rotation", headers=api.auth("operator"),
                             json={"target": "noop"})
    assert r.status_code == 422
    assert "a noop profile changes nothing itself" in r.json()["detail"]
    assert "keyturn script attach" in r.json()["detail"] and "--verify-with" in r.json()["detail"]
    r = await api.client.post("/rotations", headers=api.auth("operator"), json={"records": [uid]})
    assert r.status_code == 422                            # no profile: nothing runs
    assert api.world.current(uid) == WORKING


def test_a_script_or_a_verifier_makes_a_noop_profile_acceptable(world: World) -> None:
    uid = break_glass(world)
    with pytest.raises(ProfileError, match="noop profile changes nothing"):
        set_profile(world.vault, uid, target="noop")
    set_profile(world.vault, uid, target="noop", verify_with="iosxe-restconf", resource=world.resource.uid)
    other = world.add_user("scripted", "scripted", "Scr1pted-Passw0rd")
    world.vault.set_meta(other, "scripts", to_meta([ScriptAttachment(script="/bin/true")]))
    set_profile(world.vault, other, target="noop")
    # The NOOP custom field on the user is the same thing as target noop (Keeper's flag).
    flagged = world.vault.add(type="pamUser", title="flagged", fields=[Field("login", value=["f"])],
                              custom=[Field("text", "NOOP", ["True"])])
    with pytest.raises(ProfileError, match="noop profile changes nothing"):
        set_profile(world.vault, flagged.uid, target="iosxe-restconf", resource=world.resource.uid)


async def test_a_stored_noop_profile_fails_at_rotation_and_touches_nothing(world: World) -> None:
    uid = break_glass(world)
    world.vault.set_meta(uid, "rotation", RotationProfile(target="noop").to_meta())   # as stored before
    before = [(v.version, str(v.state)) for v in world.vault.versions(uid)]
    engine = world.engine()
    try:
        result = await engine.rotate(uid)
    finally:
        await engine.aclose()
    assert result.outcome is Outcome.FAILED
    assert "a noop profile changes nothing itself" in result.reason
    assert [(v.version, str(v.state)) for v in world.vault.versions(uid)] == before   # no candidate
    assert world.current(uid) == WORKING


# ---- recovery: the scenario as it happened, then undone --------------------------------------------

@pytest.fixture
def cli_home(tmp_path: Path) -> Any:
    env = {"KEYTURN_HOME": str(tmp_path / "home"), "KEYTURN_MASTER_KEY": None, "KEYTURN_PASSPHRASE": None,
           "KEYTURN_DATABASE_URL": None, "KEYTURN_KEY_FILE": None}
    runner = CliRunner()

    def run(*args: str, code: int = 0, input: str | None = None) -> Any:
        result = runner.invoke(app, list(args), env=env, input=input)
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result

    run("init")
    run.home = tmp_path / "home"
    return run


def test_lost_admin_password_is_read_back_and_restored(cli_home: Any) -> None:
    uid = cli_home("record", "add", "--type", "pamUser", "--title", "sw1 admin", "--login", "admin",
                   "--password", "-", input=WORKING + "\n").stdout.strip()
    # What the old noop rotation did: a fresh secret current in the vault, set on no device.
    with Vault.open(load_settings(home=cli_home.home)) as vault:
        lost = vault.add_version(uid, Secret("Nobody-Set-This-9"), state=VersionState.CURRENT,
                                 rotation_id="r1")
    assert cli_home("reveal", uid).stdout == "Nobody-Set-This-9\n"
    assert cli_home("reveal", uid, "--version", "1").stdout == WORKING + "\n"
    out = cli_home("record", "restore", uid, "--version", "1").stdout
    assert out == f"restored version 1 of {uid} as version {lost + 1} (current); the device was not touched\n"
    assert cli_home("reveal", uid).stdout == WORKING + "\n"
    with Vault.open(load_settings(home=cli_home.home)) as vault:
        states = {v.version: str(v.state) for v in vault.versions(uid)}
        assert states == {1: "previous", 2: "previous", 3: "current"}   # history kept, nothing rewritten
        restore = vault.audit.list(record_uid=uid, action="record.restore")
        assert len(restore) == 1 and restore[0].details == {
            "field": "password", "version": 1, "from_state": "previous", "new_version": 3, "previous": 2}
        reveals = vault.audit.list(record_uid=uid, action="reveal")
        assert [e.details["version"] for e in reveals] == [3, 1, 2]           # newest first
        assert all(WORKING not in str(e.details) for e in restore + reveals)
    err = cli_home("record", "restore", uid, "--version", "3", code=1).stderr
    assert "version 3 of record" in err and "is already current" in err
    assert "has no version 9" in cli_home("reveal", uid, "--version", "9", code=1).stderr


def test_restore_waits_for_an_unsettled_rotation(world: World) -> None:
    uid = break_glass(world)
    world.vault.add_version(uid, Secret("Candidate-In-Flight-1"), rotation_id="r2")      # pending
    with pytest.raises(VaultError, match=r"pending candidate .* run `keyturn recover` first"):
        world.vault.restore(uid, 1, actor="test")


async def test_api_reveal_and_restore_earlier_versions_are_admin_only(api: Api) -> None:
    uid = break_glass(api.world)
    api.world.vault.add_version(uid, Secret("Nobody-Set-This-9"), state=VersionState.CURRENT)
    for role in ("operator", "auditor"):
        r = await api.client.post(f"/records/{uid}/reveal", headers=api.auth(role), json={"version": 1})
        assert r.status_code == 403
        r = await api.client.post(f"/records/{uid}/restore", headers=api.auth(role), json={"version": 1})
        assert r.status_code == 403
    r = await api.client.post(f"/records/{uid}/reveal", headers=api.auth("admin"), json={"version": 1})
    assert r.status_code == 200 and r.json()["value"] == WORKING and r.json()["version"] == 1
    assert r.headers["cache-control"] == "no-store"
    r = await api.client.post(f"/records/{uid}/restore", headers=api.auth("admin"), json={"version": 1})
    assert r.status_code == 200, r.text
    assert r.json() == {"uid": uid, "field": "password", "restored": 1, "version": 3}
    assert api.world.current(uid) == WORKING
    entry = api.world.vault.audit.list(record_uid=uid, action="record.restore")[0]
    assert entry.actor.startswith("api:t-admin#")
    r = await api.client.post(f"/records/{uid}/restore", headers=api.auth("admin"), json={"version": 3})
    assert r.status_code == 422 and "already current" in r.json()["detail"]
