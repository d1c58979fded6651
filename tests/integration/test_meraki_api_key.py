"""`meraki-api-key` against the simulated Dashboard over real sockets (issue 19, part 1): the record's
key is replaced by one Meraki generated, every profile using it switches with it, the old key is
revoked; two foreign keys are refused; a key that never verifies is revoked and the old one kept; the
propagation delay is waited out within the budget; 429 storms are paced. Kill-at-every-step runs the
CLI as a subprocess and `keyturn recover` must leave a vault key that authenticates and no orphan.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from keyturn.config import Settings
from keyturn.engine.hooks import KILL_EXIT_CODE
from keyturn.engine.outcome import Outcome
from keyturn.engine.profile import set_profile
from keyturn.engine.rotate import RotationEngine
from keyturn.secret import Secret
from keyturn.vault import Field, Vault
from tests.integration.test_cli_rotate_kill import keyturn
from tests.lab_fixtures import RunningLab, running_lab

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Setup:
    lab: RunningLab
    vault: Vault
    key_uid: str          # the API-key record (rotated by meraki-api-key)
    user_uid: str         # a meraki-auth-user profile whose --admin is the key record
    network: str

    @property
    def base(self) -> str:
        assert self.lab.state.meraki is not None
        return self.lab.state.meraki.base_url

    def current(self) -> str:
        secret = self.vault.secret(self.key_uid)
        assert secret is not None
        return secret.reveal()

    async def works(self, key: str) -> bool:
        async with httpx.AsyncClient(trust_env=False) as client:
            response = await client.get(f"{self.base}/administered/identities/me",
                                        headers={"Authorization": f"Bearer {key}"})
        return response.status_code == 200

    async def suffixes(self) -> list[str]:
        """The suffixes of the keys of the identity behind the vault's key, as Meraki lists them."""
        async with httpx.AsyncClient(trust_env=False) as client:
            response = await client.get(f"{self.base}/administered/identities/me/api/keys",
                                        headers={"Authorization": f"Bearer {self.current()}"})
        response.raise_for_status()
        return [k["suffix"] for k in response.json()]


def build(lab: RunningLab, home: Path, *, propagation_timeout: float = 20.0, key: str | None = None) -> Setup:
    """Vault records as a user would add them: the key record, a network resource, one auth user whose
    profile names the key record as its admin, and the key record's own meraki-api-key profile."""
    meraki = lab.state.meraki
    assert meraki is not None
    org = meraki.orgs[0]
    net = org.networks[0]
    vault = Vault.init(Settings(home=home))
    key = vault.add(type="login", title="Meraki API key",
                    fields=[Field("login", None, ["lab admin"]),
                            Field("password", None, [Secret(key or meraki.api_key)])])
    res = vault.add(type="pamMerakiNetwork", title=f"Meraki {net.name}", custom=[
        Field("text", "network_id", [net.id]), Field("text", "org_id", [org.id]),
        Field("text", "base_url", [meraki.base_url]),
        Field("text", "verify_url", [f"{lab.state.control_url}/verify"]),
        Field("text", "propagation_timeout", [str(propagation_timeout)])])
    user = net.users[0]
    rec = vault.add(type="pamUser", title=user.email, fields=[
        Field("login", None, [user.email]), Field("password", None, [Secret(user.password)])])
    set_profile(vault, rec.uid, target="meraki-auth-user", resource=res.uid, admin=key.uid)
    set_profile(vault, key.uid, target="meraki-api-key", resource=res.uid)
    return Setup(lab, vault, key.uid, rec.uid, net.id)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    async with running_lab(tmp_path, iosxe=0, meraki_orgs=1, users_per_network=1) as lab:
        made = build(lab, tmp_path / "home")
        try:
            yield made
        finally:
            made.vault.close()


async def rotate(s: Setup, uid: str, **engine: object) -> tuple[Outcome, str]:
    e = RotationEngine(s.vault, backoff=0.01, **engine)  # type: ignore[arg-type]
    try:
        result = await e.rotate(uid)
    finally:
        await e.aclose()
    return result.outcome, result.reason


async def test_rotates_switches_every_profile_and_revokes_the_old_key(setup: Setup) -> None:
    s = setup
    old = s.current()
    outcome, reason = await rotate(s, s.key_uid)
    assert outcome is Outcome.ROTATED, reason
    new = s.current()
    assert new != old and len(new) == 40
    assert await s.works(new) and not await s.works(old)
    assert await s.suffixes() == [new[-4:]]                  # the old key was revoked by its suffix
    assert old[-4:] in reason and new[-4:] in reason and old not in reason and new not in reason
    # the auth-user profile whose admin is the key record now authenticates with the new key
    outcome, reason = await rotate(s, s.user_uid)
    assert outcome.success, reason
    steps = [str(v.state) for v in s.vault.versions(s.key_uid)]
    assert steps[:2] == ["current", "previous"]


async def test_a_batch_rotates_the_key_after_the_profiles_that_use_it(setup: Setup) -> None:
    from keyturn.engine.batch import rotate_many
    from keyturn.engine.journal import Journal

    s = setup
    e = RotationEngine(s.vault, backoff=0.01)
    try:
        results = await rotate_many(e, [s.key_uid, s.user_uid])   # the key first in the input
    finally:
        await e.aclose()
    assert [r.outcome.success for r in results] == [True, True], [r.reason for r in results]
    journal = Journal(s.vault.engine)
    key_run, user_run = journal.for_record(s.key_uid)[0], journal.for_record(s.user_uid)[0]
    assert user_run.finished_at is not None and key_run.started_at >= user_run.finished_at


async def test_two_keys_not_keyturns_are_refused_and_nothing_changes(setup: Setup) -> None:
    s = setup
    meraki = s.lab.lab.meraki
    assert meraki is not None
    who = meraki.authenticate(s.current())
    assert who is not None
    foreign = meraki.generate_api_key(who)["key"]        # another integration's key on the identity
    before, old = await s.suffixes(), s.current()
    outcome, reason = await rotate(s, s.key_uid)
    assert outcome is Outcome.FAILED
    assert f"…{foreign[-4:]} (not keyturn's)" in reason and "nothing was changed" in reason
    assert f"…{old[-4:]} (keyturn's current)" in reason
    assert await s.suffixes() == before and s.current() == old and await s.works(foreign)
    assert [str(v.state) for v in s.vault.versions(s.key_uid)] == ["current"]


async def test_a_record_without_a_key_or_with_a_revoked_one_changes_nothing(setup: Setup) -> None:
    s = setup
    res = s.vault.get(s.key_uid).meta["rotation"]["resource"]
    empty = s.vault.add(type="login", title="empty key", fields=[Field("login", None, ["lab admin"])])
    set_profile(s.vault, empty.uid, target="meraki-api-key", resource=res)
    before = await s.suffixes()
    outcome, reason = await rotate(s, empty.uid)
    assert outcome is Outcome.FAILED and "holds no key" in reason
    wrong = s.vault.add(type="login", title="wrong key", fields=[
        Field("login", None, ["lab admin"]), Field("password", None, [Secret("0" * 40)])])
    set_profile(s.vault, wrong.uid, target="meraki-api-key", resource=res)
    outcome, reason = await rotate(s, wrong.uid)
    assert outcome is Outcome.FAILED and "refuses the record's current key" in reason
    assert await s.suffixes() == before and await s.works(s.current())


async def test_a_key_that_never_verifies_is_revoked_and_the_old_one_kept(tmp_path: Path) -> None:
    async with running_lab(tmp_path, iosxe=0, meraki_orgs=1, users_per_network=1,
                           meraki_key_propagation=3600) as lab:
        s = build(lab, tmp_path / "home", propagation_timeout=1)
        try:
            old = s.current()
            outcome, reason = await rotate(s, s.key_uid)
            assert outcome is Outcome.FAILED, reason
            assert "did not authenticate within 1 s" in reason and "revoked" in reason
            assert s.current() == old and await s.works(old)
            assert await s.suffixes() == [old[-4:]]
            assert [str(v.state) for v in s.vault.versions(s.key_uid)] == ["failed", "current"]
        finally:
            s.vault.close()


async def test_propagation_delay_is_waited_out_within_the_budget(tmp_path: Path) -> None:
    async with running_lab(tmp_path, iosxe=0, meraki_orgs=1, users_per_network=1) as lab:
        async with lab.control() as ctl:
            assert (await ctl.api_keys(propagation=1.5))["propagation"] == 1.5
        s = build(lab, tmp_path / "home", propagation_timeout=30)
        try:
            old = s.current()
            outcome, reason = await rotate(s, s.key_uid)
            assert outcome is Outcome.ROTATED, reason
            assert await s.works(s.current()) and not await s.works(old)
            meraki = lab.lab.meraki
            assert meraki is not None  # the new key was refused while it propagated, then verified
            assert any(r.status == 401 and r.path.endswith("/identities/me") for r in meraki.requests)
        finally:
            s.vault.close()


async def test_429_storm_is_paced(setup: Setup) -> None:
    s = setup
    org = s.lab.state.meraki.orgs[0].id  # type: ignore[union-attr]
    async with s.lab.control() as ctl:
        await ctl.set_faults(org, {"rate_limit_storm": 2, "retry_after": 1}, kind="meraki")
        e = RotationEngine(s.vault, backoff=0.01)
        try:
            result = await e.rotate(s.key_uid)
            paused = e.targets.budgets.penalties()   # each 429 paused the organisation's budget
        finally:
            await e.aclose()
        stats = (await ctl.stats())["meraki"][org]
    assert result.outcome is Outcome.ROTATED, result.reason
    assert stats["storm_limited"] == 2 and paused == 2
    assert await s.works(s.current())


async def test_discover_proposes_the_api_key_record_and_apply_sets_its_profile(tmp_path: Path) -> None:
    from keyturn.discovery import apply_plan, meraki_endpoint, plan_meraki, scan_meraki
    from keyturn.engine.accounts import build_admin
    from keyturn.targets.meraki import MerakiAuthUserTarget

    async with running_lab(tmp_path, iosxe=0, meraki_orgs=1, users_per_network=1) as lab:
        meraki = lab.state.meraki
        assert meraki is not None
        vault = Vault.init(Settings(home=tmp_path / "home"))
        try:
            key = vault.add(type="login", title="Meraki API key", fields=[
                Field("login", None, ["lab admin"]), Field("password", None, [Secret(meraki.api_key)])],
                custom=[Field("text", "base_url", [meraki.base_url])])
            endpoint = meraki_endpoint(key, None)
            target = MerakiAuthUserTarget()
            try:
                scans = await scan_meraki(target, endpoint, build_admin(vault, key))
            finally:
                await target.aclose()
            assert [r.target for r in plan_meraki(vault, scans, key, endpoint).rows] == ["meraki-auth-user"]
            plan = plan_meraki(vault, scans, key, endpoint, api_key=True)
            row = next(r for r in plan.rows if r.target == "meraki-api-key")
            assert (row.action, row.title, row.admin) == ("create", "Meraki API key", key.uid)
            apply_plan(vault, plan)
            profile = vault.get(key.uid).meta["rotation"]
            assert profile["target"] == "meraki-api-key" and profile["resource"]
            again = plan_meraki(vault, scans, key, endpoint, api_key=True)
            assert [r.action for r in again.rows if r.target == "meraki-api-key"] == ["managed"]
            e = RotationEngine(vault, backoff=0.01)
            try:
                result = await e.rotate(key.uid)
            finally:
                await e.aclose()
            assert result.outcome is Outcome.ROTATED, result.reason
        finally:
            vault.close()


class Flaky(httpx.AsyncBaseTransport):
    """The real network to the simulator, except that the first `lose` answers to requests whose path
    ends with `suffix` are lost after the simulator acted (a timeout), or never sent (`before=True`)."""

    def __init__(self, suffix: str, lose: int = 1, *, before: bool = False) -> None:
        self._real = httpx.AsyncHTTPTransport()
        self.suffix, self.lose, self.before = suffix, lose, before

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        hit = request.url.path.endswith(self.suffix) and self.lose > 0
        if hit and self.before:
            self.lose -= 1
            raise httpx.ConnectError("connection refused", request=request)
        response = await self._real.handle_async_request(request)
        if hit:
            await response.aread()
            self.lose -= 1
            raise httpx.ReadTimeout("answer lost", request=request)
        return response

    async def aclose(self) -> None:
        await self._real.aclose()


def flaky_engine(s: Setup, transport: Flaky) -> RotationEngine:
    from keyturn.engine.rotate import TargetPool
    from keyturn.targets.meraki_api_key import MerakiApiKeyTarget
    from keyturn.targets.registry import create_target

    def make(kind: str):  # type: ignore[no-untyped-def]
        if kind == "meraki-api-key":
            return MerakiApiKeyTarget(lambda ep: httpx.AsyncClient(transport=transport), backoff=0.01)
        return create_target(kind)
    return RotationEngine(s.vault, targets=TargetPool(make), backoff=0.01)


async def test_a_lost_generate_answer_leaves_an_orphan_that_recovery_revokes(setup: Setup) -> None:
    s = setup
    old = s.current()
    e = flaky_engine(s, Flaky("/api/keys/generate"))
    try:
        result = await e.rotate(s.key_uid)
        assert result.outcome is Outcome.UNVERIFIED and "recover" in result.reason, result.reason
        assert len(await s.suffixes()) == 2 and s.current() == old      # Meraki made a key we never saw
        settled = await e.recover()
    finally:
        await e.aclose()
    assert [r.outcome for r in settled] == [Outcome.FAILED], [r.reason for r in settled]
    assert "revoked …" in settled[0].reason
    assert await s.suffixes() == [old[-4:]] and await s.works(old)


async def test_a_failed_revoke_of_the_old_key_is_finished_by_recovery(setup: Setup) -> None:
    s = setup
    old = s.current()
    e = flaky_engine(s, Flaky(f"/api/keys/{old[-4:]}/revoke", before=True))
    try:
        result = await e.rotate(s.key_uid)
        assert result.outcome is Outcome.NEEDS_ATTENTION and "revoking the old key" in result.reason, \
            result.reason
        new = s.current()
        assert new != old and await s.works(new) and await s.works(old)   # both work: nothing lost
        settled = await e.recover()
    finally:
        await e.aclose()
    assert [r.outcome for r in settled] == [Outcome.ROTATED], [r.reason for r in settled]
    assert await s.suffixes() == [new[-4:]] and not await s.works(old)


# ------------------------------------------------------------------------------ kill at every step

KILL_STEPS = ["lock", "verify_current", "generate", "apply", "write_ahead", "verify_new", "commit",
              "retire", "scripts", "audit"]


@pytest.mark.slow
async def test_kill_at_every_step_then_recover(tmp_path: Path) -> None:
    """One lab; per step a fresh identity and vault. The rotations run as `keyturn rotate` processes
    (three at a time) killed at their step; recovery then runs as `keyturn recover` does
    (`RotationEngine.recover`), step by step."""
    async with running_lab(tmp_path, iosxe=0, meraki_orgs=1, users_per_network=1) as lab:
        meraki = lab.lab.meraki
        assert meraki is not None
        setups = {}
        for step in KILL_STEPS:
            setups[step] = build(lab, tmp_path / step, key=meraki.add_api_key())
            setups[step].vault.close()
        gate = asyncio.Semaphore(3)

        async def killed(step: str) -> None:
            async with gate:
                code, _, err = await keyturn(tmp_path / step, "rotate", "--", setups[step].key_uid,
                                             kill_at=step)
            assert code == KILL_EXIT_CODE, f"{step}: {err}"

        await asyncio.gather(*(killed(step) for step in KILL_STEPS))
        for step, s in setups.items():
            s.vault = Vault.open(Settings(home=tmp_path / step))
            try:
                engine = RotationEngine(s.vault, backoff=0.01)
                try:
                    results = await engine.recover()
                finally:
                    await engine.aclose()
                assert all(not r.outcome.flagged for r in results), (step, results)
                assert "pending" not in [str(v.state) for v in s.vault.versions(s.key_uid)], step
                assert await s.works(s.current()), f"killed at {step}: the vault's key does not authenticate"
                assert await s.suffixes() == [s.current()[-4:]], f"killed at {step}: another key is left"
            finally:
                s.vault.close()
