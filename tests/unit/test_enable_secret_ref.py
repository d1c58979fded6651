"""The enable secret kept in step: admin (or user) records reference the enable-secret record.

A file-backed fake device (tests/unit/engine_world.py) gains an enable secret; an SSH-like fake target
needs it to reach privileged EXEC, as `iosxe-ssh` does when a login lands in `>`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from keyturn.engine.accounts import build_admin, enable_secret, link_enable_secret, resolve_account
from keyturn.engine.outcome import Outcome
from keyturn.engine.profile import load_profile
from keyturn.engine.rotate import RotationEngine, TargetPool
from keyturn.errors import ProfileError, TargetAuthRejected
from keyturn.secret import Secret
from keyturn.targets.base import Account, Verdict
from keyturn.vault import Field
from tests.unit.engine_world import FakeTarget, World, open_world

ENABLE = "En4ble-Secret-1"


class FakeEnableTarget(FakeTarget):
    """The device's enable secret, changed through the admin login (like `iosxe-enable-secret`)."""

    kind: ClassVar[str] = "fake-enable"

    async def verify(self, account: Account, secret: Secret) -> Verdict:
        return Verdict.OK if self.device(account).load()["enable"] == secret.reveal() else Verdict.REJECTED

    async def change(self, account: Account, old: Secret | None, new: Secret) -> None:
        dev = self.device(account)
        data = dev.load()
        assert account.admin is not None
        if data["admins"].get(account.admin.username) != account.admin.secret.reveal():
            raise TargetAuthRejected("admin credential refused", target=self.kind)
        data["enable"] = new.reveal()
        dev.save(data)


class FakeSshTarget(FakeTarget):
    """Changes a user like `iosxe-ssh` whose admin login lands in `>`: `enable` first."""

    kind: ClassVar[str] = "fake-ssh"

    async def change(self, account: Account, old: Secret | None, new: Secret) -> None:
        enable = account.enable_secret or (account.admin.enable_secret if account.admin else None)
        if enable is None or enable.reveal() != self.device(account).load()["enable"]:
            raise TargetAuthRejected("enable refused (% Access denied)", target=self.kind)
        await super().change(account, old, new)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    for w in open_world(tmp_path):
        w.dev.set(enable=ENABLE)
        w.targets.update({"fake-enable": FakeEnableTarget(), "fake-ssh": FakeSshTarget()})
        yield w


def _enable_record(world: World) -> str:
    rec = world.vault.add(type="pamUser", title="sw1-enable",
                          fields=[Field("login", value=["enable"]),
                                  Field("password", value=[Secret(ENABLE)])])
    world.set_profile(rec.uid, target="fake-enable", admin=world.admin.uid)
    return rec.uid


def _copy_on_admin(world: World, value: str) -> None:
    admin = world.vault.get(world.admin.uid)
    world.vault.update(admin.uid, custom=[*admin.custom, Field("secret", "enable_secret", [Secret(value)])])


async def _rotate(world: World, uid: str) -> Any:
    engine = RotationEngine(world.vault, targets=TargetPool(lambda kind: world.targets[kind]), backoff=0.0)
    try:
        return await engine.rotate(uid)
    finally:
        await engine.aclose()


async def test_ssh_rotation_after_an_enable_rotation_uses_the_new_enable_secret(world: World) -> None:
    enable_uid = _enable_record(world)
    _copy_on_admin(world, ENABLE)
    link = link_enable_secret(world.vault, enable_uid, world.admin.uid, actor="test")
    assert (link.state, link.reference, link.copy_ignored) == ("linked", enable_uid, True)
    world.set_profile(world.user, target="fake-ssh", admin=world.admin.uid)

    rotated = await _rotate(world, enable_uid)
    assert rotated.outcome is Outcome.ROTATED, rotated.reason
    new_enable = world.current(enable_uid)
    assert new_enable != ENABLE and world.dev.load()["enable"] == new_enable

    result = await _rotate(world, world.user)
    assert result.outcome is Outcome.ROTATED, result.reason
    assert world.dev.password("netops") == world.current()


async def test_a_copied_enable_secret_goes_stale_without_the_reference(world: World) -> None:
    enable_uid = _enable_record(world)
    _copy_on_admin(world, ENABLE)
    world.set_profile(world.user, target="fake-ssh", admin=world.admin.uid, max_attempts=1)
    assert (await _rotate(world, enable_uid)).outcome is Outcome.ROTATED
    result = await _rotate(world, world.user)
    assert not result.outcome.rotated
    assert "enable refused" in result.reason


def test_reference_wins_over_the_copy_and_reads_the_current_version(world: World) -> None:
    enable_uid = _enable_record(world)
    _copy_on_admin(world, "stale-copy")
    link_enable_secret(world.vault, enable_uid, world.admin.uid)
    admin = world.vault.get(world.admin.uid)
    got = build_admin(world.vault, admin).enable_secret
    assert got is not None and got.reveal() == ENABLE
    world.vault.update(enable_uid, fields=[Field("login", value=["enable"]),
                                           Field("password", value=[Secret("Next-Enable-2")])])
    got = build_admin(world.vault, admin).enable_secret
    assert got is not None and got.reveal() == "Next-Enable-2"


def test_the_user_record_may_reference_the_enable_secret_too(world: World) -> None:
    enable_uid = _enable_record(world)
    user = world.vault.get(world.user)
    world.vault.update(user.uid, custom=[Field("text", "enable_secret_record", [enable_uid])])
    user = world.vault.get(world.user)
    account = resolve_account(world.vault, user, load_profile(user)).account
    assert account.enable_secret is not None and account.enable_secret.reveal() == ENABLE


def test_a_reference_to_a_missing_record_is_a_clear_profile_error(world: World) -> None:
    admin = world.vault.get(world.admin.uid)
    world.vault.update(admin.uid, custom=[Field("text", "enable_secret_record", ["no-such-uid"])])
    with pytest.raises(ProfileError) as caught:
        enable_secret(world.vault, world.vault.get(admin.uid))
    assert str(caught.value) == (
        "record 'sw1-admin': custom field enable_secret_record names 'no-such-uid', which is not a record in "
        "the vault; set it to the enable-secret record's uid")


def test_link_keeps_an_existing_reference_and_is_audited(world: World) -> None:
    enable_uid = _enable_record(world)
    first = link_enable_secret(world.vault, enable_uid, world.admin.uid, actor="test")
    again = link_enable_secret(world.vault, enable_uid, world.admin.uid, actor="test")
    other = link_enable_secret(world.vault, world.user, world.admin.uid, actor="test")
    assert [first.state, again.state, other.state] == ["linked", "kept", "other"]
    assert other.reference == enable_uid and not first.copy_ignored
    updates = [e for e in world.vault.audit.list(record_uid=world.admin.uid) if e.action == "record.update"]
    assert len(updates) == 1 and updates[0].actor == "test"
