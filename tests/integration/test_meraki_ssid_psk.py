"""`meraki-ssid-psk` against the lab's Meraki simulator over real sockets: rotate, read back, scripts,
bad policies and non-PSK SSIDs refused, a 429 storm paced, a crash at every step recovered."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from keyturn.config import Settings
from keyturn.engine.batch import rotate_many
from keyturn.engine.hooks import KILL_EXIT_CODE
from keyturn.engine.outcome import Outcome
from keyturn.engine.profile import set_profile
from keyturn.engine.rotate import RotationEngine
from keyturn.errors import PolicyError, ProfileError
from keyturn.scripts.attachments import ScriptAttachment
from keyturn.secret import Secret
from keyturn.sim.client import LabState
from keyturn.sim.lab import Lab, LabOptions, make_plan
from keyturn.vault import Field, Vault
from tests.integration.test_cli_rotate_kill import keyturn

SCRIPT = """\
import base64, json, os, sys
for line in sys.stdin:
    params = json.loads(base64.b64decode(line))
    break
with open(os.environ["PSK_OUT"], "a") as out:
    out.write(json.dumps({"user": params["user"], "psk": params["newPassword"]}) + "\\n")
print("guest portal updated")
"""


@dataclass
class World:
    lab: Lab
    state: LabState
    vault: Vault
    home: Path
    key_uid: str
    networks: dict[str, str]      # network id → resource record uid

    @property
    def sim(self):  # the simulator's state (the truth about every SSID)
        assert self.lab.meraki is not None
        return self.lab.meraki

    def psk(self, network_id: str, number: int) -> str | None:
        return self.sim.networks[network_id].ssids[number].psk

    async def set_profile(self, uid: str, **profile) -> None:
        # On a thread: set_profile asks the simulator, which answers on this test's event loop.
        await asyncio.to_thread(set_profile, self.vault, uid, target="meraki-ssid-psk", admin=self.key_uid,
                                **profile)

    async def add_ssid(self, network_id: str, number: int, *, set_it: bool = True, **profile) -> str:
        net = self.state.meraki.network(network_id)
        ssid = next(s for s in net.ssids if s.number == number)
        fields = [Field("login", None, [ssid.name])]
        if ssid.psk:
            fields.append(Field("password", None, [Secret(ssid.psk)]))
        rec = self.vault.add(type="pamUser", title=f"{ssid.name} @ {network_id}", fields=fields)
        if set_it:
            await self.set_profile(rec.uid, resource=self.networks[network_id],
                                   options={"ssid": str(number)}, **profile)
        return rec.uid


@pytest.fixture(name="w")
async def world(tmp_path: Path) -> AsyncIterator[World]:
    plan = make_plan(iosxe=0, meraki_orgs=1, networks_per_org=2, users_per_network=0, ssids_per_network=4,
                     seed=19)
    lab = Lab(plan, LabOptions(state_file=tmp_path / "lab.json", ssh=False))
    await lab.start()
    home = tmp_path / "home"
    vault = Vault.init(Settings(home=home))
    try:
        state = LabState.load(tmp_path / "lab.json")
        assert state.meraki is not None
        key = vault.add(type="login", title="Meraki API key", fields=[
            Field("login", None, ["api"]), Field("password", None, [Secret(state.meraki.api_key)])])
        networks = {}
        for org in state.meraki.orgs:
            for net in org.networks:
                res = vault.add(type="pamMerakiNetwork", title=f"Meraki {net.name}", custom=[
                    Field("text", "network_id", [net.id]), Field("text", "org_id", [org.id]),
                    Field("text", "base_url", [state.meraki.base_url])])
                networks[net.id] = res.uid
        yield World(lab, state, vault, home, key.uid, networks)
    finally:
        vault.close()
        await lab.stop()


def first_net(w: World) -> str:
    return next(iter(w.networks))


async def rotate(w: World, *uids: str) -> list:
    engine = RotationEngine(w.vault, backoff=0.0)
    try:
        return await rotate_many(engine, list(uids), concurrency=8, per_device=4)
    finally:
        await engine.aclose()


async def test_rotates_reads_back_and_hands_the_new_psk_to_scripts(w: World, tmp_path: Path) -> None:
    script = tmp_path / "portal.py"
    script.write_text(SCRIPT)
    out = tmp_path / "psk.jsonl"
    net = first_net(w)
    before = w.psk(net, 1)
    uid = await w.add_ssid(net, 1, policy="20,2,2,2,2")
    w.vault.set_meta(uid, "scripts", [ScriptAttachment(str(script), prefix=sys.executable,
                                                       env={"PSK_OUT": str(out)}).to_meta()])
    [result] = await rotate(w, uid)
    assert result.outcome is Outcome.ROTATED, result.reason
    assert result.verified_by == "read back"
    current = w.vault.secret(uid)
    assert current is not None and len(current) == 20
    assert w.psk(net, 1) == current.reveal() != before
    # The Keeper script protocol: the script got the SSID (login) and the new PSK on stdin.
    [seen] = [json.loads(line) for line in out.read_text().splitlines()]
    assert seen == {"user": "Staff PSK 1", "psk": current.reveal()}
    # The other network's SSID 1 is another account: untouched.
    other = next(n for n in w.networks if n != net)
    assert w.psk(other, 1) == w.state.meraki.network(other).ssids[0].psk


@pytest.mark.parametrize(("policy", "words"), [("64,0,0,0,0", "above the target's maximum 63"),
                                                ("7,0,0,0,0", "below the target's minimum 8")])
async def test_policy_outside_8_to_63_refused_at_rotation_set(w: World, policy: str, words: str) -> None:
    net = first_net(w)
    uid = await w.add_ssid(net, 1, set_it=False)
    with pytest.raises(PolicyError, match="meraki-ssid-psk, which takes 8-63 characters") as exc:
        await w.set_profile(uid, resource=w.networks[net], policy=policy, options={"ssid": "1"})
    assert words in str(exc.value)
    assert "rotation" not in w.vault.get(uid).meta  # nothing stored


async def test_rotation_set_cli_refuses_a_bad_policy_with_one_line(w: World) -> None:
    net = first_net(w)
    uid = await w.add_ssid(net, 1, set_it=False)
    w.vault.close()
    code, out, err = await keyturn(w.home, "rotation", "set", uid, "--target", "meraki-ssid-psk",
                                   "--resource", w.networks[net], "--admin", w.key_uid, "--policy", "64",
                                   "--option", "ssid=1")
    w.vault = Vault.open(Settings(home=w.home))
    assert code != 0 and "Traceback" not in err
    assert "meraki-ssid-psk, which takes 8-63 characters" in out + err


@pytest.mark.parametrize(("number", "mode"), [(3, "8021x-radius"), (4, "open"), (2, "ipsk-without-radius")])
async def test_ssid_not_in_psk_mode_refused_at_rotation_set(w: World, number: int, mode: str) -> None:
    net = first_net(w)
    uid = await w.add_ssid(net, number, set_it=False)
    with pytest.raises(ProfileError, match=f"uses authMode '{mode}', not 'psk'"):
        await w.set_profile(uid, resource=w.networks[net], options={"ssid": str(number)})
    assert "rotation" not in w.vault.get(uid).meta


async def test_rotation_set_does_not_refuse_an_unreachable_dashboard(w: World) -> None:
    from tests.contract.test_target_contract import closed_port

    net = first_net(w)
    dead = w.vault.add(type="pamMerakiNetwork", title="Meraki offline", custom=[
        Field("text", "network_id", [net]), Field("text", "base_url", [f"http://127.0.0.1:{closed_port()}/api/v1"])])
    uid = await w.add_ssid(net, 1, set_it=False)
    await w.set_profile(uid, resource=dead.uid, options={"ssid": "1"})   # checked again at rotation time
    assert w.vault.get(uid).meta["rotation"]["target"] == "meraki-ssid-psk"


async def test_ssid_switched_away_from_psk_fails_the_rotation_nothing_changed(w: World) -> None:
    net = first_net(w)
    uid = await w.add_ssid(net, 1)
    w.sim.configure_ssid(net, 1, auth_mode="8021x-radius")  # someone changed it in the Dashboard
    [result] = await rotate(w, uid)
    assert result.outcome is Outcome.FAILED
    assert "uses authMode '8021x-radius', not 'psk'" in result.reason
    assert sorted(str(v.state) for v in w.vault.versions(uid)) == ["current", "failed"]
    assert w.sim.networks[net].ssids[1].psk_changes == 0


async def test_missing_ssid_option_is_refused(w: World) -> None:
    net = first_net(w)
    uid = await w.add_ssid(net, 1, set_it=False)
    with pytest.raises(ProfileError, match="needs --option ssid=N"):
        await w.set_profile(uid, resource=w.networks[net])


async def test_429_storm_is_paced_no_rotation_fails(w: World) -> None:
    uids = [await w.add_ssid(net, 1) for net in w.networks]
    org = w.state.meraki.orgs[0].id
    w.sim.faults_for(org).update(rate_limit_storm=3, retry_after=1)
    results = await rotate(w, *uids)
    assert [r.outcome for r in results] == [Outcome.ROTATED] * len(uids), [r.reason for r in results]
    assert w.sim.stats_for(org).storm_limited == 3
    for uid, net in zip(uids, w.networks, strict=True):
        assert w.psk(net, 1) == w.vault.secret(uid).reveal()


async def test_answer_lost_after_the_put_is_settled_by_reading_back(w: World) -> None:
    net = first_net(w)
    uid = await w.add_ssid(net, 1)
    w.sim.faults_for(w.state.meraki.orgs[0].id).update(drop_after_apply=1)
    [result] = await rotate(w, uid)
    assert result.outcome is Outcome.ROTATED, result.reason
    assert w.psk(net, 1) == w.vault.secret(uid).reveal()


# Every step boundary is exercised for the Meraki plumbing by test_cli_rotate_kill (meraki-auth-user);
# here the one where the SSID and the vault disagree: the PSK changed, the candidate still pending.
@pytest.mark.slow
@pytest.mark.parametrize("step", ["apply"])
async def test_killed_mid_rotation_then_recovered(w: World, step: str) -> None:
    net = first_net(w)
    uid = await w.add_ssid(net, 1)
    w.vault.close()
    code, _, err = await keyturn(w.home, "rotate", "--", uid, kill_at=step)
    assert code == KILL_EXIT_CODE, err
    code, out, err = await keyturn(w.home, "recover", "--json")
    assert code == 0, out + err
    assert all(r["outcome"] not in ("unverified", "needs_attention") for r in json.loads(out))
    w.vault = Vault.open(Settings(home=w.home))
    assert "pending" not in [str(v.state) for v in w.vault.versions(uid)]
    assert w.psk(net, 1) == w.vault.secret(uid).reveal(), f"killed at {step}"


async def test_the_official_sdk_accepts_the_wireless_endpoints(w: World) -> None:
    import meraki

    from tests.integration.test_sim_meraki_clients import SDK_QUIET

    net = first_net(w)
    assert w.state.meraki is not None
    key, base = w.state.meraki.api_key, w.state.meraki.base_url

    def run() -> tuple[list, dict, list]:
        dash = meraki.DashboardAPI(key, base_url=base, **SDK_QUIET)
        try:
            ssids = dash.wireless.getNetworkWirelessSsids(net)
            updated = dash.wireless.updateNetworkWirelessSsid(net, 1, psk="sdk-rotated-psk")
            made = dash.wireless.createNetworkWirelessSsidIdentityPsk(net, 2, "sdk-ipsk", "101",
                                                                     passphrase="sdk-ipsk-pass")
            dash.wireless.deleteNetworkWirelessSsidIdentityPsk(net, 2, made["id"])
            try:
                dash.wireless.updateNetworkWirelessSsid(net, 3, psk="not-psk-mode")
            except meraki.APIError as exc:
                refused = [exc.status, exc.message]
            return ssids, updated, refused
        finally:
            dash._session.close()

    ssids, updated, refused = await asyncio.to_thread(run)
    assert [s["number"] for s in ssids] == list(range(15))
    assert updated["psk"] == "sdk-rotated-psk" == w.psk(net, 1)
    assert refused == [400, {"errors": ["'psk' is only valid if the authMode is 'psk'"]}]
    assert [p.name for p in w.sim.networks[net].ssids[2].identity_psks.values()] == ["kiosk"]


async def test_discovery_proposes_psk_ssids_and_ipsk_families_and_applies(w: World) -> None:
    from keyturn.discovery import (
        WIRELESS_KINDS,
        apply_plan,
        meraki_endpoint,
        plan_meraki,
        scan_meraki,
        scan_wireless,
    )
    from keyturn.engine.accounts import build_admin
    from keyturn.engine.rotate import TargetPool

    key = w.vault.get(w.key_uid)
    w.vault.update(key.uid, custom=[Field("text", "base_url", [w.state.meraki.base_url])])
    key = w.vault.get(w.key_uid)
    admin, endpoint = build_admin(w.vault, key), meraki_endpoint(key)
    managed = await w.add_ssid(first_net(w), 1)            # already rotated: proposed as managed
    pool = TargetPool()
    try:
        scans = await scan_meraki(pool.get("meraki-auth-user"), endpoint, admin)
        radio = await scan_wireless({k: pool.get(k) for k in WIRELESS_KINDS}, endpoint, admin, scans)
    finally:
        await pool.aclose()
    plan = plan_meraki(w.vault, scans, key, endpoint, wireless=radio)
    rows = sorted((r.target, r.account, r.action, dict(r.options).get("ssid")) for r in plan.rows)
    assert rows == [("meraki-ipsk", "kiosk", "create", "2")] * 2 + [
        ("meraki-ssid-psk", "Staff PSK 1", "create", "1"),
        ("meraki-ssid-psk", "Staff PSK 1", "managed", None)]
    assert plan.networks == []    # both networks have records
    created = await asyncio.to_thread(apply_plan, w.vault, plan)
    assert len(created) == 3
    results = await rotate(w, *created)
    assert [r.outcome for r in results] == [Outcome.ROTATED] * 3, [r.reason for r in results]
    assert managed not in created
