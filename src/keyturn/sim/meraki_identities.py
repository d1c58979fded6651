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
  many seconds after it was generated through the API (`NewKeys`; `MerakiFrontend.key_propagation`,
  the control API's ``POST /meraki/api-keys`` and ``keyturn sim lab --meraki-key-propagation``); 0
  (the default) = at once. A lab's initial keys count as long propagated. A revoked key answers 401
  at once (the safe side of the documented window: a rotation must never count on a revoked key
  still working);
* revoking a suffix no live key has is a 404 ``{"errors": ["API key not found"]}``; two keys sharing a
  suffix are both revoked (the real behaviour is unknown, reference §3.3).

State lives in `MerakiState` (its identities and keys); this module adds the propagation rule and the
operations. Example:

    state = MerakiState(seed=1); key = state.add_api_key(); new_keys = NewKeys(delay=60)
    who = authenticate(state, key, new_keys)
    operations(state, new_keys)["generateAdministeredIdentitiesMeApiKeys"]({}, {}, who)  # (202, {"key"})
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
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


class NewKeys:
    """The keys generated through the API and when (monotonic): each answers 401 until `delay`
    seconds have passed. Keys made otherwise (the lab's initial ones) are not here: usable at once."""

    def __init__(self, delay: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.delay = delay
        self._clock = clock
        self._born: dict[str, float] = {}

    def born(self, key: str) -> None:
        self._born[key] = self._clock()

    def usable(self, key: str) -> bool:
        born = self._born.get(key)
        return born is None or self._clock() - born >= self.delay


def authenticate(state: MerakiState, key: str, new_keys: NewKeys) -> AdminIdentity | None:
    """The identity behind `key`, or None (unknown, revoked, or still propagating: Meraki's "up to
    five minutes to propagate")."""
    who = state.authenticate(key)
    return who if who is not None and new_keys.usable(key) else None


def keys_info(state: MerakiState, new_keys: NewKeys) -> list[dict[str, Any]]:
    """For the lab's control API: each identity's live keys by suffix (never a key) and whether
    each authenticates yet."""
    return [{"name": who.name, "email": who.email,
             "keys": [{"suffix": k.suffix, "createdAt": iso(k.created_at), "usable": new_keys.usable(k.key)}
                      for k in who.live_keys]}
            for who in state.identities]


def operations(state: MerakiState, new_keys: NewKeys) -> dict[str, Handler]:
    """operationId → handler for the routes in `ROUTES` (the front-end wraps them in its replies)."""

    def revoke(p: Mapping[str, str], b: Json, who: AdminIdentity) -> tuple[int, Any]:
        state.revoke_api_key(who, p["suffix"])
        return 202, None

    def generate(p: Mapping[str, str], b: Json, who: AdminIdentity) -> tuple[int, Any]:
        made = state.generate_api_key(who)
        new_keys.born(made["key"])
        return 202, made

    return {
        "getAdministeredIdentitiesMe": lambda p, b, who: (200, state.identity_me(who)),
        "getAdministeredIdentitiesMeApiKeys": lambda p, b, who: (200, state.list_api_keys(who)),
        # No body; 202 with the only copy of the key there will ever be (never retried by a client
        # that knows this: a retried POST mints a second key whose plaintext is lost).
        "generateAdministeredIdentitiesMeApiKeys": generate,
        "revokeAdministeredIdentitiesMeApiKeys": revoke,
    }


__all__ = ["ROUTES", "NewKeys", "authenticate", "keys_info", "operations"]
