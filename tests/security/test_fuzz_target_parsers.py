"""Fuzzing what devices and APIs send back (issue 12, "Also"): a rogue or broken peer can answer
anything; keyturn may refuse it, never crash on it. Every answer ends in a result or a `KeyturnError`.

Covered: the SSH target's CLI-output error scan (`iosxe_ssh._errors`), RESTCONF error bodies
(`iosxe_restconf.restconf_errors` / `describe_errors`) and the Meraki target end to end (`change` and
`verify` against a Dashboard that answers with fuzzed statuses, headers and bodies).
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyturn.engine.ratelimit import OrgBudgets
from keyturn.errors import KeyturnError
from keyturn.secret import REDACTED, Secret
from keyturn.targets.base import Account, AdminCredential, Endpoint, Verdict
from keyturn.targets.iosxe_restconf import describe_errors, restconf_errors
from keyturn.targets.iosxe_ssh import CLI_ERRORS, _errors
from keyturn.targets.meraki import MerakiAuthUserTarget

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


# ---- SSH: CLI output ------------------------------------------------------------------------------------

error_lines = st.builds(lambda a, b: a + b, st.sampled_from(CLI_ERRORS), st.text(max_size=30))
cli_lines = st.lists(st.one_of(st.text(max_size=60), error_lines), max_size=8)


@FUZZ
@given(lines=cli_lines, sep=st.sampled_from(["\n", "\r\n", "\r", "\n\r"]), secret=st.text(max_size=12))
def test_ssh_error_scan_takes_any_output_and_never_echoes_the_secret(lines: list[str], sep: str,
                                                                     secret: str) -> None:
    output = sep.join(line + (secret if i % 2 else "") for i, line in enumerate(lines))
    found = _errors(output, Secret(secret) if secret else None, None)
    assert all(isinstance(line, str) and "\r" not in line and "\n" not in line for line in found)
    if secret.strip() and secret not in REDACTED and not any(secret in m or m in secret for m in CLI_ERRORS):
        assert all(secret not in line for line in found)


# ---- RESTCONF: error bodies -----------------------------------------------------------------------------

restconf_bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(lambda root, errs: json.dumps({root: {"error": errs}}).encode(),
              st.sampled_from(["ietf-restconf:errors", "errors", "x"]),
              st.lists(json_values | st.fixed_dictionaries({"error-tag": json_values,
                                                           "error-message": json_values}), max_size=4)
              | json_values),
)


@FUZZ
@given(status=st.integers(100, 599), body=restconf_bodies, scrub=st.text(max_size=10))
def test_restconf_error_bodies_of_any_shape(status: int, body: bytes, scrub: str) -> None:
    response = httpx.Response(status, content=body, headers={"Content-Type": "application/yang-data+json"})
    errors = restconf_errors(response)
    assert isinstance(errors, list) and all(isinstance(e, dict) for e in errors)
    text = describe_errors(response, scrub=Secret(scrub) if scrub else None)
    assert text.startswith(f"HTTP {status} (")


# ---- Meraki: the whole exchange -------------------------------------------------------------------------

USER = {"id": "amFuZQ==", "email": "jane.roe@example.com", "isAdmin": False}
statuses = st.sampled_from([200, 200, 200, 201, 204, 301, 302, 307, 400, 401, 403, 404, 409, 429, 500,
                            502, 503, 504]) | st.integers(100, 599)
headers = st.fixed_dictionaries({}, optional={
    "Retry-After": st.one_of(st.text(max_size=8), st.sampled_from(["inf", "-1", "nan", "1e308", "0.5", "3"])),
    "Location": st.one_of(st.text(max_size=30), st.sampled_from([
        "https://n1.meraki.com/api/v1/x", "http://api.meraki.com/x", "/api/v1/networks", "//evil.com/x",
        "https://evil.example/x", "https://[::1", "http://[bad", "A://[", "https://n1.meraki.com:99999/x"])),
})
bodies = st.one_of(
    st.binary(max_size=100),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(st.fixed_dictionaries({}, optional={"id": json_values, "email": json_values,
                                                  "isAdmin": json_values}), max_size=3).map(
        lambda users: json.dumps(users).encode()),
    st.just(json.dumps([USER]).encode()),
    st.just(json.dumps(USER).encode()),
    st.just(b"[" * 5000 + b"]" * 5000),  # nesting deeper than the JSON parser's recursion
)
answers = st.lists(st.tuples(statuses, headers, bodies), min_size=1, max_size=12)


class Fuzzed:
    """A Dashboard that answers with the given answers in turn, then 200 with the user."""

    def __init__(self, script: list[tuple[int, dict[str, str], bytes]]) -> None:
        self.script = list(script)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.script:
            status, head, body = self.script.pop(0)
            try:
                return httpx.Response(status, headers=head, content=body)
            except (ValueError, UnicodeEncodeError):  # a header httpx itself cannot carry
                return httpx.Response(status, content=body)
        return httpx.Response(200, json=[USER] if request.method == "GET" else USER)


async def exchange(script: list[tuple[int, dict[str, str], bytes]], verify_answer: bytes) -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    def clock() -> float:
        return now[0]

    def verifier(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=verify_answer)

    target = MerakiAuthUserTarget(
        lambda ep: httpx.AsyncClient(transport=httpx.MockTransport(Fuzzed(script))),
        budget=OrgBudgets(clock=clock, sleep=sleep), sleep=sleep, clock=clock, max_429=3,
        verifier_client=httpx.AsyncClient(transport=httpx.MockTransport(verifier)))
    account = Account(record_uid="rec", username="jane.roe@example.com",
                      endpoint=Endpoint(host="api.meraki.com", network_id="N_1",
                                        options={"verify_url": "https://verify.example/v"}),
                      admin=AdminCredential("api", Secret("k" * 40)))
    try:
        with contextlib.suppress(KeyturnError):
            await target.change(account, Secret("old-pw"), Secret("N3w-pw!"))
        assert await target.verify(account, Secret("N3w-pw!")) in set(Verdict)
    finally:
        await target.aclose()


@FUZZ
@given(script=answers, verify_answer=bodies)
def test_meraki_target_survives_any_dashboard_answer(script: list[tuple[int, dict[str, str], bytes]],
                                                     verify_answer: bytes) -> None:
    asyncio.run(exchange(script, verify_answer))


def test_deeply_nested_json_from_the_dashboard_is_an_error_not_a_crash() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    asyncio.run(exchange([(200, {}, deep)], deep))


def test_deeply_nested_restconf_error_body_is_not_a_crash() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    assert restconf_errors(httpx.Response(400, content=deep)) == []
