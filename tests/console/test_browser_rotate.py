"""The console in Chromium against a real `keyturn serve` and a simulator lab: sign in, find an account,
rotate it now and watch the journal's steps arrive, then prove with the lab's own `/verify` that the new
secret is the device's; roles (a consumer sees no rotate button and a direct POST is a 403), CSRF, and a
server that goes away in the middle of a rotation.

One lab, one server and one browser for all the browser tests (`tests/console/conftest.py`).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.console.conftest import USERS, ConsoleStack, shot, sign_in, title_of

pytestmark = pytest.mark.timeout(180)

NETOPS, DEPLOY = (title_of(u) for u in USERS)
STEP_TIMEOUT = 30_000   # ms: a step of a rotation on the lab with latency, on a loaded machine


def _reveal_api(stack: ConsoleStack, uid: str) -> str:
    value: str = stack.api("POST", f"/records/{uid}/reveal").json()["value"]
    return value


def test_signin_search_rotate_now_and_watch_the_steps(stack: ConsoleStack, browser: Any) -> None:
    uid = stack.uid(NETOPS)
    old = _reveal_api(stack, uid)
    page = stack.signed_in(browser, "operator", "/console/accounts")
    page.get_by_label("Search").fill("netops1")          # found on the accounts page by its search box
    page.get_by_label("Search").press("Enter")
    page.get_by_role("link", name=NETOPS).click()
    page.wait_for_url(re.compile(f"/console/accounts/{uid}$"))
    shot(page, "account_detail")

    stack.set_latency(0.25)        # each device answer takes 0.25 s: the steps arrive one by one
    try:
        page.get_by_role("button", name="Rotate now").click()
        page.wait_for_url(re.compile(r"\?rotation=[0-9a-f]+"))
        progress = page.locator("#progress")
        # A step appears while the rotation still runs, then the outcome.
        progress.locator("tr[data-step='lock']").wait_for(timeout=STEP_TIMEOUT)
        seen_running = progress.get_attribute("data-state") == "running"
        page.locator("#progress[data-state='settled']").wait_for(timeout=60_000)
    finally:
        stack.set_latency(0.0)
    assert page.locator("#progress-outcome").inner_text() == "rotated"
    steps = progress.locator("tr[data-step]").evaluate_all("rows => rows.map(r => r.dataset.step)")
    assert steps[:4] == ["lock", "verify_current", "generate", "write_ahead"] and steps[-1] == "audit"
    assert "verify_new" in steps and "commit" in steps
    assert seen_running, "the panel never showed the rotation while it ran"
    shot(page, "rotate_now_progress")

    new = _reveal_api(stack, uid)
    assert new != old
    assert stack.lab_verify(USERS[0], new) and not stack.lab_verify(USERS[0], old)

    # The rotation page: journal, verdicts, proof, worker per step.
    page.get_by_role("link", name=re.compile("^[0-9a-f]{12}$")).first.click()
    page.wait_for_url(re.compile("/console/rotations/"))
    assert page.get_by_role("row", name=re.compile("Proved")).inner_text().endswith(
        "by login and stored hash")
    assert "verify new" in page.locator("#h-verdicts + ul").inner_text()
    assert re.search(r"pid \d+", page.locator("table.steps").inner_text())
    shot(page, "rotation_detail")
    page.context.close()


def test_consumer_and_auditor_see_no_rotate_button_and_a_post_is_refused(
        stack: ConsoleStack, browser: Any) -> None:
    uid = stack.uid(DEPLOY)
    before = len(stack.audit("api.rotate", uid))
    auditor = stack.signed_in(browser, "auditor", f"/console/accounts/{uid}")
    assert auditor.get_by_role("heading", name=re.compile(DEPLOY)).is_visible()
    assert auditor.get_by_role("button", name="Rotate now").count() == 0
    csrf = auditor.locator("input[name=csrf_token]").first.get_attribute("value")
    refused = auditor.request.post(stack.url(f"/console/accounts/{uid}/rotate"), form={"csrf_token": csrf},
                                   max_redirects=0)
    assert refused.status == 403 and "Nothing was changed" in refused.text()
    auditor.context.close()

    consumer = stack.signed_in(browser, "consumer", "/console/")
    assert consumer.get_by_role("button", name="Rotate now").count() == 0
    page = consumer.goto(stack.url(f"/console/accounts/{uid}"))
    assert page is not None and page.status == 403
    csrf = consumer.locator("input[name=csrf_token]").first.get_attribute("value")
    refused = consumer.request.post(stack.url(f"/console/accounts/{uid}/rotate"),
                                    form={"csrf_token": csrf}, max_redirects=0)
    assert refused.status == 403
    consumer.context.close()
    assert len(stack.audit("api.rotate", uid)) == before            # nothing started
    denied = [e for e in stack.audit("api.denied") if e["details"]["path"].endswith(f"{uid}/rotate")]
    assert {e["details"]["role"] for e in denied} >= {"auditor", "consumer"}


def test_a_post_without_the_csrf_token_is_refused(stack: ConsoleStack, browser: Any) -> None:
    uid = stack.uid(DEPLOY)
    before = len(stack.audit("api.rotate", uid))
    page = stack.signed_in(browser, "operator", f"/console/accounts/{uid}")
    for form in ({}, {"csrf_token": "forged"}):
        refused = page.request.post(stack.url(f"/console/accounts/{uid}/rotate"), form=form, max_redirects=0)
        assert refused.status == 403 and "CSRF" in refused.text()
    page.context.close()
    assert len(stack.audit("api.rotate", uid)) == before


def test_server_gone_mid_rotation_then_the_journal_state(stack: ConsoleStack, browser: Any) -> None:
    """The server dies (SIGKILL) after the candidate was written ahead: the page says it is gone; after
    the restart, recovery settles the rotation from the device, and the page shows what the journal
    says — forward or backward, the device holds the vault's current secret."""
    uid = stack.uid(DEPLOY)
    page = stack.signed_in(browser, "admin", f"/console/accounts/{uid}")
    stack.set_latency(0.3)
    try:
        page.get_by_role("button", name="Rotate now").click()
        page.wait_for_url(re.compile(r"\?rotation=[0-9a-f]+"))
        rotation_id = page.url.split("rotation=")[1].split("#")[0]
        page.locator("#progress tr[data-step='write_ahead']").wait_for(timeout=STEP_TIMEOUT)
        stack.kill_server()
        page.locator("#progress-conn").filter(has_text="not answering").wait_for(timeout=STEP_TIMEOUT)
        assert page.locator("#progress").get_attribute("data-state") == "unreachable"
        shot(page, "rotate_now_server_gone")
    finally:
        stack.set_latency(0.0)
    stack.start_server()           # recovery runs first: it probes the device and settles the rotation
    # Sessions live in the server process: after the restart the page asks to sign in again ...
    page.get_by_role("link", name=re.compile("Sign in again")).click()
    sign_in(page, stack.tokens["admin"])
    # ... and comes back to the same rotation, whose state is the journal's.
    page.wait_for_url(re.compile(f"rotation={rotation_id}"))
    page.locator("#progress[data-state='settled']").wait_for(timeout=STEP_TIMEOUT)
    journal = stack.api("GET", f"/rotations/{rotation_id}").json()
    assert page.locator("#progress-outcome").inner_text() == journal["outcome"] != "running"
    assert journal["reason"].startswith("recovered") and "recover" in [x["step"] for x in journal["steps"]]
    assert journal["reason"] in page.locator("#progress-reason").inner_text()
    assert stack.lab_verify(USERS[1], _reveal_api(stack, uid))       # nothing lost
    page.context.close()
