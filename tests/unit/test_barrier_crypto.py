"""Barrier: envelope encryption, associated data binding, key check, HMAC."""

from __future__ import annotations

import pytest

from keyturn.errors import DecryptionFailed, VaultSealed
from keyturn.secret import Secret
from keyturn.vault.barrier import Barrier, wrapped_key_id
from keyturn.vault.keys import MasterKey


@pytest.fixture
def barrier() -> Barrier:
    return Barrier(MasterKey.generate())


def test_round_trip_and_fresh_nonce(barrier: Barrier) -> None:
    wk = barrier.new_data_key("uid1")
    a = barrier.encrypt(wk, "uid1", "password", 1, Secret("hunter2"))
    b = barrier.encrypt(wk, "uid1", "password", 1, Secret("hunter2"))
    assert a != b  # a new nonce every time
    assert b"hunter2" not in a
    assert barrier.decrypt(wk, "uid1", "password", 1, a).reveal() == "hunter2"


@pytest.mark.parametrize(("uid", "field", "version"), [("uid2", "password", 1), ("uid1", "secret", 1),
                                                       ("uid1", "password", 2)])
def test_blob_bound_to_record_field_version(barrier: Barrier, uid: str, field: str, version: int) -> None:
    wk = barrier.new_data_key("uid1")
    blob = barrier.encrypt(wk, "uid1", "password", 1, Secret("x"))
    with pytest.raises(DecryptionFailed) as err:
        barrier.decrypt(wk, uid, field, version, blob) if uid == "uid1" else barrier.decrypt(
            barrier.new_data_key(uid), uid, field, version, blob)
    assert err.value.record_uid == uid and err.value.field == field
    assert field in str(err.value) and uid in str(err.value)


def test_wrapped_key_cannot_move_to_another_record(barrier: Barrier) -> None:
    wk = barrier.new_data_key("uid1")
    with pytest.raises(DecryptionFailed, match="uid2"):
        barrier.unwrap(wk, "uid2")


def test_corrupted_ciphertext_names_record_and_field(barrier: Barrier) -> None:
    wk = barrier.new_data_key("uid1")
    blob = bytearray(barrier.encrypt(wk, "uid1", "password", 3, Secret("x")))
    blob[-1] ^= 1
    with pytest.raises(DecryptionFailed, match=r"record uid1 field 'password' version 3"):
        barrier.decrypt(wk, "uid1", "password", 3, bytes(blob))


def test_key_id_header_and_rewrap_under_new_key(barrier: Barrier) -> None:
    old_key, new_key = MasterKey.generate(), MasterKey.generate()
    old = Barrier(old_key)
    wk = old.new_data_key("u")
    blob = old.encrypt(wk, "u", "password", 1, Secret("v"))
    assert wrapped_key_id(wk) == old_key.key_id
    both = Barrier(new_key, [old_key])
    wk2 = both.rewrap(wk, "u")
    assert wrapped_key_id(wk2) == new_key.key_id
    assert Barrier(new_key).decrypt(wk2, "u", "password", 1, blob).reveal() == "v"  # data not re-encrypted
    with pytest.raises(VaultSealed, match="not loaded"):
        Barrier(old_key).unwrap(wk2, "u")


def test_keycheck_detects_wrong_key(barrier: Barrier) -> None:
    key = MasterKey.generate()
    check = Barrier(key).make_keycheck()
    assert Barrier.verify_keycheck(key, check)
    assert not Barrier.verify_keycheck(MasterKey.generate(), check)


def test_hmac_is_keyed() -> None:
    a, b = Barrier(MasterKey.generate()), Barrier(MasterKey.generate())
    assert a.hmac_value("pw") == a.hmac_value(Secret("pw"))
    assert a.hmac_value("pw") != b.hmac_value("pw")


def test_master_key_repr_hides_material() -> None:
    key = MasterKey.generate()
    assert key.material.hex() not in repr(key)


def test_a_remembered_record_tag_still_refuses_a_changed_tag_or_changed_columns(barrier: Barrier) -> None:
    columns = ("u1", "pamUser", "sw1 admin", '[{"type":"login"}]', "[]", '{"rotation":{}}')
    tag = barrier.record_mac(*columns)
    assert barrier.record_mac_matches(tag, *columns)            # computed, then remembered
    assert barrier.record_mac_matches(tag, *columns)            # remembered: the same answer
    forged = ("0" if tag[0] != "0" else "1") + tag[1:]
    assert not barrier.record_mac_matches(forged, *columns)    # the columns are known, the tag is wrong
    changed = (*columns[:5], '{"rotation":{"scripts":["evil"]}}')
    assert not barrier.record_mac_matches(tag, *changed)       # a script attached outside keyturn
    other = Barrier(MasterKey.generate(), integrity=Barrier.new_integrity_key())
    assert not other.record_mac_matches(tag, *columns)          # another vault's key: its own tags


def test_remembered_record_tags_are_bounded(barrier: Barrier) -> None:
    from keyturn.vault import barrier as module

    for i in range(module._TAGS_KEPT + 10):
        columns = (f"u{i}", "login", f"t{i}", "[]", "[]", "{}")
        assert barrier.record_mac_matches(barrier.record_mac(*columns), *columns)
    assert len(barrier._tags) == module._TAGS_KEPT
