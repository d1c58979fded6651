"""A/B rotation (keyturn.engine.ab) on the file-backed fake device: the idle account is rotated, then
the pair swaps with the commit; the account handed out before stays valid until the next rotation; a
kill at any step and recovery leave both accounts logging in with what the vault holds."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyturn.config import Settings
from keyturn.engine import ab
from keyturn.engine.accounts import resolve_account
from keyturn.engine.hooks import KILL_ENV, KILL_EXIT_CODE
from keyturn.engine.journal import Journal
from keyturn.engine.locks import LockManager
from keyturn.engine.outcome import STEPS, Outcome
from keyturn.engine.profile import PROFILE_OPTIONS, check_options, load_profile
from keyturn.errors import ProfileError, TargetUnreachable
from keyturn.secret import Secret
from keyturn.targets.base import AdminCredential, Endpoint, FoundAccount
from keyturn.vault import Field, Vault
from tests.unit.engine_world import OLD, DeviceFile, FakeTarget, World, open_world

ROOT = Path(__file__).resolve().parents[2]
B_FIRST = "B-initial-Passw0rd"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from open_world(tmp_path)


def add_ab(world: World, *, b_password: str | None = None, title: str = "u-ab") -> str:
    """A record for netops (active) + netops-b (idle) on the world's device, with an A/B profile."""
    world.dev.set_user("netops-b", B_FIRST)
    custom = [Field("secret", ab.IDLE_SLOT, [Secret(b_password)])] if b_password else []
    rec = world.vault.add(type="pamUser", title=title, custom=custom,
                          fields=[Field("login", value=["netops"]), Field("password", value=[Secret(OLD)])])
    world.set_profile(rec.uid, admin=world.admin.uid, options={"ab": "netops-b"})
    return rec.uid


def handed_out(vault: Vault, uid: str) -> tuple[str, str]:
    """What a consumer gets: login and password from ONE record read."""
    rec = vault.get(uid)
    password = rec.field("password")
    assert isinstance(password, Secret)
    return str(rec.field("login")), password.reveal()


def idle(vault: Vault, uid: str) -> tuple[str, str | None]:
    rec = vault.get(uid)
    pair = ab.pair_of(rec, load_profile(rec).options)
    assert pair is not None
    secret = vault.secret(uid, ab.IDLE_SLOT)
    return pair.idle, None if secret is None else secret.reveal()


async def test_first_rotation_sets_the_idle_account_and_swaps(world: World) -> None:
    uid = add_ab(world)
    engine = world.engine()
    try:
        result = await engine.rotate(uid)
    finally:
        await engine.aclose()
    assert result.outcome is Outcome.ROTATED, result.reason
    login, password = handed_out(world.vault, uid)
    assert login == "netops-b" and password != B_FIRST
    assert world.dev.password("netops-b") == password
    assert idle(world.vault, uid) == ("netops", OLD)          # the previous active, still valid
    assert world.dev.password("netops") == OLD
    assert world.states(uid) == ["current", "previous"]
    assert [str(v.state) for v in world.vault.versions(uid, ab.IDLE_SLOT)] == ["current"]


async def test_rotations_alternate_and_the_previous_credential_keeps_working(world: World) -> None:
    uid = add_ab(world, b_password=B_FIRST)
    engine = world.engine()
    seen = [handed_out(world.vault, uid)]
    try:
        for _ in range(6):
            before = handed_out(world.vault, uid)
            result = await engine.rotate(uid)
            assert result.outcome is Outcome.ROTATED, result.reason
            now = handed_out(world.vault, uid)
            assert now[0] != before[0]                               # the other account is handed out
            assert world.dev.password(now[0]) == now[1]              # and logs in
            assert world.dev.password(before[0]) == before[1]        # the old one still does
            assert idle(world.vault, uid) == before
            seen.append(now)
    finally:
        await engine.aclose()
    assert [login for login, _ in seen] == ["netops", "netops-b"] * 3 + ["netops"]
    assert len({password for _, password in seen}) == 7
    assert load_profile(world.vault.get(uid)).options == {"ab": "netops-b"}   # the profile never changes


async def test_a_refused_change_swaps_nothing(world: World) -> None:
    uid = add_ab(world, b_password=B_FIRST)
    world.dev.set(refuse=1)
    engine = world.engine()
    try:
        result = await engine.rotate(uid)
    finally:
        await engine.aclose()
    assert result.outcome is Outcome.FAILED
    assert handed_out(world.vault, uid) == ("netops", OLD)
    assert idle(world.vault, uid) == ("netops-b", B_FIRST)
    assert world.states(uid) == ["failed", "current"]


async def test_a_device_garbling_the_idle_account_never_touches_the_active_one(world: World) -> None:
    uid = add_ab(world, b_password=B_FIRST)
    world.dev.set(scramble=True)
    engine = world.engine()
    try:
        result = await engine.rotate(uid)
    finally:
        await engine.aclose()
    assert result.outcome is Outcome.NEEDS_ATTENTION, result.reason   # the restore is garbled too
    assert handed_out(world.vault, uid) == ("netops", OLD)
    assert world.dev.password("netops") == OLD                     # the active account was never touched


def test_the_ab_option_names_a_login_and_resolves_to_the_idle_account(world: World) -> None:
    assert "ab" in PROFILE_OPTIONS
    assert check_options({"ab": "netops-b"}) == {"ab": "netops-b"}
    with pytest.raises(ProfileError, match="profile option ab must be"):
        check_options({"ab": "two words"})
    uid = add_ab(world)
    rec = world.vault.get(uid)
    ra = resolve_account(world.vault, rec, load_profile(rec))
    assert ra.ab == ab.Pair(active="netops", idle="netops-b")
    assert ra.account.username == "netops-b" and ra.secret_field == ab.IDLE_SLOT
    assert ab.active_account(ra).username == "netops"


def test_a_record_that_disagrees_with_its_option_is_refused(world: World) -> None:
    uid = add_ab(world)
    rec = world.vault.get(uid)
    with pytest.raises(ProfileError, match="must differ"):
        ab.pair_of(rec, {"ab": "NETOPS"})
    world.vault.update(uid, custom=[Field("text", ab.IDLE_LOGIN, ["someone-else"])])
    with pytest.raises(ProfileError, match="ab_login is someone-else, not the profile's ab=netops-b"):
        ab.pair_of(world.vault.get(uid), {"ab": "netops-b"})
    assert ab.pair_of(world.vault.get(uid), {}) is None


def test_ab_needs_a_device_target_and_an_admin(world: World) -> None:
    rec = world.vault.get(world.user)
    with pytest.raises(ProfileError, match="not noop"):
        ab.check_profile(rec, "noop", world.admin.uid)
    with pytest.raises(ProfileError, match="not iosxe-enable-secret"):
        ab.check_profile(rec, "iosxe-enable-secret", world.admin.uid)
    with pytest.raises(ProfileError, match="needs --admin"):
        ab.check_profile(rec, "iosxe-restconf", None)
    ab.check_profile(rec, "iosxe-restconf", world.admin.uid)


class ListingTarget(FakeTarget):
    """The fake device's users, listed through the admin credential (`Discovering`)."""

    async def discover(self, endpoint: Endpoint, admin: AdminCredential) -> list[FoundAccount]:
        data = DeviceFile(Path(endpoint.host)).load()
        if data["down"]:
            raise TargetUnreachable("connection refused", target=self.kind)
        return [FoundAccount(username=name) for name in data["users"]]


def test_the_second_account_must_exist_on_the_device(world: World) -> None:
    uid = add_ab(world)
    rec = world.vault.get(uid)
    ra = resolve_account(world.vault, rec, load_profile(rec))
    ab.check_on_device_now(world.vault, ra, lambda kind: ListingTarget())        # both exist

    data = world.dev.load()
    del data["users"]["netops-b"]
    world.dev.save(data)
    with pytest.raises(ProfileError, match="account netops-b does not exist on sw1"):
        ab.check_on_device_now(world.vault, ra, lambda kind: ListingTarget())
    world.dev.set(down=True)
    with pytest.raises(ProfileError, match="could not list the accounts on sw1"):
        ab.check_on_device_now(world.vault, ra, lambda kind: ListingTarget())
    with pytest.raises(ProfileError, match="cannot list the device's accounts"):
        ab.check_on_device_now(world.vault, ra, lambda kind: FakeTarget())


async def test_the_device_check_runs_from_inside_an_event_loop(world: World) -> None:
    uid = add_ab(world)
    rec = world.vault.get(uid)
    ra = resolve_account(world.vault, rec, load_profile(rec))
    world.dev.set(down=True)
    with pytest.raises(ProfileError, match="could not list"):
        ab.check_on_device_now(world.vault, ra, lambda kind: ListingTarget())


DRIVER = """
import asyncio, sys
from keyturn.config import Settings
from keyturn.vault import Vault
from keyturn.engine.rotate import RotationEngine, TargetPool
from tests.unit.engine_world import make_factory

async def main():
    vault = Vault.open(Settings(home=sys.argv[1]))
    targets = make_factory()
    engine = RotationEngine(vault, targets=TargetPool(lambda kind: targets[kind]), backoff=0.0)
    result = await engine.rotate(sys.argv[2])
    print(result.outcome.value)

asyncio.run(main())
"""


@pytest.mark.parametrize("step", [s.value for s in STEPS])
async def test_kill_at_each_step_then_recover_leaves_both_accounts_working(tmp_path: Path, step: str) -> None:
    home = tmp_path / "home"
    vault = Vault.init(Settings(home=home))
    try:
        world = World(tmp_path, vault)
        uid = add_ab(world, b_password=B_FIRST)
        env = {**os.environ, KILL_ENV: step, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, "-c", DRIVER, str(home), uid], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == KILL_EXIT_CODE, proc.stderr[-2000:]

        engine = world.engine()
        try:
            await engine.recover()
            assert await engine.recover() == []
        finally:
            await engine.aclose()
        login, password = handed_out(vault, uid)
        idle_login, idle_password = idle(vault, uid)
        assert {login, idle_login} == {"netops", "netops-b"}
        assert world.dev.password(login) == password                # what is handed out logs in
        assert world.dev.password(idle_login) == idle_password      # and the idle account too
        if login == "netops":                                       # not swapped: nothing changed for it
            assert password == OLD
        else:                                                       # swapped once, with the commit
            assert idle_password == OLD
        assert "pending" not in world.states(uid)
        assert Journal(vault.engine).open_rotations() == []
        assert LockManager(vault.engine).all() == []

        engine = world.engine()                                     # and the next rotation works
        try:
            result = await engine.rotate(uid)
        finally:
            await engine.aclose()
        assert result.outcome is Outcome.ROTATED, result.reason
        assert handed_out(vault, uid)[0] == idle_login
        assert world.dev.password(login) == password
    finally:
        vault.close()


def _taken(world: World, uid: str, mine: set[str], *, ab_profile: bool,
           admin_login: str | None = "admin") -> None:
    with world.vault.unit() as session:
        ab.check_taken(session, uid, world.resource.uid, mine, ab_profile=ab_profile,
                       admin_login=admin_login)


def test_an_ab_pair_may_not_take_the_admin_or_another_records_account(world: World) -> None:
    other = world.add_user("u2", "deploy", None)
    _taken(world, other, {"netops"}, ab_profile=False)         # plain vs plain (u1): unchanged, allowed
    uid = add_ab(world)
    with pytest.raises(ProfileError, match="admin is the admin credential's account"):
        _taken(world, uid, {"netops", "ADMIN"}, ab_profile=True)
    # the world's own user record rotates netops with a plain profile on the same device
    with pytest.raises(ProfileError, match="account netops on this device is already rotated by the "
                                           "profile of 'u1'"):
        _taken(world, uid, {"netops", "netops-b"}, ab_profile=True)
    with pytest.raises(ProfileError, match=r"already rotated by the profile of 'u-ab' \(A/B\)"):
        _taken(world, other, {"netops-b"}, ab_profile=False)           # a plain profile for B: refused
    _taken(world, other, {"deploy"}, ab_profile=False)                 # an unrelated account: fine
