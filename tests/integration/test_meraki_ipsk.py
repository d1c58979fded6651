"""`meraki-ipsk` against the lab's Meraki simulator over real sockets: overlap (old and new iPSK both
work), the replaced one deleted after the grace — by another process than the one that rotated —, a
crash between create and commit settled by the family name, the current iPSK never deleted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keyturn.config import Settings
from keyturn.engine.grace import SWEPT_KEY, sweep_grace
from keyturn.engine.hooks import KILL_EXIT_CODE
from keyturn.engine.outcome import Outcome
from keyturn.engine.profile import set_profile
from keyturn.engine.rotate import RotationEngine
from keyturn.errors import ProfileError
from keyturn.secret import Secret
from keyturn.sim.client import LabState
from keyturn.sim.lab import Lab, LabOptions, make_plan
from keyturn.vault import Field, Vault
from tests.integration.test_cli_rotate_kill import keyturn

IPSK_SSID = 2     # the lab's SSID 2 is in identity PSK mode with one iPSK "kiosk" (group policy 101)


@dataclass
class World:
    lab: Lab
    vault: Vault
    home: Path
    net: str
    resource: str
    key_uid: str
    first_passphrase: str

    def family(self) -> dict[str, tuple[str, str]]:
        """name → (group policy, passphrase) of the SSID's identity PSKs, as the simulator holds them."""
        assert self.lab.meraki is not None
        ipsks = self.lab.meraki.networks[self.net].ssids[IPSK_SSID].identity_psks.values()
        return {p.name: (p.group_policy_id, p.passphrase) for p in ipsks}

    async def add(self, login: str = "kiosk", *, number: int = IPSK_SSID, grace: str = "1h",
                  password: str | None = None, **options: str) -> str:
        fields = [Field("login", None, [login])]
        if password or login == "kiosk":
            fields.append(Field("password", None, [Secret(password or self.first_passphrase)]))
        rec = self.vault.add(type="pamUser", title=f"{login} @ {self.net}", fields=fields,
                             allow_duplicate=True)
        # On a thread: set_profile asks the simulator, which answers on this test's event loop.
        await asyncio.to_thread(set_profile, self.vault, rec.uid, target="meraki-ipsk",
                                resource=self.resource, admin=self.key_uid,
                                options={"ssid": str(number), "grace": grace, **options})
        return rec.uid

    def current(self, uid: str) -> str:
        secret = self.vault.secret(uid)
        assert secret is not None
        return secret.reveal()


@pytest.fixture(name="w")
async def world(tmp_path: Path) -> AsyncIterator[World]:
    plan = make_plan(iosxe=0, meraki_orgs=1, users_per_network=0, ssids_per_network=2, seed=23)
    lab = Lab(plan, LabOptions(state_file=tmp_path / "lab.json", ssh=False))
    await lab.start()
    home = tmp_path / "home"
    vault = Vault.init(Settings(home=home))
    try:
        state = LabState.load(tmp_path / "lab.json")
        assert state.meraki is not None
        org = state.meraki.orgs[0]
        net = org.networks[0]
        key = vault.add(type="login", title="Meraki API key", fields=[
            Field("login", None, ["api"]), Field("password", None, [Secret(state.meraki.api_key)])])
        res = vault.add(type="pamMerakiNetwork", title=f"Meraki {net.name}", custom=[
            Field("text", "network_id", [net.id]), Field("text", "org_id", [org.id]),
            Field("text", "base_url", [state.meraki.base_url])])
        [ssid] = [s for s in net.ssids if s.number == IPSK_SSID]
        yield World(lab, vault, home, net.id, res.uid, key.uid, ssid.ipsks[0].passphrase)
    finally:
        vault.close()
        await lab.stop()


async def rotate(w: World, uid: str):
    engine = RotationEngine(w.vault, backoff=0.0)
    try:
        return await engine.rotate(uid)
    finally:
        await engine.aclose()


async def sweep(w: World, *, later: timedelta = timedelta(0)):
    engine = RotationEngine(w.vault, backoff=0.0)
    try:
        return await sweep_grace(engine, now=datetime.now(UTC) + later)
    finally:
        await engine.aclose()


async def test_overlap_then_the_replaced_ipsk_goes_after_the_grace(w: World) -> None:
    uid = await w.add(grace="1h")
    result = await rotate(w, uid)
    assert result.outcome is Outcome.ROTATED, result.reason
    assert result.verified_by == "read back"
    # Overlap: the old iPSK still works, the new one has the same group policy and the vault's secret.
    assert w.family() == {"kiosk": ("101", w.first_passphrase), "kiosk-v2": ("101", w.current(uid))}
    [early] = await sweep(w)
    assert early.state == "waiting" and "replaced identity PSKs go at" in early.detail
    assert set(w.family()) == {"kiosk", "kiosk-v2"}
    # A rotation holding the account: the sweep leaves it for the next one.
    from keyturn.engine.locks import LockManager

    locks, key = LockManager(w.vault.engine), f"{w.net}/ssid{IPSK_SSID}/kiosk"
    token = locks.acquire(key, "another-rotation")
    [held] = await sweep(w, later=timedelta(hours=2))
    assert held.state == "skipped" and "a rotation holds the account" in held.detail
    locks.release(key, "another-rotation", token)
    [done] = await sweep(w, later=timedelta(hours=2))
    assert (done.state, done.names) == ("deleted", ["kiosk"])
    assert w.family() == {"kiosk-v2": ("101", w.current(uid))}
    assert w.vault.get(uid).meta[SWEPT_KEY]["version"] == 2
    [again] = await sweep(w, later=timedelta(hours=3))
    assert again.state == "skipped"
    # A second rotation: kiosk-v3 beside kiosk-v2; v2 goes after its own grace.
    assert (await rotate(w, uid)).outcome is Outcome.ROTATED
    assert set(w.family()) == {"kiosk-v2", "kiosk-v3"}
    [done] = await sweep(w, later=timedelta(hours=2))
    assert done.names == ["kiosk-v2"] and set(w.family()) == {"kiosk-v3"}


async def test_grace_deletion_survives_the_rotating_process(w: World) -> None:
    uid = await w.add(grace="1s")
    w.vault.close()
    code, out, err = await keyturn(w.home, "rotate", "--json", "--", uid)
    assert code == 0, out + err
    assert [r["outcome"] for r in json.loads(out)["results"]] == ["rotated"]
    assert set(w.family()) == {"kiosk", "kiosk-v2"}          # the rotating process is gone
    await asyncio.sleep(1.5)  # past the 1 s grace; what is asserted is the state, not the time
    code, out, err = await keyturn(w.home, "recover")
    assert code == 0, out + err
    assert "grace kiosk @" in err and "deleted" in err and "(kiosk)" in err
    w.vault = Vault.open(Settings(home=w.home))
    assert w.family() == {"kiosk-v2": ("101", w.current(uid))}
    entries = w.vault.audit.list(action="ipsk.replaced_deleted")
    assert len(entries) == 1 and entries[0].details["deleted"][0]["name"] == "kiosk"
    assert w.first_passphrase not in json.dumps(entries[0].details)


async def test_killed_between_create_and_commit_is_finished_by_the_family_name(w: World) -> None:
    uid = await w.add(grace="1h")
    assert (await rotate(w, uid)).outcome is Outcome.ROTATED          # kiosk-v2 current, kiosk replaced
    w.vault.close()
    code, _, err = await keyturn(w.home, "rotate", "--", uid, kill_at="apply")
    assert code == KILL_EXIT_CODE, err
    created = w.family()["kiosk-v3"][1]
    w.vault = Vault.open(Settings(home=w.home))
    # Unsettled (the candidate is pending, kiosk-v3 on the SSID): the sweep deletes nothing.
    [skipped] = await sweep(w, later=timedelta(days=2))
    assert skipped.state == "skipped" and "pending" in skipped.detail
    assert set(w.family()) == {"kiosk", "kiosk-v2", "kiosk-v3"}
    w.vault.close()
    code, out, err = await keyturn(w.home, "recover", "--json")
    assert code == 0, out + err
    assert [r["outcome"] for r in json.loads(out)] == ["rotated"]
    w.vault = Vault.open(Settings(home=w.home))
    assert w.current(uid) == created
    [done] = await sweep(w, later=timedelta(hours=1))
    assert sorted(done.names) == ["kiosk", "kiosk-v2"] and w.family() == {"kiosk-v3": ("101", created)}


async def test_the_current_ipsk_is_never_deleted(w: World) -> None:
    uid = await w.add()
    assert (await rotate(w, uid)).outcome is Outcome.ROTATED
    # Someone deletes the new iPSK in the Dashboard: the vault's current one is gone from the SSID.
    assert w.lab.meraki is not None
    ipsks = w.lab.meraki.networks[w.net].ssids[IPSK_SSID].identity_psks
    [new_id] = [i for i, p in ipsks.items() if p.name == "kiosk-v2"]
    del ipsks[new_id]
    [refused] = await sweep(w, later=timedelta(days=2))
    assert refused.state == "failed" and "holds the vault's current passphrase" in refused.detail
    assert set(w.family()) == {"kiosk"}   # nothing deleted


async def test_rotation_set_refuses_a_non_ipsk_ssid_and_a_missing_family(w: World) -> None:
    with pytest.raises(ProfileError, match="uses authMode 'psk', not 'ipsk-without-radius'"):
        await w.add(number=1)
    with pytest.raises(ProfileError, match=r"no identity PSK named 'printer'.*group_policy"):
        await w.add("printer")
    with pytest.raises(ProfileError, match="grace"):
        await w.add("kiosk", grace="soon")


async def test_first_ipsk_of_a_family_with_a_group_policy(w: World) -> None:
    uid = await w.add("printer", group_policy="102")
    result = await rotate(w, uid)
    assert result.outcome is Outcome.ROTATED, result.reason
    assert w.family()["printer-v2"] == ("102", w.current(uid))


async def test_an_ipsk_left_by_a_rotation_settled_backward_is_swept(w: World) -> None:
    from keyturn.vault.versions import VersionState

    uid = await w.add(grace="1h")
    # A rotation created kiosk-v2 and was then rolled back: its candidate is a failed version.
    w.vault.add_version(uid, Secret("orphan-pass-1"), state=VersionState.FAILED, rotation_id="r" * 32)
    assert w.lab.meraki is not None
    w.lab.meraki.add_identity_psk(w.net, IPSK_SSID, "kiosk-v2", "101", "orphan-pass-1")
    [early] = await sweep(w)
    assert early.state == "waiting"
    [done] = await sweep(w, later=timedelta(hours=2))
    assert done.names == ["kiosk-v2"] and w.family() == {"kiosk": ("101", w.first_passphrase)}
