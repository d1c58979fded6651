"""`meraki-auth-user`: rotate a Meraki Authentication user's password through the Dashboard API v1.

Wire facts (reference meraki.md §1, §2, §6, §7.2):

* list ``GET /networks/{networkId}/merakiAuthUsers`` (not paginated), match the e-mail
  case-insensitively (0 → `AccountNotFound`, several → `AmbiguousAccount` listing the ids);
  Dashboard administrators (``isAdmin``) cannot take a password here → `AccountNotRotatable`;
* ``PUT /networks/{networkId}/merakiAuthUsers/{id}`` with ``{"password": NEW}`` **only** — never
  `emailPasswordToUser` (Meraki would mail the password), never `authorizations`; the id is
  percent-encoded (ids are base64 and may end in ``=``). 200 with the same user back = confirmed;
* auth: ``Authorization: Bearer <API key>`` (the admin credential's secret), or the legacy
  ``X-Cisco-Meraki-API-Key`` header with ``Endpoint.options["auth_header"] = "x-cisco-meraki-api-key"``;
* budget, 429/5xx retries, redirects, transport and the verifier URL's scheme: the shared client,
  `keyturn.targets.meraki_api` (the verifier URL is ``https://`` or loopback ``http://`` too).

The API never reveals or tests a password: `can_verify` is False and `verify` is INCONCLUSIVE unless
the resource configures a verifier, ``Endpoint.options["verify_url"]`` — an endpoint taking
``POST {"kind": "meraki", "network", "email", "password"}`` and answering ``{"ok": bool}`` (the
simulator's control API offers one; a RADIUS check could be another). `verifiable(account)` tells
the engine whether that is the case for an account.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx

from keyturn.engine.ratelimit import Budgets
from keyturn.errors import (
    AccountNotFound,
    AccountNotRotatable,
    AmbiguousAccount,
    ChangeRejected,
    ProfileError,
    TargetError,
)
from keyturn.secret import Secret
from keyturn.targets.base import Account, AdminCredential, Endpoint, FoundAccount, SecretRules, Verdict
from keyturn.targets.http import map_httpx_errors
from keyturn.targets.meraki_api import (  # re-exported: callers import them from here
    DEFAULT_BASE_URL,
    MERAKI_DOMAINS,
    ClientFactory,
    MerakiApi,
    Sleep,
    _errors_text,
    _json,
    check_url,
    is_loopback,
    is_meraki_host,
)

log = logging.getLogger("keyturn.targets.meraki")

KIND = "meraki-auth-user"
# No documented rules for auth-user passwords; printable ASCII, no space at either end (policy does it).
MERAKI_AUTH_RULES = SecretRules(min_length=1, max_length=255)

__all__ = ["DEFAULT_BASE_URL", "KIND", "MERAKI_AUTH_RULES", "MERAKI_DOMAINS", "MerakiAuthUserTarget",
           "check_url", "is_loopback", "is_meraki_host"]


class MerakiAuthUserTarget(MerakiApi):
    """Rotates Meraki Authentication users' passwords; one pooled client per base URL."""

    kind: ClassVar[str] = KIND
    constraints: ClassVar[SecretRules] = MERAKI_AUTH_RULES
    can_verify: ClassVar[bool] = False

    def __init__(self, client_factory: ClientFactory | None = None, *, budget: Budgets | None = None,
                 timeout: float = 30.0, max_429: int = 6, max_5xx: int = 3, max_redirects: int = 5,
                 backoff: float = 1.0, list_ttl: float = 60.0, sleep: Sleep = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 verifier_client: httpx.AsyncClient | None = None) -> None:
        super().__init__(client_factory, budget=budget, timeout=timeout, max_429=max_429, max_5xx=max_5xx,
                         max_redirects=max_redirects, backoff=backoff, sleep=sleep, clock=clock)
        self._list_ttl = list_ttl
        self._lists: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._list_locks: dict[str, asyncio.Lock] = {}
        self._verifier = verifier_client

    async def _users(self, account: Account, *, fresh: bool = False) -> list[dict[str, Any]]:
        network = account.endpoint.network_id
        if not network:
            raise ProfileError("meraki-auth-user: the resource has no network_id")
        lock = self._list_locks.setdefault(network, asyncio.Lock())
        async with lock:  # one list call per network even with many rotations in flight
            cached = self._lists.get(network)
            if cached is not None and not fresh and self._clock() - cached[0] < self._list_ttl:
                return cached[1]
            path = f"/networks/{quote(network, safe='')}/merakiAuthUsers"
            response = await self._call(account, "GET", path, doing="listing auth users")
            if response.status_code != 200:
                self._raise_for(account, response, "listing auth users")
            body = _json(response)
            if not isinstance(body, list):
                raise self._err(TargetError, account, "listing auth users: the answer is not a JSON list "
                                                      f"({_errors_text(response)})")
            users = [u for u in body if isinstance(u, dict)]
            self._lists[network] = (self._clock(), users)
            return users

    async def _find(self, account: Account, *, fresh: bool = False) -> dict[str, Any]:
        email = account.username.strip().lower()
        matches = [u for u in await self._users(account, fresh=fresh)
                   if str(u.get("email", "")).strip().lower() == email]
        if not matches:
            raise self._err(AccountNotFound, account, f"no Meraki auth user with e-mail {account.username!r}")
        if len(matches) > 1:
            ids = ", ".join(str(u.get("id")) for u in matches)
            raise self._err(AmbiguousAccount, account, f"{len(matches)} auth users match e-mail "
                            f"{account.username!r} (ids {ids}); fix the duplicates")
        user = matches[0]
        if user.get("isAdmin"):
            raise self._err(AccountNotRotatable, account, f"{account.username!r} is a Dashboard "
                            "administrator: Meraki does not let its password be set here (it signs "
                            "in with its Dashboard account)")
        return user

    # ---- discovery (read-only) ---------------------------------------------------------------------
    async def discover(self, endpoint: Endpoint, admin: AdminCredential) -> list[FoundAccount]:
        """The network's auth users (``endpoint.network_id``; its ``org_id`` names the budget).
        Dashboard administrators are listed as not rotatable (their password cannot be set here)."""
        found = []
        for user in await self._users(self._walker(endpoint, admin), fresh=True):
            email = str(user.get("email") or "").strip()
            if not email:
                continue
            admin_user = bool(user.get("isAdmin"))
            found.append(FoundAccount(
                username=email, kind=str(user.get("accountType") or ""), rotatable=not admin_user,
                note="Dashboard administrator: its password cannot be set through the API" if admin_user
                else "", details={"id": str(user.get("id") or ""), "name": str(user.get("name") or "")}))
        return found

    # ---- the contract ------------------------------------------------------------------------------
    async def change(self, account: Account, old: Secret | None, new: Secret) -> None:
        """Find the user by e-mail, PUT ``{"password": NEW}``, confirm the user came back (200).

        `ProfileError` before any request when the base or verifier URL is not allowed (see top)."""
        self._base_url(account.endpoint)
        if account.endpoint.options.get("verify_url"):
            # refused now, not after the change: a password set that cannot be proved is a bad trade
            check_url(account.endpoint.options["verify_url"], "verify_url")
        user = await self._find(account)
        for attempt in (1, 2):
            user_id = str(user.get("id", ""))
            path = (f"/networks/{quote(account.endpoint.network_id or '', safe='')}/merakiAuthUsers/"
                    f"{quote(user_id, safe='')}")
            response = await self._call(account, "PUT", path, doing="setting the password",
                                        json={"password": new.reveal()}, scrub=new)
            if response.status_code == 404 and attempt == 1:
                user = await self._find(account, fresh=True)  # stale id from the cached list
                continue
            break
        status = response.status_code
        if status == 200:
            await self._confirm(account, response, user_id, path)
            return
        if status == 400:
            raise self._err(ChangeRejected, account, f"Meraki refused the new password: "
                                                     f"{_errors_text(response, new)}")
        self._raise_for(account, response, "setting the password", scrub=new)

    async def _confirm(self, account: Account, response: httpx.Response, user_id: str, path: str) -> None:
        """A 200 counts only if the user is still there (PUT echo or, failing that, a GET)."""
        body = _json(response)
        if isinstance(body, dict) and str(body.get("id")) == user_id and (
                str(body.get("email", "")).lower() == account.username.strip().lower()):
            return
        check = await self._call(account, "GET", path, doing="confirming the change")
        if check.status_code == 200:
            return
        self._lists.pop(account.endpoint.network_id or "", None)
        if check.status_code == 404:
            raise self._err(AccountNotFound, account, f"the change was answered 200 but user "
                                                      f"{account.username!r} is gone")
        self._raise_for(account, check, "confirming the change")

    def verifiable(self, account: Account) -> bool:
        """True when the resource configures a login verifier (`verify_url`)."""
        return bool(account.endpoint.options.get("verify_url"))

    async def verify(self, account: Account, secret: Secret) -> Verdict:
        """INCONCLUSIVE unless a verifier is configured; then its ``{"ok": bool}`` decides.
        A verifier URL that is not https (or loopback http) gets nothing: INCONCLUSIVE, logged."""
        url = account.endpoint.options.get("verify_url")
        if not url:
            return Verdict.INCONCLUSIVE
        try:
            check_url(url, "verify_url")
        except ProfileError as exc:  # the contract: verify never raises; nothing was sent
            log.warning("%s: verify inconclusive: %s", KIND, exc)
            return Verdict.INCONCLUSIVE
        body: Mapping[str, str] = {"kind": "meraki", "network": account.endpoint.network_id or "",
                                   "email": account.username, "password": secret.reveal()}
        try:
            with map_httpx_errors(target=KIND, record=account.record_uid, host=urlsplit(url).hostname or "",
                                  doing="asking the verifier"):
                response = await self._verifier_client().post(url, json=body)
        except TargetError as exc:
            log.info("%s: verify inconclusive: %s", KIND, exc)
            return Verdict.INCONCLUSIVE
        doc = _json(response)
        ok = doc.get("ok") if isinstance(doc, dict) else None
        if response.status_code != 200 or not isinstance(ok, bool):
            return Verdict.INCONCLUSIVE
        return Verdict.OK if ok else Verdict.REJECTED

    def _verifier_client(self) -> httpx.AsyncClient:
        # Not the API client: the verifier is another service (no API key, no Meraki proxy).
        if self._verifier is None:
            self._verifier = httpx.AsyncClient(timeout=self._timeout, trust_env=False)
        return self._verifier

    async def aclose(self) -> None:
        verifier, self._verifier = self._verifier, None
        self._lists.clear()
        await super().aclose()
        if verifier is not None:
            await verifier.aclose()
