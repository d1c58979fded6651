"""Copies of a simulated device's configuration stay independent, and precomputed hashes are real ones.

Every write, save, reboot and lab reset copies a `DeviceConfig`; the copies share credential objects
(values) but never users, and `compute_hashes` (what a lab runs at start) leaves the same stored forms
a first read would have computed.
"""

from __future__ import annotations

import copy

import pytest

from keyturn.sim.iosxe_aaa import AaaConfig
from keyturn.sim.iosxe_device import DeviceConfig, DeviceRefused, IosXeDevice, compute_hashes, verify_hash

CLEAR = {"s9": "Nine-Secret-1", "s8": "Eight-Secret-1", "s5": "Five-Secret-1", "p7": "Seven-Pass-1"}


def stored(config: DeviceConfig, name: str) -> str:
    cred = config.users[name].credential
    assert cred is not None
    return cred.stored


def device() -> IosXeDevice:
    d = IosXeDevice("r1")
    d.set_user("s9", kind="secret", clear=CLEAR["s9"], privilege=15)
    d.set_user("s8", kind="secret", clear=CLEAR["s8"], encryption="8")
    d.set_user("s5", kind="secret", clear=CLEAR["s5"], encryption="5")
    d.set_user("p7", kind="password", clear=CLEAR["p7"], encryption="7")
    d.set_enable_secret("En4ble-Secret")
    return d


def test_a_copy_changes_independently_of_its_original() -> None:
    d = device()
    d.save()
    d.set_user("s9", kind="secret", clear="Changed-Secret-2", privilege=7)
    d.update_user("p7", view="ops")
    d.delete_user("s5")
    d.set_aaa(AaaConfig(new_model=True, max_fail=3))
    start = d.startup
    assert sorted(start.users) == ["p7", "s5", "s8", "s9"]
    assert (start.users["s9"].privilege, start.users["p7"].view) == (15, None)
    assert start.users["s9"].credential is not None and start.users["s9"].credential.matches(CLEAR["s9"])
    assert not start.aaa.new_model
    d.reboot()
    assert d.user("s9") is not None and d.authenticate("s9", CLEAR["s9"]) is not None
    assert d.authenticate("s9", "Changed-Secret-2") is None


def test_a_refused_write_restores_the_users_as_they_were() -> None:
    d = device()
    with pytest.raises(DeviceRefused), d.atomic():
        d.update_user("s9", privilege=3)
        d.set_user("new", kind="secret", clear="x" * 200)   # refused: too long
    s9 = d.user("s9")
    assert s9 is not None and s9.privilege == 15 and d.user("new") is None


def test_precomputed_hashes_are_the_real_stored_forms_and_every_copy_shows_the_same() -> None:
    d = device()
    d.save()
    initial = copy.deepcopy(d.startup)
    assert compute_hashes([d.running], users={"s9", "not-there"}) == 1
    assert compute_hashes([d.running, d.startup, initial]) == 3 * 5
    for name, clear in CLEAR.items():
        shown = {stored(cfg, name) for cfg in (d.running, d.startup, initial)}
        assert len(shown) == 1
        value = shown.pop()
        if name == "p7":
            assert value.startswith("02") and value != clear
        else:
            assert value.startswith({"s9": "$9$", "s8": "$8$", "s5": "$1$"}[name])
            assert verify_hash(clear, value)


def test_one_secret_set_twice_gets_two_salts_and_two_hashes() -> None:
    d = device()
    first = d.running.users["s9"].credential
    d.set_user("s9", kind="secret", clear=CLEAR["s9"])
    second = d.running.users["s9"].credential
    assert first is not None and second is not None
    assert first.stored != second.stored
    assert verify_hash(CLEAR["s9"], first.stored) and verify_hash(CLEAR["s9"], second.stored)
