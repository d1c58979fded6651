"""The official `meraki` SDK (aio, unmodified) against the simulator's administered-identities API-key
endpoints (`sim/meraki_identities.py`): generate → 202 with the key, list by suffix (never a key), a
third key refused with Meraki's error body, a new key 401 while it propagates, revoke → the old key 401
at once, an unknown suffix 404; the control API reports suffixes only."""

from __future__ import annotations

from pathlib import Path

import meraki
import meraki.aio
import pytest

from keyturn.errors import SimulatorError
from keyturn.sim.meraki import MerakiFrontend
from keyturn.sim.meraki_state import MerakiState
from tests.integration.test_sim_meraki_clients import SDK_QUIET
from tests.lab_fixtures import running_lab


async def test_sdk_generates_lists_and_revokes_keys_with_propagation() -> None:
    state = MerakiState(seed=5)
    key = state.add_api_key()
    frontend = MerakiFrontend(state, key_propagation=3600)
    base = f"http://127.0.0.1:{await frontend.start()}/api/v1"
    try:
        async with meraki.aio.AsyncDashboardAPI(key, base_url=base, **SDK_QUIET) as dash:
            me = await dash.administered.getAdministeredIdentitiesMe()
            assert me["email"].endswith("@example.com") and me["authentication"]["api"]["key"]["created"]
            made = await dash.administered.generateAdministeredIdentitiesMeApiKeys()
            new = made["key"]
            assert len(new) == 40 and int(new, 16) >= 0
            listed = await dash.administered.getAdministeredIdentitiesMeApiKeys()
            assert sorted(k["suffix"] for k in listed) == sorted([key[-4:], new[-4:]])
            assert all(set(k) == {"suffix", "createdAt"} for k in listed)
            with pytest.raises(meraki.APIError) as third:
                await dash.administered.generateAdministeredIdentitiesMeApiKeys()
            assert third.value.status == 400 and "at most two API keys" in str(third.value.message)
        async with meraki.aio.AsyncDashboardAPI(new, base_url=base, **SDK_QUIET) as fresh:
            with pytest.raises(meraki.APIError) as early:          # still propagating
                await fresh.administered.getAdministeredIdentitiesMe()
            assert early.value.status == 401
            frontend.key_propagation = 0
            assert (await fresh.administered.getAdministeredIdentitiesMe())["email"] == me["email"]
            await fresh.administered.revokeAdministeredIdentitiesMeApiKeys(key[-4:])
            with pytest.raises(meraki.APIError) as unknown:
                await fresh.administered.revokeAdministeredIdentitiesMeApiKeys(key[-4:])
            assert unknown.value.status == 404
        async with meraki.aio.AsyncDashboardAPI(key, base_url=base, **SDK_QUIET) as gone:
            with pytest.raises(meraki.APIError) as revoked:        # revoked: 401 at once
                await gone.administered.getAdministeredIdentitiesMe()
            assert revoked.value.status == 401
    finally:
        await frontend.stop()


async def test_lab_control_api_sets_the_delay_and_shows_suffixes_only(tmp_path: Path) -> None:
    async with running_lab(tmp_path, iosxe=0, meraki_orgs=1, users_per_network=0,
                           meraki_key_propagation=5) as lab:
        assert lab.state.meraki is not None
        key = lab.state.meraki.api_key
        async with lab.control() as ctl:
            info = await ctl.api_keys()
            assert info["propagation"] == 5
            keys = [k for who in info["identities"] for k in who["keys"]]
            assert [(k["suffix"], k["usable"]) for k in keys] == [(key[-4:], True)]  # the lab's own: usable
            assert key not in str(info)
            assert (await ctl.api_keys(propagation=0))["propagation"] == 0
            with pytest.raises(SimulatorError, match="400 propagation must be 0 to 3600"):
                await ctl.api_keys(propagation=-1)
