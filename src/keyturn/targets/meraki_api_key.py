"""`meraki-api-key`: rotate a Meraki Dashboard API key through the administered-identities API.

Wire facts (reference meraki.md §3.3, §2; https://developer.cisco.com/meraki/api-v1/ "Administered >
Identities > Me > Api > Keys"):

* ``GET /administered/identities/me/api/keys`` lists the caller's identity's keys as
  ``[{"suffix", "createdAt"}]`` — the last four characters only (`handle`);
* ``POST …/api/keys/generate`` (no body) → **202** ``{"key": <40 hex>}``: the only copy of the key there
  will ever be, so it is sent **once** (429 and redirects, which Meraki answers before doing anything,
  are followed; a 5xx or a lost answer is not retried: the outcome is unknown, and the engine's
  recovery revokes a key that never reached the vault);
* ``POST …/api/keys/{suffix}/revoke`` → **202**; a suffix no key has → 404 (already gone: `retire` is
  idempotent);
* at most two keys per identity (`limit`): a third generate is a 400 (`ChangeRejected`);
* generate and revoke "take up to five minutes to propagate": a new key may answer 401 for minutes,
  so the engine verifies it with bounded retries (`propagation`: 10 tries, 2 s doubled, 360 s in all;
  the resource record's custom field ``propagation_timeout`` = seconds overrides the total).

`verify(account, key)` proves a key: ``GET /administered/identities/me`` with it (401 → REJECTED), then
``GET /networks/{network_id}`` of the resource (the network the profiles using this key work on,
charged to its organisation's budget) → OK. Anything else (5xx, timeout, 429 past the retries) is
INCONCLUSIVE. The plumbing — budget, 429 pacing, Meraki-only redirects, https-only base URLs — is
`keyturn.targets.meraki_api`'s.

How the record is modelled: the rotated record is the **API-key record** itself, a ``login`` record
whose password is the key (the one every `meraki-auth-user` profile names with ``--admin``) and whose
login names the Dashboard identity (e.g. its e-mail); its profile is
``--target meraki-api-key --resource <a Meraki network record>`` (base URL, proxy, trust and the
network to verify against) and needs no ``--admin``: the current key authenticates every call. The
resources that use the key reference the record by uid, so the engine's one commit of the new version
switches them all. ``old`` is that record's current key: it authenticates the generate call and is
revoked by its suffix after the new key verified and was committed. The password policy does not apply
(Meraki makes the key).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import replace
from datetime import datetime
from typing import ClassVar
from urllib.parse import quote

from keyturn.engine.ratelimit import Budgets
from keyturn.errors import (
    ChangeRejected,
    KeyturnError,
    ProfileError,
    TargetError,
)
from keyturn.secret import Secret
from keyturn.targets.base import Account, AdminCredential, Issued, Propagation, SecretRules, Verdict
from keyturn.targets.meraki_api import ClientFactory, MerakiApi, Sleep, _errors_text, _json

log = logging.getLogger("keyturn.targets.meraki_api_key")

KIND = "meraki-api-key"
KEYS_PATH = "/administered/identities/me/api/keys"
ME_PATH = "/administered/identities/me"
KEY_FORMAT = re.compile(r"[0-9a-f]{40}")   # "Keys are 40 hex characters" (reference §2.1)
SUFFIX_FORMAT = re.compile(r"[0-9A-Za-z]{1,8}")
IDENTITY_BUDGET = "_identity"              # /administered/* names no organisation (reference §8)


def _propagation_timeout(account: Account) -> float | None:
    raw = account.endpoint.options.get("propagation_timeout")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise ProfileError(f"meraki-api-key: propagation_timeout {raw!r} is not a number of seconds") from exc
    if not 0 < value <= 3600:
        raise ProfileError("meraki-api-key: propagation_timeout must be between 0 and 3600 seconds")
    return value


class _Once(MerakiApi):
    """The same client with one attempt per 5xx: for the generate call only."""

    kind: ClassVar[str] = KIND


class MerakiApiKeyTarget(MerakiApi):
    """Rotates the Dashboard API key of the identity behind the record's current key (`Generating`)."""

    kind: ClassVar[str] = KIND
    constraints: ClassVar[SecretRules] = SecretRules()   # Meraki makes the key; no policy applies
    can_verify: ClassVar[bool] = True
    limit: ClassVar[int] = 2

    def __init__(self, client_factory: ClientFactory | None = None, *, budget: Budgets | None = None,
                 timeout: float = 30.0, max_429: int = 6, max_5xx: int = 3, backoff: float = 1.0,
                 sleep: Sleep = asyncio.sleep, propagation: Propagation | None = None) -> None:
        super().__init__(client_factory, budget=budget, timeout=timeout, max_429=max_429, max_5xx=max_5xx,
                         backoff=backoff, sleep=sleep)
        # generate: no retry after a 5xx (a retried POST could mint a second key whose value is lost)
        self._once = _Once(client_factory, budget=self.budget, timeout=timeout, max_429=max_429,
                               max_5xx=1, backoff=backoff, sleep=sleep)
        self._propagation = propagation or Propagation()

    # ---- plumbing ----------------------------------------------------------------------------------
    @staticmethod
    def _as(account: Account, key: Secret) -> Account:
        """`account` authenticating with `key` (the shared plumbing sends the admin credential)."""
        return replace(account, admin=AdminCredential(username=account.username, secret=key))

    @staticmethod
    def validate_options(options: dict[str, str]) -> None:
        """Profile options: none of the IOS XE ones mean anything here."""
        extra = sorted(set(options) - {"site"})
        if extra:
            raise ProfileError(f"meraki-api-key takes no profile option {', '.join(extra)}")

    def handle(self, secret: Secret) -> str:
        """How Meraki names a key in its list: the last four characters."""
        return secret.reveal()[-4:]

    def propagation(self, account: Account) -> Propagation:
        timeout = _propagation_timeout(account)
        return self._propagation if timeout is None else replace(self._propagation, timeout=timeout)

    # ---- the capability ----------------------------------------------------------------------------
    async def issued(self, account: Account, using: Secret) -> list[Issued]:
        """The identity's keys, by suffix (``GET …/api/keys``)."""
        who = self._as(account, using)
        response = await self._send(who, "GET", KEYS_PATH, budget_key=IDENTITY_BUDGET,
                                         doing="listing the identity's API keys")
        if response.status_code != 200:
            self._raise_for(who, response, "listing the identity's API keys")
        body = _json(response)
        if not isinstance(body, list):
            raise self._err(TargetError, who, "listing the identity's API keys: the answer is not a "
                                                   "JSON list")
        keys = []
        for item in body:
            suffix = str(item.get("suffix") or "") if isinstance(item, dict) else ""
            if not SUFFIX_FORMAT.fullmatch(suffix):
                continue
            created = None
            with contextlib.suppress(ValueError):
                created = datetime.fromisoformat(str(item.get("createdAt")).replace("Z", "+00:00"))
            keys.append(Issued(handle=suffix, created_at=created))
        return keys

    async def generate(self, account: Account, using: Secret) -> Secret:
        """``POST …/api/keys/generate`` once; the new key (never logged)."""
        who = self._as(account, using)
        doing = "generating a new API key"
        response = await self._once._send(who, "POST", f"{KEYS_PATH}/generate", budget_key=IDENTITY_BUDGET,
                                          doing=doing)
        status = response.status_code
        if status in (200, 201, 202):
            body = _json(response)
            key = body.get("key") if isinstance(body, dict) else None
            if isinstance(key, str) and KEY_FORMAT.fullmatch(key):
                return Secret(key)
            # A key may exist that we cannot read: the engine treats this as an unknown outcome.
            raise self._err(TargetError, who, f"{doing}: HTTP {status} without a readable key")
        if status == 400:
            raise self._err(ChangeRejected, who, f"Meraki refused to generate a key: "
                                                      f"{_errors_text(response)}")
        self._raise_for(who, response, doing)
        raise AssertionError("unreachable")  # _raise_for always raises

    async def retire(self, account: Account, using: Secret, handle: str) -> None:
        """``POST …/api/keys/{suffix}/revoke``; 404 = already revoked (idempotent)."""
        if not SUFFIX_FORMAT.fullmatch(handle):
            raise ProfileError(f"meraki-api-key: {handle!r} is not a key suffix")
        who = self._as(account, using)
        doing = f"revoking the API key ending {handle}"
        response = await self._send(who, "POST", f"{KEYS_PATH}/{handle}/revoke",
                                         budget_key=IDENTITY_BUDGET, doing=doing)
        if response.status_code in (200, 202, 204, 404):
            return
        self._raise_for(who, response, doing)

    # ---- the contract ------------------------------------------------------------------------------
    async def verify(self, account: Account, secret: Secret) -> Verdict:
        """OK when `secret` authenticates and sees the resource's network; REJECTED on 401."""
        who = self._as(account, secret)
        network = account.endpoint.network_id or ""
        try:
            me = await self._send(who, "GET", ME_PATH, budget_key=IDENTITY_BUDGET,
                                       doing="checking the API key")
            if me.status_code == 401:
                return Verdict.REJECTED
            if me.status_code != 200:
                return Verdict.INCONCLUSIVE
            net = await self._call(who, "GET", f"/networks/{quote(network, safe='')}",
                                        doing="checking the API key on the network")
        except (KeyturnError, OSError) as exc:  # the contract: verify never raises
            log.info("%s: verify inconclusive: %s", KIND, exc)
            return Verdict.INCONCLUSIVE
        if net.status_code == 200:
            return Verdict.OK
        if net.status_code == 401:
            return Verdict.REJECTED
        return Verdict.INCONCLUSIVE

    async def change(self, account: Account, old: Secret | None, new: Secret) -> None:
        """Meraki makes the key; keyturn cannot set one (the engine uses `generate`)."""
        raise ChangeRejected("meraki-api-key: Meraki generates API keys; a key cannot be set",
                             target=KIND, record=account.record_uid)

    async def aclose(self) -> None:
        await super().aclose()
        await self._once.aclose()


__all__ = ["KIND", "MerakiApiKeyTarget"]

