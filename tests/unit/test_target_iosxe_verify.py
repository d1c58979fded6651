"""Proof of a secret on IOS XE: AAA classification, verify modes, the failed-login ledger, quiet mode.

`prove` is driven by a small in-memory device (`FakeDevice`) with the `Prover` shape: it counts every
login it is asked for and every admin read, so each test shows what keyturn *cost* the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from keyturn.cisco_hash import StoredCredential, type9_hash
from keyturn.errors import AccountNotFound, TargetUnreachable
from keyturn.secret import Secret
from keyturn.targets.base import Account, AdminCredential, Endpoint, ProbeLedger, Proof, Verdict
from keyturn.targets.iosxe_verify import (
    AaaConfig,
    DeviceView,
    aaa_from_cli,
    aaa_from_restconf,
    choose,
    prove,
)

GOOD, BAD = "Good-Secret-1!", "Bad-Secret-2!"
TACACS_FIRST = AaaConfig(new_model=True, login_methods=("group tacacs+", "local"), max_fail=3,
                         block_for=(120, 5, 60))
LOCAL_FIRST = AaaConfig(new_model=True, login_methods=("local",), max_fail=3)


@dataclass
class FakeDevice:
    """A device as `prove` sees it: who may log in, what it stores, what its AAA says."""

    aaa: AaaConfig | None = TACACS_FIRST
    stored: StoredCredential | None = field(
        default_factory=lambda: StoredCredential("secret", "9", Secret(type9_hash(GOOD))))
    local_login: bool = False          # tacacs-first: a local user cannot log in
    refuse_connections: bool = False   # quiet mode
    aaa_error: Exception | None = None
    logins: list[str] = field(default_factory=list)
    failed_logins: int = 0
    reads: list[tuple[bool, bool]] = field(default_factory=list)
    path: Any = "ssh"

    async def login(self, account: Account, secret: Secret) -> tuple[Verdict, str]:
        if self.refuse_connections:
            return Verdict.INCONCLUSIVE, "connection reset"
        self.logins.append(secret.reveal())
        if self.local_login and secret.reveal() == GOOD:
            return Verdict.OK, ""
        self.failed_logins += 1
        return Verdict.REJECTED, ""

    async def read_device(self, account: Account, *, aaa: bool, user: bool) -> DeviceView:
        self.reads.append((aaa, user))
        if self.aaa_error is not None:
            raise self.aaa_error
        return DeviceView(aaa=self.aaa if aaa else None, stored=self.stored if user else None)


def account(*, admin: bool = True, **options: str) -> Account:
    cred = AdminCredential("admin", Secret("Admin-1!")) if admin else None
    return Account(record_uid="u", username="breakglass", endpoint=Endpoint(host="sw1"), admin=cred,
                   options=options)


# ---- AAA configuration ---------------------------------------------------------------------------

def test_aaa_from_cli_reads_the_lines_that_decide_logins() -> None:
    out = ("show running-config | include ^aaa |^login |^ip http auth\r\n"
           "aaa new-model\r\naaa authentication login default group tacacs+ local\r\n"
           "aaa authentication login VTY local\r\naaa authorization exec default local\r\n"
           "aaa local authentication attempts max-fail 3\r\nlogin block-for 120 attempts 5 within 60\r\n"
           "ip http authentication aaa\r\nsw1#")
    aaa = aaa_from_cli(out)
    assert aaa == AaaConfig(new_model=True, login_methods=("group tacacs+", "local"), http_auth="aaa",
                            max_fail=3, block_for=(120, 5, 60))
    assert aaa.local_decides("ssh") is False


def test_aaa_from_cli_without_new_model_is_local() -> None:
    aaa = aaa_from_cli("sw1#")
    assert not aaa.new_model and aaa.local_decides("ssh") is True


def test_aaa_from_restconf_reads_the_yang_shape() -> None:
    aaa_doc = {"Cisco-IOS-XE-native:aaa": {
        "Cisco-IOS-XE-aaa:new-model": [None],
        "Cisco-IOS-XE-aaa:authentication": {"login": [
            {"name": "default", "a1": {"group": "tacacs+"}, "a2": {"local": [None]}}]},
        "Cisco-IOS-XE-aaa:local": {"authentication": {"attempts": {"max-fail": 4}}}}}
    login_doc = {"Cisco-IOS-XE-native:login": {
        "block-config": {"block-for": 90, "attempts": 3, "within": 30}}}
    aaa = aaa_from_restconf(aaa_doc, login_doc)
    assert aaa == AaaConfig(new_model=True, login_methods=("group tacacs+", "local"), max_fail=4,
                            block_for=(90, 3, 30))


def test_aaa_from_restconf_empty_is_aaa_off() -> None:
    assert aaa_from_restconf(None, None) == AaaConfig()


def test_aaa_from_restconf_refuses_a_foreign_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        aaa_from_restconf({"Cisco-IOS-XE-native:aaa": ["not", "a", "container"]})


@pytest.mark.parametrize(("aaa", "path", "mode"), [
    (TACACS_FIRST, "ssh", "hash"),
    (AaaConfig(new_model=True, login_methods=("group radius", "local")), "ssh", "hash"),
    (LOCAL_FIRST, "ssh", "login"),
    (AaaConfig(), "ssh", "login"),                                  # AAA off
    (AaaConfig(new_model=True), "ssh", "login"),                    # new-model, no default list
    (replace(TACACS_FIRST, http_auth="local"), "http", "login"),    # ip http authentication local
    (replace(TACACS_FIRST, http_auth="local"), "ssh", "hash"),
    (AaaConfig(new_model=True, login_methods=("line",)), "ssh", "both"),
    (None, "ssh", "both"),
])
def test_auto_picks_the_proof_from_aaa(aaa: AaaConfig | None, path: Any, mode: str) -> None:
    chosen, why = choose(aaa, path)
    assert chosen == mode and why


# ---- prove -----------------------------------------------------------------------------------------

async def test_tacacs_first_device_is_proved_by_stored_hash_without_any_login() -> None:
    device = FakeDevice()
    ok = await prove(account(), Secret(GOOD), device)
    bad = await prove(account(), Secret(BAD), device)
    assert (ok.verdict, ok.proof) == (Verdict.OK, Proof.STORED_HASH)
    assert "remote group comes before local" in ok.detail
    assert (bad.verdict, bad.proof) == (Verdict.REJECTED, Proof.STORED_HASH)
    assert device.logins == [] and device.failed_logins == 0


async def test_aaa_is_read_once_per_rotation() -> None:
    device, acct = FakeDevice(), account()
    await prove(acct, Secret(GOOD), device)
    await prove(acct, Secret(GOOD), device)
    assert device.reads == [(True, True), (False, True)]


async def test_local_first_device_is_proved_by_login_after_the_stored_hash_agrees() -> None:
    device = FakeDevice(aaa=LOCAL_FIRST, local_login=True)
    check = await prove(account(), Secret(GOOD), device)
    assert (check.verdict, check.proof) == (Verdict.OK, Proof.BOTH)
    assert device.logins == [GOOD]


async def test_a_secret_the_device_does_not_store_is_refused_without_a_login() -> None:
    device = FakeDevice(aaa=LOCAL_FIRST, local_login=True)
    check = await prove(account(verify="login"), Secret(BAD), device)
    assert (check.verdict, check.proof) == (Verdict.REJECTED, Proof.STORED_HASH)
    assert "no login tried" in check.detail and device.logins == [] and device.failed_logins == 0


async def test_self_service_on_a_local_device_is_proved_by_login_alone() -> None:
    device = FakeDevice(aaa=LOCAL_FIRST, local_login=True)
    check = await prove(account(admin=False), Secret(GOOD), device)
    assert (check.verdict, check.proof) == (Verdict.OK, Proof.LOGIN) and device.reads == []


async def test_unclassified_aaa_requires_both_proofs_and_says_why() -> None:
    device = FakeDevice(aaa=AaaConfig(new_model=True, login_methods=("enable",)), local_login=True)
    check = await prove(account(), Secret(GOOD), device)
    assert (check.verdict, check.proof) == (Verdict.OK, Proof.BOTH)
    assert "not classified" in check.detail


async def test_both_stops_at_a_hash_mismatch_without_spending_a_login() -> None:
    device = FakeDevice(local_login=True)
    check = await prove(account(verify="both"), Secret(BAD), device)
    assert check.verdict is Verdict.REJECTED and device.logins == []


async def test_both_fails_when_the_login_fails_even_if_the_hash_matches() -> None:
    device = FakeDevice(local_login=False)          # tacacs-first: the local user cannot log in
    check = await prove(account(verify="both"), Secret(GOOD), device)
    assert (check.verdict, check.proof) == (Verdict.REJECTED, Proof.BOTH)


async def test_a_second_failed_login_is_never_risked_in_one_rotation() -> None:
    # The device stores the secret but refuses the login (its AAA was misread as local-first): the
    # stored hash cannot spare the first failed login, the ledger spares every later one.
    device, acct = FakeDevice(aaa=LOCAL_FIRST, local_login=False), account(verify="login")
    first = await prove(acct, Secret(GOOD), device)
    second = await prove(acct, Secret(GOOD), device)
    assert first.verdict is Verdict.REJECTED and first.proof is Proof.LOGIN
    # The budget (1) is spent: with an admin credential the stored hash answers instead.
    assert (second.verdict, second.proof) == (Verdict.OK, Proof.STORED_HASH)
    assert "not logging in" in second.detail
    assert device.failed_logins == 1


async def test_self_service_without_budget_left_is_inconclusive_not_a_guess() -> None:
    device, acct = FakeDevice(aaa=None, local_login=True), account(admin=False)
    await prove(acct, Secret(BAD), device)
    again = await prove(acct, Secret(GOOD), device)
    assert again.verdict is Verdict.INCONCLUSIVE and "budget 1" in again.detail
    assert device.failed_logins == 1 and device.reads == []


async def test_budget_is_a_profile_option_and_capped_below_max_fail() -> None:
    device = FakeDevice(aaa=replace(LOCAL_FIRST, max_fail=2), local_login=False)
    acct = account(verify="login", failed_login_budget="5")
    for _ in range(3):
        await prove(acct, Secret(GOOD), device)
    assert device.failed_logins == 1                 # max-fail 2 allows one failure, never two


async def test_max_fail_one_means_no_risky_login_at_all() -> None:
    device = FakeDevice(aaa=replace(LOCAL_FIRST, max_fail=1), local_login=True)
    check = await prove(account(verify="login"), Secret(GOOD), device)
    assert (check.verdict, check.proof) == (Verdict.OK, Proof.STORED_HASH) and device.logins == []


async def test_a_fresh_ledger_per_rotation() -> None:
    device = FakeDevice(aaa=LOCAL_FIRST, local_login=True)
    acct = account(admin=False)
    await prove(acct, Secret(BAD), device)
    fresh = replace(acct, probes=ProbeLedger())
    assert (await prove(fresh, Secret(GOOD), device)).verdict is Verdict.OK


async def test_quiet_mode_is_reported_as_such_never_as_rejected() -> None:
    device = FakeDevice(aaa=replace(LOCAL_FIRST, block_for=(120, 5, 60)), refuse_connections=True)
    check = await prove(account(verify="login"), Secret(GOOD), device)
    assert check.verdict is Verdict.INCONCLUSIVE
    assert "login block-for 120 attempts 5 within 60" in check.detail and "quiet mode" in check.detail


async def test_self_service_falls_back_to_login_and_says_so() -> None:
    device = FakeDevice(local_login=True)
    check = await prove(account(admin=False, verify="hash"), Secret(GOOD), device)
    assert (check.verdict, check.proof) == (Verdict.OK, Proof.LOGIN)
    assert "no admin credential" in check.detail and device.reads == []


@pytest.mark.parametrize("stored", [
    StoredCredential("secret", "6", Secret("AES-blob")),
    StoredCredential("secret", "9", Secret("$9$truncated")),
    StoredCredential("secret", "42", Secret("whatever")),
])
async def test_a_stored_form_keyturn_cannot_read_is_inconclusive_with_the_reason(
        stored: StoredCredential) -> None:
    check = await prove(account(verify="hash"), Secret(GOOD), FakeDevice(stored=stored))
    assert check.verdict is Verdict.INCONCLUSIVE and check.detail


async def test_no_stored_credential_is_inconclusive() -> None:
    check = await prove(account(verify="hash"), Secret(GOOD), FakeDevice(stored=None))
    assert check.verdict is Verdict.INCONCLUSIVE and "no stored credential" in check.detail


async def test_missing_user_is_rejected_by_the_hash_proof() -> None:
    device = FakeDevice(aaa_error=AccountNotFound("sw1: user 'breakglass' does not exist"))
    check = await prove(account(verify="hash"), Secret(GOOD), device)
    assert check.verdict is Verdict.REJECTED and "does not exist" in check.detail


async def test_unreadable_aaa_in_auto_is_inconclusive() -> None:
    device = FakeDevice(aaa_error=TargetUnreachable("sw1: connection refused"))
    check = await prove(account(), Secret(GOOD), device)
    assert check.verdict is Verdict.INCONCLUSIVE and "AAA configuration" in check.detail
    assert device.logins == []


async def test_unknown_verify_mode_is_a_clear_inconclusive() -> None:
    check = await prove(account(verify="telepathy"), Secret(GOOD), FakeDevice())
    assert check.verdict is Verdict.INCONCLUSIVE and "telepathy" in check.detail


def test_checks_carry_no_secret() -> None:
    stored = StoredCredential("password", "0", Secret(GOOD))
    assert GOOD not in repr(stored)


# ---- profile options are checked when the profile is set, and audited ------------------------------

@pytest.fixture
def world(tmp_path: Any) -> Any:
    from tests.unit.engine_world import open_world
    yield from open_world(tmp_path)


@pytest.mark.parametrize(("options", "message"), [
    ({"verify": "telepathy"}, "verify must be one of"),
    ({"failed_login_budget": "-1"}, "failed_login_budget"),
    ({"failed_login_budget": "many"}, "failed_login_budget"),
])
@pytest.mark.parametrize("target", ["iosxe-restconf", "iosxe-ssh"])
def test_bad_verify_options_are_refused_when_set(world: Any, target: str, options: dict[str, str],
                                                 message: str) -> None:
    from keyturn.engine.profile import set_profile
    from keyturn.errors import ProfileError

    with pytest.raises(ProfileError, match=message):
        set_profile(world.vault, world.user, target=target, resource=world.resource.uid,
                    admin=world.admin.uid, options=options)


def test_verify_options_are_stored_and_audited(world: Any) -> None:
    from keyturn.engine.profile import set_profile

    set_profile(world.vault, world.user, target="iosxe-restconf", resource=world.resource.uid,
                admin=world.admin.uid, options={"verify": "both", "failed_login_budget": "0"})
    entry = world.vault.audit.list(record_uid=world.user, action="rotation.profile_set")[0]
    assert entry.details["options"] == {"verify": "both", "failed_login_budget": "0"}
