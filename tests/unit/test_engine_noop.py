"""Scripts in the state machine: NOOP profiles (scripts are the change) and post-rotation scripts.

The scripts are real files run by the real runner; the "device" they change is the JSON device file.
"""

from __future__ import annotations

import sys
import textwrap

import pytest

from keyturn.engine.journal import Journal
from keyturn.engine.outcome import Outcome
from keyturn.scripts.attachments import ScriptAttachment, to_meta
from keyturn.vault import Field
from tests.unit.engine_world import OLD, World, open_world

SCRIPT = textwrap.dedent("""
    import base64, json, os, sys
    payload = json.loads(base64.b64decode(sys.stdin.readline()))
    mode = os.environ.get("MODE", "change")
    print("rotating", payload["user"], "to", payload["newPassword"])   # the runner must redact this
    if mode == "fail":
        print("device said no", file=sys.stderr)
        sys.exit(3)
    if mode == "change":
        path = os.environ["DEVICE"]
        data = json.load(open(path))
        data["users"][payload["user"]] = payload["newPassword"]
        json.dump(data, open(path, "w"))
""")


@pytest.fixture
def world(tmp_path):
    yield from open_world(tmp_path)


def attach(world: World, uid: str, mode: str) -> None:
    script = world.tmp_path / f"script-{mode}.py"
    script.write_text(SCRIPT)
    att = ScriptAttachment(script=str(script), prefix=sys.executable,
                           env={"DEVICE": str(world.dev.path), "MODE": mode}, timeout=30)
    world.vault.set_meta(uid, "scripts", to_meta([att]))


async def rotate(world: World):
    engine = world.engine()
    try:
        return await engine.rotate(world.user)
    finally:
        await engine.aclose()


async def test_noop_scripts_are_the_change(world):
    world.set_profile(world.user, target="noop", resource=None)
    attach(world, world.user, "change")
    result = await rotate(world)
    assert result.outcome is Outcome.ROTATED_UNVERIFIABLE, result.reason
    assert world.current() == world.dev.password("netops") != OLD
    assert [s.ok for s in result.scripts] == [True]


async def test_noop_failing_script_keeps_old_and_output(world):
    world.set_profile(world.user, target="noop", resource=None)
    attach(world, world.user, "fail")
    result = await rotate(world)
    assert result.outcome is Outcome.FAILED
    assert world.current() == OLD
    assert world.states() == ["failed", "current"]
    stored = Journal(world.vault.engine).get(result.rotation_id).scripts
    assert stored[0].exit_code == 3 and "device said no" in stored[0].stderr
    candidate = world.vault.version_secret(world.user, world.vault.versions(world.user)[0].version)
    assert candidate.reveal() not in stored[0].stdout and "rotating netops to" in stored[0].stdout


async def test_noop_with_verifier_catches_a_script_that_lies(world):
    world.set_profile(world.user, target="noop", verify_with="fake")
    attach(world, world.user, "lie")          # exits 0 without changing anything
    result = await rotate(world)
    assert result.outcome is Outcome.FAILED
    assert "exited 0 but the device did not take the new secret" in result.reason
    assert world.current() == OLD == world.dev.password("netops")


async def test_noop_with_verifier_rotates_when_verified(world):
    world.set_profile(world.user, target="noop", verify_with="fake")
    attach(world, world.user, "change")
    result = await rotate(world)
    assert result.outcome is Outcome.ROTATED, result.reason
    assert world.current() == world.dev.password("netops")


async def test_noop_custom_field_on_the_user_record(world):
    noop_flag = Field("text", label="NOOP", value=["tRuE"])
    world.vault.update(world.user, custom=[*world.vault.get(world.user).custom, noop_flag])
    attach(world, world.user, "change")
    result = await rotate(world)
    assert result.outcome is Outcome.ROTATED, result.reason   # the fake target verifies
    assert world.dev.load()["changes"] == 0                   # the target itself changed nothing
    assert world.current() == world.dev.password("netops")


async def test_failing_post_rotation_script_after_builtin_change(world):
    attach(world, world.user, "fail")
    result = await rotate(world)
    assert result.outcome is Outcome.ROTATED_SCRIPT_ERRORS
    assert world.current() == world.dev.password("netops") != OLD
    assert "keyturn rotation log" in result.reason
