"""The simulated device's AAA, no sockets: method lists, TACACS+, max-fail lockouts, block-for quiet mode,
the CLI that shows and clears them, and the RESTCONF documents of `native/aaa` and `native/login`.

Time is a fake clock handed to the device, so windows are exact and nothing sleeps.
"""

from __future__ import annotations

import pytest

from keyturn.sim import restconf_codec as codec
from keyturn.sim.iosxe_aaa import LOCKOUT_HEADER, AaaConfig, parse_methods
from keyturn.sim.iosxe_cli import CliSession
from keyturn.sim.iosxe_device import IosXeDevice

ADMIN_PW = "Adm1n-secret"
LOCAL_PW = "L0cal-break-glass"
TACACS_FIRST = ("group tacacs+", "local")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_device(clock: FakeClock, **aaa: object) -> IosXeDevice:
    device = IosXeDevice("r1", clock=clock)
    device.set_user("admin", kind="secret", clear=ADMIN_PW, privilege=15)
    device.set_user("breakglass", kind="secret", clear=LOCAL_PW, privilege=15)
    device.set_user("viewer", kind="password", clear="v1ewer-pw", privilege=1)
    device.set_enable_secret("En4ble-secret")
    device.tacacs.users = {"admin": ADMIN_PW}
    device.tacacs.timeout = 0.0
    if aaa:
        device.set_aaa(AaaConfig(**aaa))  # type: ignore[arg-type]
    device.save()
    return device


# ---- who checks a login ------------------------------------------------------------------------------

def test_without_aaa_the_local_database_decides(clock: FakeClock) -> None:
    device = make_device(clock)
    assert device.authenticate("breakglass", LOCAL_PW) is not None
    assert device.authenticate("breakglass", LOCAL_PW, service="http") is not None
    assert device.authenticate("breakglass", "wrong") is None
    assert device.guard.failed_logins == 1 and device.login_delay() == 0.0


def test_tacacs_first_rejects_a_local_user_and_accepts_its_own(clock: FakeClock) -> None:
    device = make_device(clock, new_model=True, login=TACACS_FIRST, exec_authorization=True, max_fail=3)
    # The server knows only `admin`: a reject is final, local is never consulted.
    assert device.authenticate("breakglass", LOCAL_PW) is None
    assert device.authenticate("breakglass", LOCAL_PW, service="http") is None
    admin = device.authenticate("admin", ADMIN_PW)
    assert admin is not None and admin.privilege == 15
    assert device.authenticate("admin", "wrong") is None
    # TACACS+ rejects never count toward the local max-fail.
    assert not device.local_user_locked("breakglass") and device.guard.fail_counts == {}
    assert device.guard.failed_logins == 3
    assert device.guard.failed_by_user == {"breakglass": 2, "admin": 1}


def test_tacacs_down_falls_back_to_local_after_the_timeout(clock: FakeClock) -> None:
    device = make_device(clock, new_model=True, login=TACACS_FIRST, exec_authorization=True)
    device.tacacs.reachable, device.tacacs.timeout = False, 2.0
    assert device.login_delay("ssh") == 2.0 and device.login_delay("http") == 2.0
    assert device.authenticate("breakglass", LOCAL_PW) is not None
    # The server is unreachable, so its user is checked locally too (same password in the lab).
    assert device.authenticate("admin", ADMIN_PW) is not None


def test_ip_http_authentication_local_sends_restconf_to_the_local_database(clock: FakeClock) -> None:
    device = make_device(clock, new_model=True, login=TACACS_FIRST, exec_authorization=True,
                         http_authentication="local")
    assert device.authenticate("breakglass", LOCAL_PW, service="http") is not None
    assert device.authenticate("breakglass", LOCAL_PW, service="ssh") is None
    assert device.login_delay("http") == 0.0


def test_new_model_without_exec_authorization_lands_everyone_at_level_1(clock: FakeClock) -> None:
    device = make_device(clock, new_model=True, login=("local",))
    user = device.authenticate("breakglass", LOCAL_PW)
    assert user is not None and user.privilege == 15 and device.exec_level(user) == 1
    device.set_aaa(AaaConfig(new_model=True, login=("local",), exec_authorization=True))
    assert device.exec_level(user) == 15


# ---- max-fail ----------------------------------------------------------------------------------------

def test_max_fail_locks_the_user_even_for_the_right_password_until_cleared(clock: FakeClock) -> None:
    device = make_device(clock, new_model=True, login=("local",), exec_authorization=True, max_fail=3)
    for _ in range(2):
        assert device.authenticate("breakglass", "wrong") is None
    assert device.authenticate("breakglass", LOCAL_PW) is not None      # success resets the counter
    for _ in range(3):
        assert device.authenticate("breakglass", "wrong") is None
    assert device.local_user_locked("breakglass")
    assert device.authenticate("breakglass", LOCAL_PW) is None
    assert device.guard.lockouts == 1 and device.guard.failed_logins == 6
    assert device.guard.clear_lockout("breakglass") == ["breakglass"]
    assert device.authenticate("breakglass", LOCAL_PW) is not None


def test_lockouts_are_not_configuration_a_reload_forgets_them(clock: FakeClock) -> None:
    device = make_device(clock, new_model=True, login=("local",), exec_authorization=True, max_fail=1)
    device.authenticate("breakglass", "wrong")
    assert device.local_user_locked("breakglass")
    device.reboot()
    assert not device.local_user_locked("breakglass")
    assert device.running.aaa.max_fail == 1


def test_unknown_users_are_refused_without_a_counter(clock: FakeClock) -> None:
    device = make_device(clock, new_model=True, login=("local",), exec_authorization=True, max_fail=1)
    assert device.authenticate("nobody", "x") is None
    assert device.guard.locked == {} and device.guard.failed_by_user == {"nobody": 1}


# ---- block-for ---------------------------------------------------------------------------------------

def test_block_for_enters_quiet_mode_and_lifts_after_the_period(clock: FakeClock) -> None:
    device = make_device(clock, block_for=(120, 3, 60))
    device.authenticate("admin", "bad1")
    clock.now += 61                       # outside the window: the first failure no longer counts
    device.authenticate("viewer", "bad2")
    device.authenticate("breakglass", "bad3")
    assert not device.quiet_mode()
    device.authenticate("nobody", "bad4")
    assert device.quiet_mode() and device.guard.quiet_mode_entries == 1
    # Every login is refused, even the right one, and is not counted as another failure.
    assert device.authenticate("admin", ADMIN_PW) is None
    assert device.refuse_in_quiet_mode() and device.guard.quiet_refusals == 1
    assert device.guard.failed_logins == 4
    clock.now += 120
    assert not device.quiet_mode() and not device.refuse_in_quiet_mode()
    assert device.authenticate("admin", ADMIN_PW) is not None


# ---- CLI ---------------------------------------------------------------------------------------------

def test_show_and_clear_aaa_local_user_lockout(clock: FakeClock) -> None:
    device = make_device(clock, new_model=True, login=("local",), exec_authorization=True, max_fail=1)
    device.authenticate("breakglass", "wrong")
    device.authenticate("viewer", "wrong")
    s = CliSession(device, privilege=15)
    lines = s.handle("show aaa local user lockout").text.splitlines()
    assert lines[0] == LOCKOUT_HEADER == "Local-user  Lock time"
    assert [ln.split()[0] for ln in lines[1:]] == ["breakglass", "viewer"]
    assert " UTC " in lines[1]
    assert s.handle("clear aaa local user lockout username viewer").text == ""
    assert device.guard.locked.keys() == {"breakglass"}
    CliSession(device, privilege=1).handle("clear aaa local user lockout all")   # user EXEC cannot
    assert device.guard.locked.keys() == {"breakglass"}
    s.handle("clear aaa local user lockout all")
    assert s.handle("show aaa local user lockout").text.splitlines() == [LOCKOUT_HEADER]


def test_clear_fail_attempts_resets_the_counter(clock: FakeClock) -> None:
    device = make_device(clock, new_model=True, login=("local",), exec_authorization=True, max_fail=2)
    device.authenticate("breakglass", "wrong")
    CliSession(device, privilege=15).handle("clear aaa local user fail-attempts username breakglass")
    device.authenticate("breakglass", "wrong")
    assert not device.local_user_locked("breakglass")


def test_running_config_shows_the_aaa_lines_and_include_takes_alternation(clock: FakeClock) -> None:
    device = make_device(clock, new_model=True, login=TACACS_FIRST, exec_authorization=True, max_fail=3,
                         block_for=(120, 5, 60), http_authentication="aaa")
    device.set_password_encryption(True)
    s = CliSession(device, privilege=15)
    text = s.handle("show running-config | include ^aaa |^login |^ip http auth|^service password").text
    assert text.splitlines() == [
        "service password-encryption",
        "aaa new-model",
        "aaa authentication login default group tacacs+ local",
        "aaa authorization exec default local",
        "aaa local authentication attempts max-fail 3",
        "login block-for 120 attempts 5 within 60",
        "ip http authentication aaa",
    ]
    one = s.handle("show running-config | include ^username admin( |$)").text.splitlines()
    assert len(one) == 1 and one[0].startswith("username admin privilege 15 secret 9 $9$")
    assert s.handle("show running-config | include ^username admi( |$)").text == ""
    full = (s.handle("terminal length 0"), s.handle("show running-config").text)[1]
    assert "tacacs server TACACS-1\n address ipv4 192.0.2.10\n" in full


def test_default_running_config_has_no_aaa_lines(clock: FakeClock) -> None:
    text = CliSession(make_device(clock), privilege=15).handle(
        "show running-config | include ^aaa |^login |^ip http auth|^service password").text
    assert text == ""


def test_parse_methods() -> None:
    assert parse_methods("group tacacs+ local") == TACACS_FIRST
    with pytest.raises(ValueError):
        parse_methods("group radius")
    with pytest.raises(ValueError):
        parse_methods("")


# ---- RESTCONF documents ------------------------------------------------------------------------------

def test_aaa_and_login_documents(clock: FakeClock) -> None:
    aaa = AaaConfig(new_model=True, login=TACACS_FIRST, exec_authorization=True, max_fail=3,
                    block_for=(120, 5, 60))
    assert codec.aaa_members(aaa) == {
        "Cisco-IOS-XE-aaa:new-model": [None],
        "Cisco-IOS-XE-aaa:authentication": {
            "login": [{"name": "default", "a1": {"group": "tacacs+"}, "a2": {"local": [None]}}]},
        "Cisco-IOS-XE-aaa:local": {"authentication": {"attempts": {"max-fail": 3}}},
        "Cisco-IOS-XE-aaa:authorization": {"exec": [{"name": "default", "a1": {"local": [None]}}]},
    }
    assert codec.login_members(aaa) == {"block-config": {"block-for": 120, "attempts": 5, "within": 60}}
    assert codec.aaa_members(AaaConfig()) == {} and codec.login_members(AaaConfig()) == {}


def test_unsaved_changes_see_aaa(clock: FakeClock) -> None:
    device = make_device(clock)
    assert not device.unsaved_changes()
    device.set_aaa(AaaConfig(new_model=True))
    assert device.unsaved_changes()
    device.reboot()
    assert device.running.aaa == AaaConfig()


# ---- configuration commands --------------------------------------------------------------------------

def test_aaa_lines_configured_from_the_cli(clock: FakeClock) -> None:
    device = make_device(clock)
    device.sync_window = 5.0
    s = CliSession(device, privilege=15)
    s.handle("configure terminal")
    refused = s.handle("aaa authentication login default group tacacs+ local").text
    assert "% Invalid input" in refused and device.running.aaa == AaaConfig()   # needs new-model first
    assert device.write_blocked() is None
    for line in ("aaa new-model", "aaa authentication login default group tacacs+ local",
                 "aaa authorization exec default local", "aaa local authentication attempts max-fail 4",
                 "login block-for 90 attempts 4 within 30", "ip http authentication aaa",
                 "service password-encryption"):
        assert s.handle(line).text == "", line
    assert device.running.aaa == AaaConfig(new_model=True, login=TACACS_FIRST, exec_authorization=True,
                                           max_fail=4, block_for=(90, 4, 30), http_authentication="aaa")
    assert device.running.password_encryption
    assert device.write_blocked() == "sync"          # RESTCONF re-syncs after a CLI change
    for line in ("no aaa authorization exec default", "no aaa local authentication attempts max-fail",
                 "no ip http authentication", "no login block-for"):
        s.handle(line)
    assert device.running.aaa == AaaConfig(new_model=True, login=TACACS_FIRST)
    s.handle("no aaa new-model")
    assert device.running.aaa == AaaConfig()
    s.handle("aaa new-model")
    assert "not modelled" in s.handle("aaa authentication login default group radius").text
    clock.now += 5
    assert device.write_blocked() is None
