"""The simulated IOS XE device model: hash vectors, IOS refusals, running vs startup."""

from __future__ import annotations

import pytest

from keyturn.sim.iosxe_device import (
    BOTH_ERROR,
    Credential,
    DeviceRefused,
    IosXeDevice,
    type7_decode,
    type7_encode,
    type8_hash,
    type9_hash,
    verify_hash,
)

TYPE9 = "$9$cvWdfQlRRDKq/U$VFTPha5VHTCbSgSUAo.nPoh50ZiXOw1zmljEjXkaq1g"  # "123456"
TYPE8 = "$8$dsYGNam3K1SIJO$7nv/35M/qr6t.dVc7UY9zrJDWRVqncHub1PE9UlMQFs"  # "cisco"


def test_type9_vector() -> None:
    assert type9_hash("123456", "cvWdfQlRRDKq/U") == TYPE9
    assert verify_hash("123456", TYPE9)
    assert not verify_hash("1234567", TYPE9)


def test_type8_vector() -> None:
    assert type8_hash("cisco", "dsYGNam3K1SIJO") == TYPE8
    assert verify_hash("cisco", TYPE8)
    assert not verify_hash("Cisco", TYPE8)


def test_fresh_hashes_have_cisco_shape_and_random_salt() -> None:
    a, b = type9_hash("same"), type9_hash("same")
    assert a != b
    for h in (a, type8_hash("same")):
        prefix, salt, digest = h.split("$")[1:]
        assert prefix in ("8", "9") and len(salt) == 14 and len(digest) == 43


def test_type7_round_trip_and_known_value() -> None:
    assert type7_decode("0822455D0A16") == "cisco"
    for clear in ("cisco", "Str0ng-P@ss with space", "x" * 127):
        encoded = type7_encode(clear)
        assert encoded != clear
        assert type7_decode(encoded) == clear


def make_device() -> IosXeDevice:
    device = IosXeDevice("r1")
    device.set_user("admin", kind="secret", clear="Admin-Secret#1", privilege=15)
    device.set_user("legacy", kind="password", clear="Legacy-Pw#1", privilege=15)
    return device


def test_login_checks_running_config_for_every_kind() -> None:
    device = make_device()
    device.set_user("hashed", kind="secret", stored=TYPE9, encryption="9", privilege=15)
    device.set_user("seven", kind="password", stored="0822455D0A16", encryption="7")
    assert device.authenticate("admin", "Admin-Secret#1") is not None
    assert device.authenticate("legacy", "Legacy-Pw#1") is not None
    assert device.authenticate("hashed", "123456") is not None
    assert device.authenticate("seven", "cisco") is not None
    failures = device.last_auth_failures
    assert device.authenticate("admin", "wrong") is None
    assert device.authenticate("nobody", "x") is None
    assert device.last_auth_failures == failures + 2


def test_clear_secret_reads_back_as_verifiable_type9() -> None:
    device = make_device()
    admin = device.user("admin")
    assert admin is not None and admin.credential is not None
    stored = admin.credential.stored
    assert stored.startswith("$9$") and verify_hash("Admin-Secret#1", stored)
    assert Credential.from_stored("secret", "9", stored).matches("Admin-Secret#1")
    assert "username admin privilege 15 secret 9 $9$" in "\n".join(device.username_lines())


@pytest.mark.parametrize(("user", "kind"), [("admin", "password"), ("legacy", "secret")])
def test_password_and_secret_never_both(user: str, kind: str) -> None:
    device = make_device()
    before = device.username_lines()
    with pytest.raises(DeviceRefused) as info:
        device.set_user(user, kind=kind, clear="Other-Pw#1")  # type: ignore[arg-type]
    assert info.value.message == BOTH_ERROR
    assert device.username_lines() == before


@pytest.mark.parametrize(
    ("clear", "fragment"),
    [("x" * 128, "Invalid Password length"), ("caf\u00e9-pw", "illegal character"), ("   ", "Incomplete")],
)
def test_bad_passwords_refused_and_user_untouched(clear: str, fragment: str) -> None:
    device = make_device()
    with pytest.raises(DeviceRefused) as info:
        device.set_user("legacy", kind="password", clear=clear)
    assert fragment in info.value.message
    assert device.authenticate("legacy", "Legacy-Pw#1") is not None


def test_length_limits_and_leading_spaces() -> None:
    device = make_device()
    device.set_user("legacy", kind="password", clear="y" * 127)
    assert device.authenticate("legacy", "y" * 127) is not None
    device.set_user("legacy", kind="password", clear="  lead-Pw#1 ")
    assert device.authenticate("legacy", "lead-Pw#1 ") is not None
    device.running.min_length = 12
    with pytest.raises(DeviceRefused, match="Password too short"):
        device.set_user("legacy", kind="password", clear="short-1")


def test_reboot_loses_unsaved_and_keeps_saved_changes() -> None:
    device = make_device()
    device.save()
    device.set_user("admin", kind="secret", clear="Unsaved-Secret#2")
    assert device.unsaved_changes()
    device.reboot()
    assert device.authenticate("admin", "Admin-Secret#1") is not None
    assert device.authenticate("admin", "Unsaved-Secret#2") is None
    device.set_user("admin", kind="secret", clear="Saved-Secret#3")
    device.save()
    assert not device.unsaved_changes()
    device.reboot()
    assert device.authenticate("admin", "Saved-Secret#3") is not None
    assert (device.save_count, device.reboot_count) == (2, 2)


def test_atomic_restores_everything_on_refusal() -> None:
    device = make_device()
    before, count = device.username_lines(), device.change_count
    with pytest.raises(DeviceRefused), device.atomic():
        device.update_user("legacy", privilege=1)
        device.set_user("newbie", kind="secret", clear="New-Secret#1")
        device.set_user("admin", kind="password", clear="Conflict#1")
    assert device.username_lines() == before
    assert device.change_count == count


def test_update_user_keeps_credential_and_creates_when_asked() -> None:
    device = make_device()
    device.update_user("legacy", privilege=5, view="RO")
    legacy = device.user("legacy")
    assert legacy is not None and (legacy.privilege, legacy.view) == (5, "RO")
    assert device.authenticate("legacy", "Legacy-Pw#1") is not None
    with pytest.raises(DeviceRefused):
        device.update_user("ghost", privilege=15, create=False)
    with pytest.raises(DeviceRefused):
        device.update_user("legacy", privilege=16)
    created = device.update_user("bare", privilege=15)
    assert created.credential is None
    assert device.authenticate("bare", "") is None


def test_enable_secret_clear_and_hashed() -> None:
    device = make_device()
    assert not device.has_enable_secret()
    device.set_enable_secret("En4ble#1")
    assert device.check_enable("En4ble#1") and not device.check_enable("nope")
    device.set_enable_secret_stored(TYPE8, "8")
    assert device.check_enable("cisco")
    device.clear_enable_secret()
    assert not device.has_enable_secret()
