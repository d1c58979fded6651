"""The account identity the rotation lock is taken on."""

from __future__ import annotations

from keyturn.targets.base import Account, Endpoint


def test_ssh_only_devices_on_one_host_do_not_share_a_lock() -> None:
    a = Account("u1", "backup1", Endpoint(host="127.0.0.1", ssh_port=2201))
    b = Account("u2", "backup1", Endpoint(host="127.0.0.1", ssh_port=2202))
    assert a.lock_key != b.lock_key


def test_same_device_same_user_shares_a_lock_whatever_the_record() -> None:
    a = Account("u1", "NetOps", Endpoint(host="10.0.0.1", port=443, ssh_port=22))
    b = Account("u2", "netops", Endpoint(host="10.0.0.1", port=443, ssh_port=22))
    assert a.lock_key == b.lock_key


def test_meraki_identity_is_org_wide() -> None:
    a = Account("u1", "Jane@example.com", Endpoint(host="api.meraki.com", network_id="N_1", org_id="7"))
    b = Account("u2", "jane@example.com", Endpoint(host="api.meraki.com", network_id="N_2", org_id="7"))
    assert a.lock_key == b.lock_key == "7/jane@example.com"
