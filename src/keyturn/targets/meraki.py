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
* budget: every request first takes a token from the organisation's budget (`Budgets`: `OrgBudgets`
  shared by all rotations in the process, or `RedisOrgBudgets` shared by every worker); a 429
  penalises that organisation for its ``Retry-After`` and is retried a bounded number of times, then
  `RateLimited`;
* redirects (historical shard redirects, 301/302/303/307/308) are followed **here**, never by httpx:
  only to Meraki hosts (meraki.com/.ca/.cn/.in, gov-meraki.com and their subdomains) or to the
  configured base URL's own host, with the key re-attached and the method and body kept — a 302 on
  PUT is re-sent as a PUT, because turning it into a GET would report a change that never happened.
  A redirect never leaves https (no https → http downgrade, not even on the same host);
* transport: the base URL and the verifier URL are ``https://``; plain ``http://`` is accepted only
  for a loopback host (127.0.0.0/8, ::1, ``localhost``: the simulator lab), anything else is a
  `ProfileError` before a request is made. A pinned ``fingerprint`` holds through the ``proxy``
  option: it is checked on the TLS session inside the CONNECT tunnel (`keyturn.targets.http`), so an
  intercepting proxy with another certificate gets no request, and so no API key.

Why httpx and not the official `meraki` SDK: by default the SDK logs request metadata including the
JSON body — so the new password — to a ``meraki_api__log__*.log`` file in the working directory, and
its rate limiting ("smart flow") is a per-process bucket with its own hidden calls and a cache file;
keyturn needs a budget shared across rotations and no secret on disk.

The API never reveals or tests a password: `can_verify` is False and `verify` is INCONCLUSIVE unless
the resource configures a verifier, ``Endpoint.options["verify_url"]`` — an endpoint taking
``POST {"kind": "meraki", "network", "email", "password"}`` and answering ``{"ok": bool}`` (the
simulator's control API offers one; a RADIUS check could be another). `verifiable(account)` tells
the engine whether that is the case for an account.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, ClassVar
from urllib.parse import quote, urljoin, urlsplit

import httpx

from keyturn.engine.ratelimit import Budgets, OrgBudgets
from keyturn.errors import (
    AccountNotFound,
    AccountNotRotatable,
    AmbiguousAccount,
    ChangeRejected,
    ProfileError,
    RateLimited,
    TargetAuthRejected,
    TargetError,
    TargetUnreachable,
)
from keyturn.secret import REDACTED, Secret
from keyturn.targets.base import Account, AdminCredential, Endpoint, FoundAccount, SecretRules, Verdict
from keyturn.targets.http import build_client, map_httpx_errors

log = logging.getLogger("keyturn.targets.meraki")

KIND = "meraki-auth-user"
DEFAULT_BASE_URL = "https://api.meraki.com/api/v1"
MERAKI_DOMAINS = ("meraki.com", "meraki.ca", "meraki.cn", "meraki.in", "gov-meraki.com")
REDIRECTS = frozenset({301, 302, 303, 307, 308})
RETRY_5XX = frozenset({500, 502, 503, 504})
MAX_RETRY_AFTER = 300.0  # seconds; Meraki asks for 1-2 s (reference meraki.md §2)
AUTH_HEADERS = {"bearer": "Authorization", "x-cisco-meraki-api-key": "X-Cisco-Meraki-API-Key"}
USER_AGENT = "Keyturn/0.1 Keyturn"
# No documented rules for auth-user passwords; printable ASCII, no space at either end (policy does it).
MERAKI_AUTH_RULES = SecretRules(min_length=1, max_length=255)

ClientFactory = Callable[[Endpoint], httpx.AsyncClient]
Sleep = Callable[[float], Awaitable[None]]


def is_meraki_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in MERAKI_DOMAINS)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or ``localhost`` — where plain http cannot be read by anyone on the network."""
    host = host.lower().rstrip(".").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str) -> None:
    """`ProfileError` unless `url` is ``https://HOST`` or ``http://`` to a loopback host.

    The API key and the passwords travel in these requests: plain http on a network is readable by
    anyone on the path, and a typo (``http://api.meraki.com``) must not be "followed" into clear text.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError as exc:
        raise ProfileError(f"meraki: {what} {url!r} is not a URL") from exc
    if parts.scheme == "https" and host:
        return
    if parts.scheme == "http" and host and is_loopback(host):
        return
    if parts.scheme == "http" and host:
        raise ProfileError(f"meraki: {what} {url!r} is plain http to a non-loopback host; credentials "
                           "would cross the network in clear text. Use https:// (http:// is accepted "
                           "only for 127.0.0.1, ::1 or localhost)")
    raise ProfileError(f"meraki: {what} {url!r} must be an https:// URL with a host")


_UNREADABLE = object()


def _json(response: httpx.Response) -> Any:
    """The body as JSON, or `_UNREADABLE` (not JSON, not UTF-8, or nested past the parser's limit:
    whatever a broken or hostile peer sends, it is refused, never a crash)."""
    try:
        return response.json()
    except (ValueError, RecursionError):
        return _UNREADABLE


def _errors_text(response: httpx.Response, scrub: Secret | None = None) -> str:
    doc = _json(response)
    errors = doc.get("errors") if isinstance(doc, dict) else None
    try:
        text = "; ".join(str(e) for e in errors) if isinstance(errors, list) else ""
    except RecursionError:  # an error entry nested as deep as the parser allows
        text = ""
    text = text or response.reason_phrase or "no detail"
    if scrub is not None and scrub.reveal():
        text = text.replace(scrub.reveal(), REDACTED)
    return f"HTTP {response.status_code} ({text[:300]})"


def _retry_after(response: httpx.Response, attempt: int) -> float:
    raw = response.headers.get("Retry-After", "")
    try:
        wait = float(raw)
    except ValueError:
        wait = math.nan
    if not math.isfinite(wait):
        return float(min(2 ** attempt, 30))  # the nginx/per-IP limiter may omit it
    # "inf" or "1e308" would hold every rotation of the organisation (they share its budget) forever
    return min(max(0.0, wait), MAX_RETRY_AFTER)


class MerakiAuthUserTarget:
    """Rotates Meraki Authentication users' passwords; one pooled client per base URL."""

    kind: ClassVar[str] = KIND
    constraints: ClassVar[SecretRules] = MERAKI_AUTH_RULES
    can_verify: ClassVar[bool] = False

    def __init__(self, client_factory: ClientFactory | None = None, *, budget: Budgets | None = None,
                 timeout: float = 30.0, max_429: int = 6, max_5xx: int = 3, max_redirects: int = 5,
                 backoff: float = 1.0, list_ttl: float = 60.0, sleep: Sleep = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 verifier_client: httpx.AsyncClient | None = None) -> None:
        self._factory = client_factory or self._default_client
        self.budget: Budgets = budget if budget is not None else OrgBudgets()
        self._timeout = timeout
        self._max_429 = max(1, max_429)
        self._max_5xx = max(1, max_5xx)
        self._max_redirects = max_redirects
        self._backoff = backoff
        self._list_ttl = list_ttl
        self._sleep = sleep
        self._clock = clock
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._orgs: dict[str, str] = {}                  # network id → org id (for the budget)
        self._lists: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._list_locks: dict[str, asyncio.Lock] = {}
        self._verifier = verifier_client

    # ---- plumbing ----------------------------------------------------------------------------------
    def _base_url(self, endpoint: Endpoint) -> str:
        base = (endpoint.base_url or DEFAULT_BASE_URL).rstrip("/")
        check_url(base, "base_url")
        return base

    def _default_client(self, endpoint: Endpoint) -> httpx.AsyncClient:
        return build_client(endpoint, base_url=self._base_url(endpoint), timeout=self._timeout,
                            proxy=endpoint.options.get("proxy"), max_connections=20)

    def _client(self, endpoint: Endpoint) -> httpx.AsyncClient:
        key = self._base_url(endpoint)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = self._factory(endpoint)
        return client

    def _err(self, cls: type[TargetError], account: Account, message: str) -> TargetError:
        ep = account.endpoint
        where = (f"network {ep.network_id}" if ep.network_id else
                 f"organisation {ep.org_id}" if ep.org_id else "Meraki API")
        return cls(f"{where}: {message}", target=KIND, record=account.record_uid)

    def _headers(self, account: Account) -> dict[str, str]:
        if account.admin is None:
            raise ProfileError("meraki-auth-user needs an admin credential: the record whose password is "
                               "the API key")
        style = account.endpoint.options.get("auth_header", "bearer").lower()
        if style not in AUTH_HEADERS:
            raise ProfileError(f"meraki: auth_header must be one of {sorted(AUTH_HEADERS)}, not {style!r}")
        key = account.admin.secret.reveal()
        value = f"Bearer {key}" if style == "bearer" else key
        return {AUTH_HEADERS[style]: value, "Accept": "application/json",
                "Content-Type": "application/json", "User-Agent": USER_AGENT}

    def _redirect_target(self, account: Account, current: str, location: str) -> str:
        base = urlsplit(self._base_url(account.endpoint))
        try:
            url = urljoin(current, location)
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
            same_base = host == (base.hostname or "").lower() and parts.port == base.port
        except ValueError as exc:  # "https://[bad", a port past 65535: nothing to follow
            raise self._err(TargetError, account, f"refused a redirect to an unreadable location "
                                                  f"{location[:80]!r}") from exc
        if parts.scheme == "https" and (same_base or is_meraki_host(host)):
            return url
        # Plain http only where the lab runs it: the configured loopback base, already on http.
        if (parts.scheme == "http" and urlsplit(current).scheme == "http" and same_base
                and is_loopback(host)):
            return url
        why = ("a downgrade from https to plain http" if parts.scheme != "https" and
               urlsplit(current).scheme == "https" else "not a Meraki API host over https")
        raise self._err(TargetError, account, f"refused a redirect to {parts.scheme}://{host}: {why} "
                                              "(the API key is never sent elsewhere)")

    async def _org(self, account: Account) -> str:
        ep = account.endpoint
        if ep.org_id:
            return ep.org_id
        network = ep.network_id or ""
        known = self._orgs.get(network)
        if known is None:
            # One lookup per network per process, charged to a shared discovery bucket.
            response = await self._send(account, "GET", f"/networks/{quote(network, safe='')}",
                                        budget_key="_discovery", doing="looking up the network")
            org = None
            if response.status_code == 200:
                body = _json(response)
                org = body.get("organizationId") if isinstance(body, dict) else None
            known = self._orgs[network] = str(org) if org else f"network:{network}"
        return known

    async def _call(self, account: Account, method: str, path: str, *, doing: str,
                    json: Any = None, scrub: Secret | None = None) -> httpx.Response:
        org = await self._org(account)
        return await self._send(account, method, path, budget_key=org, doing=doing, json=json, scrub=scrub)

    async def _send(self, account: Account, method: str, path: str, *, budget_key: str, doing: str,
                    json: Any = None, scrub: Secret | None = None) -> httpx.Response:
        """One logical request: budget, explicit redirects, 429 and 5xx retries (all bounded)."""
        client = self._client(account.endpoint)
        headers = self._headers(account)
        # An absolute URL is a pagination link, checked by `_pages` like a redirect.
        url = path if "://" in path else f"{self._base_url(account.endpoint)}{path}"
        redirects = limited = failed = 0
        while True:
            await self.budget.acquire(budget_key)
            with map_httpx_errors(target=KIND, record=account.record_uid, host=urlsplit(url).hostname or "",
                                  doing=doing):
                response = await client.request(method, url, json=json, headers=headers)
            status = response.status_code
            log.debug("%s %s %s -> %s", KIND, method, urlsplit(url).path, status)
            if status in REDIRECTS and "Location" in response.headers:
                redirects += 1
                if redirects > self._max_redirects:
                    raise self._err(TargetUnreachable, account, f"too many redirects while {doing}")
                url = self._redirect_target(account, url, response.headers["Location"])
                continue  # same method, same body, key re-attached (headers are ours, not httpx's)
            if status == 429:
                limited += 1
                wait = _retry_after(response, limited)
                self.budget.penalize(budget_key, wait)  # everyone on this org waits, not only us
                if limited >= self._max_429:
                    raise RateLimited(f"network {account.endpoint.network_id}: rate limited while {doing} "
                                      f"({limited} times)", retry_after=wait, target=KIND,
                                      record=account.record_uid)
                continue
            if status in RETRY_5XX:
                failed += 1
                if failed >= self._max_5xx:
                    raise self._err(TargetUnreachable, account, f"{doing}: {_errors_text(response, scrub)} "
                                                                f"after {failed} attempts")
                await self._sleep(self._backoff * 2 ** (failed - 1))
                continue
            return response

    def _raise_for(self, account: Account, response: httpx.Response, doing: str,
                   scrub: Secret | None = None) -> None:
        status = response.status_code
        if status == 401:
            raise self._err(TargetAuthRejected, account, f"the API key was refused while {doing}")
        if status == 403:
            raise self._err(TargetAuthRejected, account, f"the API key may not do this ({doing}): "
                                                         f"{_errors_text(response)}")
        if status == 404:
            raise self._err(AccountNotFound, account, f"not found while {doing} (wrong network id, or "
                                                      "not visible to this API key)")
        raise self._err(TargetError, account, f"unexpected answer while {doing}: "
                                              f"{_errors_text(response, scrub)}")

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
    @staticmethod
    def _walker(endpoint: Endpoint, admin: AdminCredential) -> Account:
        return Account(record_uid="", username="", endpoint=endpoint, admin=admin)

    async def _pages(self, account: Account, path: str, *, budget_key: str,
                     doing: str) -> list[dict[str, Any]]:
        """Every item of a paginated list, following ``Link: rel=next`` (reference §2.4) on the
        API's own hosts only (`_redirect_target`: the key is never sent elsewhere)."""
        items: list[dict[str, Any]] = []
        url = path
        for _page in range(10_000):  # a server whose "next" never ends cannot hold us forever
            response = await self._send(account, "GET", url, budget_key=budget_key, doing=doing)
            if response.status_code != 200:
                self._raise_for(account, response, doing)
            body = _json(response)
            if not isinstance(body, list):
                raise self._err(TargetError, account, f"{doing}: the answer is not a JSON list")
            items += [item for item in body if isinstance(item, dict)]
            following = response.links.get("next", {}).get("url")
            if not following:
                return items
            current = url if "://" in url else f"{self._base_url(account.endpoint)}{url}"
            url = self._redirect_target(account, current, following)
        raise self._err(TargetError, account, f"{doing}: more than 10,000 pages")

    async def organizations(self, endpoint: Endpoint, admin: AdminCredential) -> list[dict[str, Any]]:
        """``GET /organizations`` (every page): the organisations the API key sees."""
        return await self._pages(self._walker(endpoint, admin), "/organizations", budget_key="_discovery",
                                 doing="listing the organisations")

    async def networks(self, endpoint: Endpoint, admin: AdminCredential, org_id: str) -> list[dict[str, Any]]:
        """``GET /organizations/{id}/networks`` (every page), charged to that organisation's budget."""
        walker = self._walker(replace(endpoint, org_id=org_id, network_id=None), admin)
        path = f"/organizations/{quote(org_id, safe='')}/networks"
        return await self._pages(walker, path, budget_key=org_id, doing="listing the networks")

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
        clients, self._clients = list(self._clients.values()), {}
        if self._verifier is not None:
            clients.append(self._verifier)
            self._verifier = None
        self._lists.clear()
        for client in clients:
            await client.aclose()
