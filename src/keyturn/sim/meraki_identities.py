"""Administered identities of the Meraki Dashboard simulator: the caller's own API keys.

Operations (reference meraki.md §3.3; each goes through the front-end's pipeline in `sim/meraki.py`, so
the per-IP budget and the auth check apply; these paths name no organisation, so no org budget or org
fault applies to them, as the module docstring there says):

    GET  /administered/identities/me                     200 the identity behind the key
    GET  /administered/identities/me/api/keys            200 [{"suffix", "createdAt"}], never a key
    POST /administered/identities/me/api/keys/generate   202 {"key": <40 hex>}
    POST /administered/identities/me/api/keys/{suffix}/revoke   202, empty body

Rules, each from Meraki's documentation:

* "API key in plaintext. This value will not be accessible outside of key generation" and the list
  is "non-sensitive metadata", the last four characters only
  (https://developer.cisco.com/meraki/api-v1/generate-administered-identities-me-api-keys/,
  https://developer.cisco.com/meraki/api-v1/get-administered-identities-me-api-keys/);
* an identity holds at most two API keys ("You may have up to two API keys at a time",
  https://documentation.meraki.com/General_Administration/Other_Topics/Cisco_Meraki_Dashboard_API);
  a third generate is a 400 in Meraki's error body style, ``{"errors": ["..."]}`` (the wording is the
  simulator's own: the real text is not documented, reference §8);
* "the change will take up to five minutes to propagate" (both operations' descriptions, the pages
  above): the **propagation delay** switch makes a new key answer 401 ``Invalid API key`` for that
  many seconds after it was generated (`MerakiFrontend.key_propagation`, the control API's
  ``POST /meraki/api-keys`` and ``keyturn sim lab --meraki-key-propagation``); 0 (the default) = at
  once. A revoked key answers 401 at once (the safe side of the documented window: a rotation must
  never count on a revoked key still working);
* revoking a suffix no live key has is a 404 ``{"errors": ["API key not found"]}``; two keys sharing a
  suffix are both revoked (the real behaviour is unknown, reference §3.3).

State lives in `MerakiState` (its identities and keys); this module adds the propagation rule and the
operations. Example:

    state = MerakiState(seed=1); key = state.add_api_key()
    who = authenticate(state, key, propagation=0.0)
    operations(state)["generateAdministeredIdentitiesMeApiKeys"]({}, {}, who)   # (202, {"key": ...})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from keyturn.sim.meraki_state import AdminIdentity, Json, MerakiState, iso

# One line per operation: method, path under /api/v1, operationId (the spec's names).
ROUTES = """
GET    /administered/identities/me                                  getAdministeredIdentitiesMe
GET    /administered/identities/me/api/keys                         getAdministeredIdentitiesMeApiKeys
POST   /administered/identities/me/api/keys/generate                generateAdministeredIdentitiesMeApiKeys
POST   /administered/identities/me/api/keys/{suffix}/revoke         revokeAdministeredIdentitiesMeApiKeys
"""

# A handler takes the path parameters, the JSON body and the caller; it answers (status, body).
Handler = Callable[[Mapping[str, str], Json, AdminIdentity], tuple[int, Any]]


def _now() -> datetime:
    return datetime.now(UTC)


def authenticate(state: MerakiState, key: str, *, propagation: float = 0.0,
                 now: datetime | None = None) -> AdminIdentity | None:
    """The identity behind `key`, or None (unknown, revoked, or generated less than `propagation`
    seconds ago: Meraki's "up to five minutes to propagate")."""
    who = state.authenticate(key)
    if who is None or propagation <= 0:
        return who
    api_key = next((k for k in who.keys if k.key == key), None)
    if api_key is None:
        return None
    age = ((now or _now()) - api_key.created_at).total_seconds()
    return who if age >= propagation else None


def keys_info(state: MerakiState, *, propagation: float = 0.0) -> list[dict[str, Any]]:
    """For the lab's control API: each identity's live keys by suffix (never a key) and whether
    each authenticates yet."""
    now = _now()
    return [{"name": who.name, "email": who.email,
             "keys": [{"suffix": k.suffix, "createdAt": iso(k.created_at),
                       "usable": (now - k.created_at).total_seconds() >= propagation}
                      for k in who.live_keys]}
            for who in state.identities]


def operations(state: MerakiState) -> dict[str, Handler]:
    """operationId → handler for the routes in `ROUTES` (the front-end wraps them in its replies)."""

    def revoke(p: Mapping[str, str], b: Json, who: AdminIdentity) -> tuple[int, Any]:
        state.revoke_api_key(who, p["suffix"])
        return 202, None

    return {
        "getAdministeredIdentitiesMe": lambda p, b, who: (200, state.identity_me(who)),
        "getAdministeredIdentitiesMeApiKeys": lambda p, b, who: (200, state.list_api_keys(who)),
        # No body; 202 with the only copy of the key there will ever be (never retried by a client
        # that knows this: a retried POST mints a second key whose plaintext is lost).
        "generateAdministeredIdentitiesMeApiKeys": lambda p, b, who: (202, state.generate_api_key(who)),
        "revokeAdministeredIdentitiesMeApiKeys": revoke,
    }


__all__ = ["ROUTES", "authenticate", "keys_info", "operations"]
