"""Rules of the simulator's SSID and identity PSK operations, without HTTP."""

from __future__ import annotations

import pytest

from keyturn.errors import SimulatedApiError
from keyturn.sim import meraki_wireless as w
from keyturn.sim.meraki_state import AdminIdentity, MerakiState


@pytest.fixture
def world() -> tuple[MerakiState, str, str, AdminIdentity]:
    state = MerakiState(seed=7)
    org = state.add_org("Lab", org_id="2930418")
    net = state.add_network(org.id, "Branch", network_id="N_24329156")
    who = state.authenticate(state.add_api_key())
    assert who is not None
    return state, org.id, net.id, who


def test_ssid_psk_rules(world: tuple) -> None:
    state, _, net_id, who = world
    with pytest.raises(SimulatedApiError, match="only valid"):
        w.update_ssid(state, net_id, "1", {"psk": "long-enough-key"}, who)
    with pytest.raises(SimulatedApiError, match="8 to 63"):
        w.update_ssid(state, net_id, "1", {"authMode": "psk", "psk": "short"}, who)
    with pytest.raises(SimulatedApiError, match="8 to 63"):
        w.update_ssid(state, net_id, "1", {"authMode": "psk", "psk": "x" * 64}, who)
    out = w.update_ssid(state, net_id, "1", {"authMode": "psk", "psk": "long-enough-key"}, who)
    assert out["psk"] == "long-enough-key" and out["encryptionMode"] == "wpa"
    assert w.get_ssid(state, net_id, "1", who)["psk"] == "long-enough-key"
    out = w.update_ssid(state, net_id, "1", {"authMode": "open"}, who)
    assert "psk" not in out
    with pytest.raises(SimulatedApiError) as exc:
        w.get_ssid(state, net_id, "15", who)
    assert exc.value.status == 404


def test_ssid_enums_refused_and_nothing_applied(world: tuple) -> None:
    state, _, net_id, who = world
    w.update_ssid(state, net_id, "2", {"authMode": "psk", "psk": "first-key-1"}, who)
    for body, words in (({"authMode": "wpa-personal"}, "'authMode' must be one of"),
                        ({"encryptionMode": "wpa-eap", "psk": "second-key-2"}, "'encryptionMode'"),
                        ({"wpaEncryptionMode": "WPA4", "psk": "second-key-2"}, "'wpaEncryptionMode'"),
                        ({"psk": 12345678}, "'psk' must be a string")):
        with pytest.raises(SimulatedApiError, match=words) as exc:
            w.update_ssid(state, net_id, "2", body, who)
        assert exc.value.status == 400
    assert w.get_ssid(state, net_id, "2", who)["psk"] == "first-key-1"  # a refused PUT changes nothing


def test_identity_psks(world: tuple) -> None:
    state, _, net_id, who = world
    with pytest.raises(SimulatedApiError, match="ipsk-without-radius"):
        w.create_identity_psk(state, net_id, "2", {"name": "a", "groupPolicyId": "101"}, who)
    state.configure_ssid(net_id, 2, auth_mode="ipsk-without-radius")
    made = w.create_identity_psk(state, net_id, "2", {"name": "a", "groupPolicyId": "101"}, who)
    assert 8 <= len(made["passphrase"]) <= 63 and made["id"].isdigit()
    body = {"name": "b", "groupPolicyId": "101", "passphrase": "pass-b-123"}
    w.create_identity_psk(state, net_id, "2", body, who)
    with pytest.raises(SimulatedApiError, match="Passphrase has already"):
        w.update_identity_psk(state, net_id, "2", made["id"], {"passphrase": "pass-b-123"}, who)
    with pytest.raises(SimulatedApiError, match="Name has already"):
        w.create_identity_psk(state, net_id, "2", {"name": "b", "groupPolicyId": "101"}, who)
    updated = w.update_identity_psk(state, net_id, "2", made["id"], {"passphrase": "rotated-123"}, who)
    assert w.get_identity_psk(state, net_id, "2", made["id"], who)["passphrase"] == updated["passphrase"]
    w.delete_identity_psk(state, net_id, "2", made["id"], who)
    assert [p["name"] for p in w.list_identity_psks(state, net_id, "2", who)] == ["b"]
