"""Wireless part of the Meraki Dashboard simulator: SSIDs (PSK) and identity PSKs, over `MerakiState`.

Operations (reference meraki.md §3.1, §3.2; every one goes through the front-end's pipeline, so the
per-org budget, the fault switches and the auth checks of `sim/meraki.py` apply to them alike):

    GET    /networks/{id}/wireless/ssids                               15 SSIDs, numbers 0-14, not paginated
    GET    /networks/{id}/wireless/ssids/{number}
    PUT    /networks/{id}/wireless/ssids/{number}                      partial update, 200 with the SSID
    GET    /networks/{id}/wireless/ssids/{number}/identityPsks         not paginated
    POST   /networks/{id}/wireless/ssids/{number}/identityPsks         201
    GET|PUT|DELETE  .../identityPsks/{identityPskId}                   200 / 200 / 204

Rules, each from the API docs (https://developer.cisco.com/meraki/api-v1/update-network-wireless-ssid/,
https://developer.cisco.com/meraki/api-v1/create-network-wireless-ssid-identity-psk/):

* ``psk`` is "only valid if the authMode is 'psk'"; a PSK SSID needs a WPA passphrase of 8 to 63
  printable ASCII characters (IEEE 802.11i; the Dashboard refuses others);
* ``authMode``, ``encryptionMode`` (``wep``/``wpa`` on PUT, although GET may say ``wpa-eap``, which PUT
  refuses: dashboard-api-python#124) and ``wpaEncryptionMode`` are enums;
* the current PSK is returned by GET to a key that may read the network (community scripts read
  ``ssid['psk']``; the spec's schema omits it) and dropped when the SSID leaves PSK mode;
* identity PSKs need the SSID in ``ipsk-without-radius``; ``name`` and ``groupPolicyId`` are required
  on create, ``passphrase`` is generated when left out, names and passphrases are unique per SSID
  (the wording of those errors is the simulator's own, reference §8).

Example:
    state = MerakiState(seed=1); net = state.add_network(state.add_org("Lab").id, "Branch")
    who = state.authenticate(state.add_api_key())
    update_ssid(state, net.id, "3", {"authMode": "psk", "psk": "correct horse"}, who)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from keyturn.sim.meraki_state import (
    IPSK_AUTH_MODE,
    MESSAGES,
    SSID_AUTH_MODES,
    SSID_COUNT,
    WPA_ENCRYPTION_MODES,
    AdminIdentity,
    IdentityPsk,
    Json,
    MerakiState,
    Ssid,
    bad_request,
    expires_value,
    not_found,
    optional_field,
    passphrase_ok,
)

# One line per operation: method, path under /api/v1, operationId (the spec's names).
ROUTES = """
GET    /networks/{net}/wireless/ssids                               getNetworkWirelessSsids
GET    /networks/{net}/wireless/ssids/{n}                           getNetworkWirelessSsid
PUT    /networks/{net}/wireless/ssids/{n}                           updateNetworkWirelessSsid
GET    /networks/{net}/wireless/ssids/{n}/identityPsks              getNetworkWirelessSsidIdentityPsks
POST   /networks/{net}/wireless/ssids/{n}/identityPsks              createNetworkWirelessSsidIdentityPsk
GET    /networks/{net}/wireless/ssids/{n}/identityPsks/{ipsk}       getNetworkWirelessSsidIdentityPsk
PUT    /networks/{net}/wireless/ssids/{n}/identityPsks/{ipsk}       updateNetworkWirelessSsidIdentityPsk
DELETE /networks/{net}/wireless/ssids/{n}/identityPsks/{ipsk}       deleteNetworkWirelessSsidIdentityPsk
"""

ENCRYPTION_MODES = ("wep", "wpa")  # PUT's enum; GET may also report "wpa-eap" (dashboard-api-python#124)

# A handler takes the path parameters and the JSON body and answers (status, body).
Handler = Callable[[Mapping[str, str], Json, AdminIdentity], tuple[int, Any]]


# ---------------------------------------------------------------------------------------------- SSIDs


def _ssid(state: MerakiState, network_id: str, number: str, who: AdminIdentity) -> Ssid:
    net = state.visible_network(network_id, who)
    if not number.isdigit() or not 0 <= int(number) < SSID_COUNT:
        raise not_found("ssid_not_found")
    return net.ssids[int(number)]


def list_ssids(state: MerakiState, network_id: str, who: AdminIdentity) -> list[Json]:
    return [s.to_json() for s in state.visible_network(network_id, who).ssids]


def get_ssid(state: MerakiState, network_id: str, number: str, who: AdminIdentity) -> Json:
    return _ssid(state, network_id, number, who).to_json()


def update_ssid(state: MerakiState, network_id: str, number: str, body: Json, who: AdminIdentity) -> Json:
    """A partial update: every field is validated before any is applied (a refused PUT changes nothing)."""
    ssid = _ssid(state, network_id, number, who)
    org_id = state.networks[network_id].org_id
    name = optional_field(body, "name", str, "a string")
    enabled = optional_field(body, "enabled", bool, "a boolean")
    visible = optional_field(body, "visible", bool, "a boolean")
    mode = optional_field(body, "authMode", str, "a string") or ssid.auth_mode
    if mode not in SSID_AUTH_MODES:
        raise bad_request(f"'authMode' must be one of: {', '.join(SSID_AUTH_MODES)}")
    encryption = optional_field(body, "encryptionMode", str, "a string")
    if encryption is not None and encryption not in ENCRYPTION_MODES:
        raise bad_request(f"'encryptionMode' must be one of: {', '.join(ENCRYPTION_MODES)}")
    wpa = optional_field(body, "wpaEncryptionMode", str, "a string")
    if wpa is not None and wpa not in WPA_ENCRYPTION_MODES:
        raise bad_request(f"'wpaEncryptionMode' must be one of: {', '.join(WPA_ENCRYPTION_MODES)}")
    psk = optional_field(body, "psk", str, "a string")
    if psk is not None and mode != "psk":  # the spec: "only valid if the authMode is 'psk'"
        raise bad_request(MESSAGES["psk_mode"])
    if mode == "psk":
        effective = psk if psk is not None else ssid.psk
        if effective is None or not passphrase_ok(effective):
            raise bad_request(MESSAGES["psk_length"])
    if psk is not None:
        state.refuse_if_faulted(org_id)
    # validation done: apply as one partial update
    ssid.name = name if name is not None else ssid.name
    ssid.enabled = enabled if enabled is not None else ssid.enabled
    ssid.visible = visible if visible is not None else ssid.visible
    ssid.auth_mode = mode
    if mode == "psk":
        if psk is not None and psk != ssid.psk:
            ssid.psk_changes += 1
        ssid.psk = psk if psk is not None else ssid.psk
        ssid.encryption_mode = encryption or ssid.encryption_mode or "wpa"
        ssid.wpa_encryption_mode = wpa or ssid.wpa_encryption_mode or "WPA2 only"
    else:
        ssid.psk = ssid.encryption_mode = ssid.wpa_encryption_mode = None
    return ssid.to_json()


# ---------------------------------------------------------------------------------------------- iPSKs


def _ipsk_ssid(state: MerakiState, network_id: str, number: str, who: AdminIdentity) -> Ssid:
    ssid = _ssid(state, network_id, number, who)
    if ssid.auth_mode != IPSK_AUTH_MODE:
        raise bad_request(MESSAGES["ipsk_mode"])
    return ssid


def list_identity_psks(state: MerakiState, network_id: str, number: str, who: AdminIdentity) -> list[Json]:
    return [p.to_json() for p in _ssid(state, network_id, number, who).identity_psks.values()]


def get_identity_psk(state: MerakiState, network_id: str, number: str, ipsk_id: str,
                     who: AdminIdentity) -> Json:
    ssid = _ssid(state, network_id, number, who)
    if ipsk_id not in ssid.identity_psks:
        raise not_found("ipsk_not_found")
    return ssid.identity_psks[ipsk_id].to_json()


def create_identity_psk(state: MerakiState, network_id: str, number: str, body: Json,
                        who: AdminIdentity) -> Json:
    ssid = _ipsk_ssid(state, network_id, number, who)
    name = optional_field(body, "name", str, "a string")
    group = optional_field(body, "groupPolicyId", str, "a string")
    if not name or not group:  # both required by the spec's create schema
        raise bad_request("'name' and 'groupPolicyId' are required")
    passphrase = optional_field(body, "passphrase", str, "a string")
    _check_ipsk(state, ssid, name, passphrase, None, state.networks[network_id].org_id)
    if not passphrase:  # the spec: "If left blank, one will be auto-generated"
        passphrase = state.random_passphrase()
    expires = body.get("expiresAt")
    ipsk = IdentityPsk(state.new_ipsk_id(), name, group, passphrase,
                       None if expires is None else expires_value(expires))
    ssid.identity_psks[ipsk.id] = ipsk
    return ipsk.to_json()


def update_identity_psk(state: MerakiState, network_id: str, number: str, ipsk_id: str, body: Json,
                        who: AdminIdentity) -> Json:
    ssid = _ipsk_ssid(state, network_id, number, who)
    ipsk = ssid.identity_psks.get(ipsk_id)
    if ipsk is None:
        raise not_found("ipsk_not_found")
    name = optional_field(body, "name", str, "a string")
    group = optional_field(body, "groupPolicyId", str, "a string")
    passphrase = optional_field(body, "passphrase", str, "a string")
    _check_ipsk(state, ssid, name, passphrase, ipsk_id, state.networks[network_id].org_id)
    ipsk.name = name or ipsk.name
    ipsk.group_policy_id = group or ipsk.group_policy_id
    ipsk.passphrase = passphrase or ipsk.passphrase
    if "expiresAt" in body:  # null: never expires (the spec's update schema is nullable)
        ipsk.expires_at = None if body["expiresAt"] is None else expires_value(body["expiresAt"])
    return ipsk.to_json()


def delete_identity_psk(state: MerakiState, network_id: str, number: str, ipsk_id: str,
                        who: AdminIdentity) -> None:
    ssid = _ssid(state, network_id, number, who)
    if ssid.identity_psks.pop(ipsk_id, None) is None:
        raise not_found("ipsk_not_found")


def _check_ipsk(state: MerakiState, ssid: Ssid, name: str | None, passphrase: str | None,
                own_id: str | None, org_id: str) -> None:
    others = [p for i, p in ssid.identity_psks.items() if i != own_id]
    if name and any(p.name == name for p in others):
        raise bad_request(MESSAGES["name_taken"])
    if passphrase is not None:
        if not passphrase_ok(passphrase):
            raise bad_request(MESSAGES["passphrase_length"])
        if any(p.passphrase == passphrase for p in others):
            raise bad_request(MESSAGES["passphrase_taken"])
        state.refuse_if_faulted(org_id)


# ---------------------------------------------------------------------------------------------- handlers


def operations(state: MerakiState) -> dict[str, Handler]:
    """operationId → handler for the routes in `ROUTES` (the front-end wraps them in its replies)."""
    def delete(p: Mapping[str, str], b: Json, who: AdminIdentity) -> tuple[int, Any]:
        delete_identity_psk(state, p["net"], p["n"], p["ipsk"], who)
        return 204, None

    return {
        "getNetworkWirelessSsids": lambda p, b, who: (200, list_ssids(state, p["net"], who)),
        "getNetworkWirelessSsid": lambda p, b, who: (200, get_ssid(state, p["net"], p["n"], who)),
        "updateNetworkWirelessSsid": lambda p, b, who: (200, update_ssid(state, p["net"], p["n"], b, who)),
        "getNetworkWirelessSsidIdentityPsks": lambda p, b, who: (
            200, list_identity_psks(state, p["net"], p["n"], who)),
        "createNetworkWirelessSsidIdentityPsk": lambda p, b, who: (
            201, create_identity_psk(state, p["net"], p["n"], b, who)),
        "getNetworkWirelessSsidIdentityPsk": lambda p, b, who: (
            200, get_identity_psk(state, p["net"], p["n"], p["ipsk"], who)),
        "updateNetworkWirelessSsidIdentityPsk": lambda p, b, who: (
            200, update_identity_psk(state, p["net"], p["n"], p["ipsk"], b, who)),
        "deleteNetworkWirelessSsidIdentityPsk": delete,
    }


__all__ = ["ROUTES", "create_identity_psk", "delete_identity_psk", "get_identity_psk", "get_ssid",
           "list_identity_psks", "list_ssids", "operations", "update_identity_psk", "update_ssid"]
