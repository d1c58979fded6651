"""The console's other pages in Chromium (`tests/console/conftest.py`: one lab, server and browser for all
the browser tests): reveal with re-authentication (audited, shown for a limited time, never cached, never
in a URL), the audit log (filters, chain status, export), an expired session that comes back to the page,
an invalid schedule form (the CLI's error inline, nothing saved), keyboard reach and labelled controls,
and a screenshot of every page.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.console.conftest import USERS, VIEWPORT, ConsoleStack, shot, sign_in, title_of

pytestmark = pytest.mark.timeout(180)

NETOPS, DEPLOY = (title_of(u) for u in USERS)


def _fields_are_labelled(page: Any) -> None:
    """Every visible form control has a label (or an aria-label) a screen reader announces."""
    unlabelled = page.locator("input:not([type=hidden]), select, textarea").evaluate_all(
        "els => els.filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))"
        ".map(e => e.outerHTML)")
    assert unlabelled == [], unlabelled


def test_reveal_needs_the_token_again_is_audited_and_removed_after_its_time(
        stack: ConsoleStack, browser: Any) -> None:
    uid = stack.uid(NETOPS)
    reveals = len(stack.audit("reveal", uid))
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.clock.install()                         # the 30 s display runs on a clock the test moves
    page.goto(stack.url(f"/console/accounts/{uid}"))
    sign_in(page, stack.tokens["admin"])
    page.get_by_role("link", name="Reveal the password…").click()
    page.wait_for_url(re.compile(r"/console/reveal\?record="))
    _fields_are_labelled(page)
    shot(page, "reveal_form")

    # The wrong token (another valid one): refused, audited, nothing revealed.
    page.get_by_label("Your API token (again)").fill(stack.tokens["operator"])
    page.get_by_role("button", name="Reveal").click()
    assert "nothing was revealed" in page.get_by_role("alert").inner_text()
    assert page.locator("#revealed").count() == 0
    assert len(stack.audit("reveal", uid)) == reveals
    assert stack.audit("console.reveal_denied")[0]["details"]["reason"] == "re-authentication failed"

    with page.expect_response(re.compile("/console/reveal$")) as answer:
        page.get_by_label("Your API token (again)").fill(stack.tokens["admin"])
        page.get_by_role("button", name="Reveal").click()
    value = page.locator("#revealed").inner_text()
    assert value == stack.api("POST", f"/records/{uid}/reveal").json()["value"]
    assert answer.value.headers["cache-control"] == "no-store"
    assert value not in page.url and "token" not in page.url
    entries = stack.audit("reveal", uid)
    assert len(entries) == reveals + 2                     # the console's, then the API check above
    assert entries[1]["actor"].startswith("api:console-admin#")
    shot(page, "reveal_shown")
    page.clock.run_for(31_000)
    page.locator("#reveal[data-state='removed']").wait_for()
    assert page.locator("#revealed").count() == 0 and value not in page.content()
    context.close()


def test_consumer_reveals_its_granted_record_only(stack: ConsoleStack, browser: Any) -> None:
    page = stack.signed_in(browser, "consumer", "/console/")
    page.get_by_role("link", name="here").click()             # the consumer's dashboard points there
    page.get_by_label("Record").fill(DEPLOY)
    page.get_by_label("Your API token (again)").fill(stack.tokens["consumer"])
    page.get_by_role("button", name="Reveal").click()
    assert page.locator("#revealed").inner_text() == stack.api(
        "POST", f"/records/{stack.uid(DEPLOY)}/reveal").json()["value"]
    page.goto(stack.url("/console/reveal?record=" + NETOPS.replace(" ", "%20")))
    page.get_by_label("Your API token (again)").fill(stack.tokens["consumer"])
    with page.expect_response(re.compile("/console/reveal$")) as answer:
        page.get_by_role("button", name="Reveal").click()
    assert answer.value.status == 403 and page.locator("#revealed").count() == 0
    assert "no grant" in page.get_by_role("alert").inner_text()
    page.context.close()


def test_audit_filters_chain_status_and_export(stack: ConsoleStack, browser: Any) -> None:
    uid = stack.uid(NETOPS)
    page = stack.signed_in(browser, "auditor", "/console/audit")
    _fields_are_labelled(page)
    page.get_by_label("Action").fill("rotation.profile_set")
    page.get_by_label("Record").fill(NETOPS)
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.audit tbody tr")
    assert rows.count() == 1 and uid in rows.first.inner_text()
    shot(page, "audit")

    page.get_by_label("From (time or age, e.g. 7d)").fill("yesterday-ish")
    page.get_by_role("button", name="Filter").click()
    error = page.get_by_role("alert").inner_text()
    assert "from 'yesterday-ish': expected an ISO 8601 time" in error        # the CLI's wording

    page.get_by_role("link", name="Check the chain").click()
    assert page.locator("#chain-status").inner_text().startswith("Intact:")

    page.goto(stack.url("/console/audit"))
    page.get_by_label("Export from").fill("1d")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export").click()
    lines = [json.loads(x) for x in Path(download.value.path()).read_text(encoding="utf-8").splitlines()]
    ids = [e["id"] for e in lines]
    assert ids == sorted(ids) and lines[0]["action"] and len(lines) > 10
    assert stack.audit("audit.export")[0]["details"]["output"] == "console"
    page.context.close()


def test_expired_session_signs_in_again_and_returns_to_the_page(stack: ConsoleStack, browser: Any) -> None:
    uid = stack.uid(DEPLOY)
    page = stack.signed_in(browser, "auditor", "/console/audit?action=reveal")
    cookie = next(c for c in page.context.cookies() if c["name"] == "keyturn_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["secure"]
    # A session the server no longer has (idle timeout, restart): same cookie name, unknown id.
    page.context.add_cookies([{**cookie, "value": "x" * 43}])
    page.goto(stack.url(f"/console/accounts/{uid}?rotation=abc"))
    page.wait_for_url(re.compile("/console/signin"))
    assert "session has ended" in page.get_by_role("status").inner_text()
    sign_in(page, stack.tokens["auditor"])
    page.wait_for_url(re.compile(f"/console/accounts/{uid}\\?rotation=abc"))
    page.context.close()


def test_an_invalid_schedule_shows_the_cli_error_inline_and_saves_nothing(
        stack: ConsoleStack, browser: Any) -> None:
    uid = stack.uid(DEPLOY)
    page = stack.signed_in(browser, "operator", "/console/schedules")
    for field, value, cli in (("Schedule", "0 25 * * *", ("--schedule", "0 25 * * *")),
                              ("Time zone", "Mars/Olympus",
                               ("--schedule", "every 30d", "--tz", "Mars/Olympus"))):
        page.get_by_label("Record", exact=True).fill(DEPLOY)
        page.get_by_label("Schedule", exact=True).fill(cli[1])
        page.get_by_label("Time zone", exact=True).fill(value if field == "Time zone" else "")
        page.get_by_role("button", name="Save schedule").click()
        error = page.get_by_role("alert").inner_text()
        assert error == stack.keyturn_error("schedule", "set", DEPLOY, *cli)
        typed = page.get_by_label(field, exact=True)
        assert typed.input_value() == value and typed.get_attribute("aria-invalid") == "true"   # kept, marked
    shot(page, "schedules_invalid")
    page.context.close()
    assert stack.api("GET", f"/records/{uid}/schedule").json()["schedule"] is None     # nothing saved


def test_keyboard_reaches_the_main_controls_and_every_page_has_a_screenshot(
        stack: ConsoleStack, browser: Any) -> None:
    uid = stack.uid(NETOPS)
    page = stack.signed_in(browser, "admin", f"/console/accounts/{uid}")
    _fields_are_labelled(page)
    assert _tab_until(page, "Rotate now")[:3] == ["Skip to content", "keyturn", "Dashboard"]
    page.goto(stack.url("/console/accounts"))
    reached = _tab_until(page, "Filter")
    assert "f-q" in reached, reached                           # the (empty) search box comes before
    assert page.evaluate("document.activeElement.form.getAttribute('role')") == "search"
    for name, path in (("dashboard", "/console/"), ("accounts", "/console/accounts"),
                       ("schedules", "/console/schedules"), ("profiles", "/console/profiles"),
                       ("profile_edit", f"/console/profiles/{uid}"), ("audit_chain", "/console/audit/chain")):
        answer = page.goto(stack.url(path))
        assert answer is not None and answer.status == 200, path
        _fields_are_labelled(page)
        shot(page, name)
    page.context.close()

    dark = browser.new_context(viewport=VIEWPORT, color_scheme="dark").new_page()
    dark.goto(stack.url(f"/console/accounts/{uid}"))
    _fields_are_labelled(dark)                                   # the sign-in form
    shot(dark, "signin_dark")
    sign_in(dark, stack.tokens["admin"])
    background = dark.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(255, 255, 255)"                   # the system's dark setting is followed
    shot(dark, "account_detail_dark")
    dark.context.close()


def _tab_until(page: Any, label: str, limit: int = 40) -> list[str]:
    """Press Tab until the focused control reads `label`; what was focused on the way (text, value or
    id)."""
    reached = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = "(e => (e.innerText || e.value || e.id).trim())(document.activeElement)"
        reached.append(page.evaluate(focused))
        if reached[-1] == label:
            return reached
    raise AssertionError(f"Tab never reached {label!r}: {reached}")
