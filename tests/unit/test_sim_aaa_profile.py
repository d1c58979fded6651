"""Device profiles, no sockets: switch parsing, the configuration each AAA profile stands for, the
timing profile, the seeded enterprise mix and the plan that carries it."""

from __future__ import annotations

from collections import Counter

import pytest

from keyturn.errors import SimulatorError
from keyturn.sim.iosxe_aaa import AaaConfig
from keyturn.sim.iosxe_profile import (
    DEFAULT_SAVE_DELAY,
    MIX_BLOCK,
    REALISTIC_RANGES,
    DeviceProfile,
    Latency,
    enterprise_roles,
)
from keyturn.sim.lab import make_plan


def test_defaults_are_todays_device() -> None:
    p = DeviceProfile()
    assert p.aaa_config() == AaaConfig()
    assert (p.cert, p.ssh_profile, p.latency, p.omit_privilege_1) == ("lab-ca", "default", Latency(), False)
    assert p.save_delay == DEFAULT_SAVE_DELAY > 0


def test_aaa_profiles_stand_for_enterprise_configuration_lines() -> None:
    tacacs = DeviceProfile().updated({"aaa": "tacacs-first", "max_fail": "3", "block_for": "120,5,60"})
    assert tacacs.aaa_config().lines() == {
        "aaa": ["aaa new-model", "aaa authentication login default group tacacs+ local",
                "aaa authorization exec default local", "aaa local authentication attempts max-fail 3"],
        "login": ["login block-for 120 attempts 5 within 60"],
        "http": ["ip http authentication aaa"],
    }
    no_exec = DeviceProfile().updated({"exec_authorization": "false"}).aaa_config()
    assert (no_exec.new_model, no_exec.exec_authorization, no_exec.login) == (True, False, ("local",))
    assert no_exec.http_authentication == "local"
    assert DeviceProfile().updated({"block_for": [1, 2, 3]}).aaa_config() == AaaConfig(block_for=(1, 2, 3))


@pytest.mark.parametrize("changes", [
    {"aaa": "radius-first"}, {"max_fail": 0.5}, {"block_for": "120,5"}, {"block_for": "0,5,60"},
    {"exec_authorization": "maybe"}, {"cert": "letsencrypt"}, {"ssh_profile": "ios-15"},
    {"latency": "slow"}, {"save_delay": -1}, {"bogus": 1},
])
def test_bad_switches_are_refused_by_name(changes: dict[str, object]) -> None:
    with pytest.raises(SimulatorError, match=next(iter(changes))):
        DeviceProfile().updated(changes)


def test_latency_sets_the_timing_profile_and_is_seeded() -> None:
    a = DeviceProfile().updated({"latency": "realistic"}, seed_key="7/sw0001")
    b = DeviceProfile().updated({"latency": "realistic"}, seed_key="7/sw0001")
    c = DeviceProfile().updated({"latency": "realistic"}, seed_key="7/sw0002")
    assert a == b and a.latency != c.latency
    for name, (lo, hi) in REALISTIC_RANGES.items():
        assert lo <= getattr(a.latency, name) <= hi
    assert a.save_delay == a.latency.save_config and 2.0 <= a.sync_window <= 4.0
    fast = a.updated({"latency": 0})
    assert fast.latency == Latency() and fast.save_delay == DEFAULT_SAVE_DELAY and fast.tacacs_timeout == 0
    assert a.updated({"latency": 0, "save_delay": 1.5}).save_delay == 1.5
    # A state-file profile reads back as it was written.
    assert DeviceProfile.from_dict({**a.to_dict(), "cert_fingerprint": "ab" * 32}) == a


def test_enterprise_mix_is_proportional_and_seeded() -> None:
    roles = enterprise_roles(200, seed=3)
    assert roles == enterprise_roles(200, seed=3) != enterprise_roles(200, seed=4)
    counts = Counter(r.name.split("-pwenc")[0].removesuffix("-ios17") for r in roles)
    assert counts == {"tacacs-first": 120, "tacacs-down": 20, "legacy-type5": 30, "no-exec-authorization": 30}


def test_twenty_enterprise_devices_show_every_profile() -> None:
    plan = make_plan(iosxe=MIX_BLOCK, meraki_orgs=0, users_per_device=4, seed=11, profile="enterprise")
    profiles = [DeviceProfile.from_dict(d.profile) for d in plan.iosxe]
    assert {p.aaa for p in profiles} == {"local", "tacacs-first", "tacacs-down"}
    assert {p.max_fail for p in profiles} >= {3, None}
    assert any(p.block_for == (120, 5, 60) for p in profiles)
    assert any(not p.exec_authorization for p in profiles)
    assert any(p.password_encryption for p in profiles) and not all(p.password_encryption for p in profiles)
    assert {p.ssh_profile for p in profiles} == {"ios-17", "ios-legacy"}
    assert {p.cert for p in profiles} == {"ios-self-signed"}
    assert all(p.omit_privilege_1 and p.latency.any_set for p in profiles)
    type5 = [u for d in plan.iosxe for u in d.users if u.encryption == "5"]
    assert type5 and all(u.kind == "secret" for u in type5)
    # The same names and passwords as the default plan of that seed: only profiles differ.
    default = make_plan(iosxe=MIX_BLOCK, meraki_orgs=0, users_per_device=4, seed=11)
    assert [d.admin.password for d in default.iosxe] == [d.admin.password for d in plan.iosxe]
    assert all(d.profile == {} for d in default.iosxe)
