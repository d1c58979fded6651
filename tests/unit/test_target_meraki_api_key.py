"""`meraki-api-key` against canned Dashboard answers (`httpx.MockTransport`): what each answer of the
administered-identities API means to the target. The simulator tests are in tests/integration."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from keyturn.errors import ChangeRejected, TargetAuthRejected, TargetError
from keyturn.secret import Secret
from keyturn.targets.base import Account, Endpoint, Verdict
from keyturn.targets.meraki_api_key import MerakiApiKeyTarget

KEY = Secret("ab" * 20)
ACCOUNT = Account(record_uid="k1", username="lab admin",
                  endpoint=Endpoint(host="api.meraki.com", network_id="N_1", org_id="1"))
Answer = Callable[[httpx.Request], httpx.Response]


def target(answer: Answer) -> MerakiApiKeyTarget:
    return MerakiApiKeyTarget(lambda ep: httpx.AsyncClient(transport=httpx.MockTransport(answer)),
                              max_5xx=2, backoff=0.0)


async def test_generate_answers() -> None:
    answers = iter([httpx.Response(202, json={"key": "cd" * 20}),
                    httpx.Response(400, json={"errors": ["You can have at most two API keys"]}),
                    httpx.Response(202, json={"key": "not-a-key"}),
                    httpx.Response(401, json={"errors": ["Invalid API key"]})])
    t = target(lambda request: next(answers))
    try:
        assert (await t.generate(ACCOUNT, KEY)).reveal() == "cd" * 20
        with pytest.raises(ChangeRejected, match="refused to generate a key: HTTP 400 \\(You can have"):
            await t.generate(ACCOUNT, KEY)
        with pytest.raises(TargetError, match="without a readable key") as unreadable:
            await t.generate(ACCOUNT, KEY)
        assert not isinstance(unreadable.value, ChangeRejected)   # a key may exist: outcome unknown
        with pytest.raises(TargetAuthRejected):
            await t.generate(ACCOUNT, KEY)
    finally:
        await t.aclose()


async def test_issued_reads_suffixes_and_skips_junk() -> None:
    body = [{"suffix": "abab", "createdAt": "2026-12-02T10:00:00.123456Z"}, {"suffix": "../x"}, "junk",
            {"suffix": "cdcd", "createdAt": "not a date"}]
    t = target(lambda request: httpx.Response(200, json=body))
    try:
        keys = await t.issued(ACCOUNT, KEY)
    finally:
        await t.aclose()
    assert [k.handle for k in keys] == ["abab", "cdcd"]
    assert keys[0].created_at is not None and keys[0].created_at.year == 2026 and keys[1].created_at is None


@pytest.mark.parametrize(("me", "network", "verdict"), [
    (200, 200, Verdict.OK), (401, 200, Verdict.REJECTED), (200, 401, Verdict.REJECTED),
    (503, 200, Verdict.INCONCLUSIVE), (200, 404, Verdict.INCONCLUSIVE), (429, 200, Verdict.INCONCLUSIVE),
])
async def test_verify_verdicts(me: int, network: int, verdict: Verdict) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        status = me if request.url.path.endswith("/identities/me") else network
        headers = {"Retry-After": "0"} if status == 429 else {}
        return httpx.Response(status, json={"errors": ["x"]} if status >= 400 else {"id": "N_1"},
                              headers=headers)

    t = MerakiApiKeyTarget(lambda ep: httpx.AsyncClient(transport=httpx.MockTransport(answer)),
                           max_5xx=1, max_429=1, backoff=0.0)
    try:
        assert await t.verify(ACCOUNT, KEY) is verdict
    finally:
        await t.aclose()


async def test_retire_is_idempotent_and_refuses_other_answers() -> None:
    answers = iter([httpx.Response(202), httpx.Response(404, json={"errors": ["API key not found"]}),
                    httpx.Response(403, json={"errors": ["no"]})])
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path} {request.headers['Authorization'][:11]}")
        return next(answers)

    t = target(answer)
    try:
        await t.retire(ACCOUNT, KEY, "cdcd")
        await t.retire(ACCOUNT, KEY, "cdcd")
        with pytest.raises(TargetAuthRejected):
            await t.retire(ACCOUNT, KEY, "cdcd")
    finally:
        await t.aclose()
    assert seen[0] == "POST /api/v1/administered/identities/me/api/keys/cdcd/revoke Bearer abab"
