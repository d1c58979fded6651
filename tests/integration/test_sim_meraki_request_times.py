"""The Meraki simulator's request-time log (`GET /_sim/request-times`), over a real socket."""

from __future__ import annotations

import httpx
import pytest

from keyturn.sim.meraki import SIM_REQUEST_TIMES, MerakiFrontend
from keyturn.sim.meraki_state import MerakiState

pytestmark = pytest.mark.asyncio


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


async def test_every_org_request_is_stamped_429s_included_and_nothing_else() -> None:
    state = MerakiState(seed=3)
    org = state.add_org("Times", org_id="4711")
    other = state.add_org("Quiet", org_id="4712")
    key = state.add_api_key()
    clock = FakeClock()
    frontend = MerakiFrontend(state, rate_per_org=1.0, burst=2, clock=clock)
    port = await frontend.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                     headers={"Authorization": f"Bearer {key}"}, timeout=5) as http:
            statuses = []
            for at in (500.0, 500.25, 500.5):          # burst 2: the third is a 429
                clock.now = at
                statuses.append((await http.get(f"/api/v1/organizations/{org.id}/networks")).status_code)
            clock.now = 501.0
            await http.get("/api/v1/organizations")       # not tied to an org: not stamped
            body = (await http.get(SIM_REQUEST_TIMES, headers={})).json()
    finally:
        await frontend.stop()
    assert statuses == [200, 200, 429]
    assert body == {"clock": 501.0, "orgs": {org.id: [500.0, 500.25, 500.5]}}
    assert other.id not in body["orgs"]
