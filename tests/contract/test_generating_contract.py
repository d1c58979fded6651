"""The contract of a `Generating` target against its simulator (the set-based contract in
`test_target_contract.py` does not fit: the platform makes the secret, `change` is refused):

generate → verify new OK → retire old → verify old REJECTED → retire old again OK (idempotent) →
issued lists the new handle only → at the platform's limit generate raises `ChangeRejected` → an
unreachable platform gives `verify` INCONCLUSIVE and `generate` raises `TargetUnreachable`; a 5xx on
generate is never retried (a retry could mint a key whose value is lost).

Real sockets on 127.0.0.1 for the simulator; `httpx.MockTransport` for the 5xx count.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import httpx
import pytest

from keyturn.errors import ChangeRejected, ProfileError, TargetUnreachable
from keyturn.secret import Secret
from keyturn.sim.meraki import MerakiFrontend
from keyturn.sim.meraki_state import MerakiState
from keyturn.targets.base import Account, Endpoint, Generating, Verdict
from keyturn.targets.meraki_api_key import MerakiApiKeyTarget
from keyturn.targets.registry import create_target


@dataclass
class Case:
    target: MerakiApiKeyTarget
    account: Account
    dead: Account
    key: Secret
    state: MerakiState


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


@pytest.fixture
async def case() -> AsyncIterator[Case]:
    state = MerakiState(seed=3)
    org = state.add_org("Contract Org")
    net = state.add_network(org.id, "Contract Net")
    key = state.add_api_key()
    frontend = MerakiFrontend(state)
    port = await frontend.start("127.0.0.1", 0)
    endpoint = Endpoint(host="127.0.0.1", base_url=f"http://127.0.0.1:{port}/api/v1", network_id=net.id,
                        org_id=org.id)
    account = Account(record_uid="k1", username="lab admin", endpoint=endpoint)
    dead = replace(account, endpoint=replace(endpoint, base_url=f"http://127.0.0.1:{closed_port()}/api/v1"))
    target = create_target("meraki-api-key", max_5xx=2, backoff=0.01)
    assert isinstance(target, MerakiApiKeyTarget) and isinstance(target, Generating)
    try:
        yield Case(target, account, dead, Secret(key), state)
    finally:
        await target.aclose()
        await frontend.stop()


async def test_generating_contract(case: Case) -> None:
    t, account, old = case.target, case.account, case.key
    assert await t.verify(account, old) is Verdict.OK
    assert [k.handle for k in await t.issued(account, old)] == [t.handle(old)]
    new = await t.generate(account, old)
    assert new.reveal() != old.reveal() and len(new.reveal()) == 40
    assert await t.verify(account, new) is Verdict.OK
    with pytest.raises(ChangeRejected, match="at most two API keys"):   # the identity is full
        await t.generate(account, new)
    await t.retire(account, new, t.handle(old))
    assert await t.verify(account, old) is Verdict.REJECTED
    await t.retire(account, new, t.handle(old))                           # already gone: idempotent
    assert [k.handle for k in await t.issued(account, new)] == [t.handle(new)]
    assert await t.verify(case.dead, new) is Verdict.INCONCLUSIVE
    with pytest.raises(TargetUnreachable):
        await t.generate(case.dead, new)
    with pytest.raises(ChangeRejected, match="cannot be set"):
        await t.change(account, new, Secret("x" * 40))


async def test_bad_input_is_refused_before_any_request(case: Case) -> None:
    t = case.target
    with pytest.raises(ProfileError, match="not a key suffix"):
        await t.retire(case.account, case.key, "../x")
    ep = case.account.endpoint
    odd = replace(case.account, endpoint=replace(ep, options={"propagation_timeout": "soon"}))
    with pytest.raises(ProfileError, match="propagation_timeout"):
        t.propagation(odd)
    assert t.propagation(replace(odd, endpoint=replace(odd.endpoint, options={"propagation_timeout": "7"}))
                         ).timeout == 7.0
    with pytest.raises(ProfileError, match="takes no profile option"):
        MerakiApiKeyTarget.validate_options({"mode": "secret"})


async def test_a_5xx_on_generate_is_not_retried() -> None:
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        return httpx.Response(503, json={"errors": ["Service unavailable"]})

    target = MerakiApiKeyTarget(lambda ep: httpx.AsyncClient(transport=httpx.MockTransport(answer)),
                                max_5xx=3, backoff=0.0)
    account = Account(record_uid="k1", username="lab admin",
                      endpoint=Endpoint(host="api.meraki.com", network_id="N_1", org_id="1"))
    try:
        with pytest.raises(TargetUnreachable, match="after 1 attempts"):
            await target.generate(account, Secret("a" * 40))
        assert calls == ["POST /api/v1/administered/identities/me/api/keys/generate"]
    finally:
        await target.aclose()
