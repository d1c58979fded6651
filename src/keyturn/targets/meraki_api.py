"""The Dashboard API v1 client every Meraki target shares: one pooled httpx client per base URL, the
per-organisation budget, bounded 429/5xx retries and the redirect rules (reference meraki.md §2, §6).

A Meraki target subclasses `MerakiApi` and calls `_call(account, METHOD, PATH, doing=..., json=...)`
for each request; `_raise_for` maps an unexpected answer to keyturn's errors. What `_send` guarantees:

* budget: every request first takes a token from the organisation's budget (`Budgets`: `OrgBudgets`
  shared by all rotations in the process, or `RedisOrgBudgets` shared by every worker); a 429
  penalises that organisation for its ``Retry-After`` and is retried a bounded number of times, then
  `RateLimited`;
* redirects (historical shard redirects, 301/302/303/307/308) are followed **here**, never by httpx:
  only to Meraki hosts (meraki.com/.ca/.cn/.in, gov-meraki.com and their subdomains) or to the
  configured base URL's own host, with the key re-attached and the method and body kept — a 302 on
  PUT is re-sent as a PUT, because turning it into a GET would report a change that never happened.
  A redirect never leaves https (no https → http downgrade, not even on the same host);
* transport: the base URL is ``https://``; plain ``http://`` is accepted only for a loopback host
  (127.0.0.0/8, ::1, ``localhost``: the simulator lab), anything else is a `ProfileError` before a
  request is made. A pinned ``fingerprint`` holds through the ``proxy`` option (`keyturn.targets.http`);
* auth: ``Authorization: Bearer <API key>`` (the admin credential's secret), or the legacy
  ``X-Cisco-Meraki-API-Key`` header with ``Endpoint.options["auth_header"] = "x-cisco-meraki-api-key"``.

Why httpx and not the official `meraki` SDK: by default the SDK logs request metadata including the
JSON body — so the new secret — to a ``meraki_api__log__*.log`` file in the working directory, and
its rate limiting ("smart flow") is a per-process bucket with its own hidden calls and a cache file;
keyturn needs a budget shared across rotations and no secret on disk.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, ClassVar
from urllib.parse import quote, urljoin, urlsplit

import httpx

from keyturn.engine.ratelimit import Budgets, OnWire, OrgBudgets
from keyturn.errors import (
    AccountNotFound,
    ProfileError,
    RateLimited,
    TargetAuthRejected,
    TargetError,
    TargetUnreachable,
)
from keyturn.secret import REDACTED, Secret
from keyturn.targets.base import Account, AdminCredential, Endpoint
from keyturn.targets.http import build_client, map_httpx_errors

log = logging.getLogger("keyturn.targets.meraki")  # one logger for every Meraki target

DEFAULT_BASE_URL = "https://api.meraki.com/api/v1"
MERAKI_DOMAINS = ("meraki.com", "meraki.ca", "meraki.cn", "meraki.in", "gov-meraki.com")
REDIRECTS = frozenset({301, 302, 303, 307, 308})
RETRY_5XX = frozenset({500, 502, 503, 504})
MAX_RETRY_AFTER = 300.0  # seconds; Meraki asks for 1-2 s (reference meraki.md §2)
AUTH_HEADERS = {"bearer": "Authorization", "x-cisco-meraki-api-key": "X-Cisco-Meraki-API-Key"}
USER_AGENT = "Keyturn/0.1 Keyturn"

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


def _on_wire_trace(on_wire: OnWire | None) -> dict[str, Any] | None:
    """httpx's `trace` extension calling `on_wire` as the request headers start to go out — after the
    connection (and its TLS handshake) is up, so the budget counts the request when Meraki sees it."""
    if on_wire is None:
        return None
    sent = on_wire

    async def trace(event: str, info: dict[str, Any]) -> None:
        if event.endswith(".send_request_headers.started"):
            sent()

    return {"trace": trace}


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



class MerakiApi:
    """Plumbing of the Meraki targets (see the module docstring); `kind` names the target in errors."""

    kind: ClassVar[str] = "meraki"

    def __init__(self, client_factory: ClientFactory | None = None, *, budget: Budgets | None = None,
                 timeout: float = 30.0, max_429: int = 6, max_5xx: int = 3, max_redirects: int = 5,
                 backoff: float = 1.0, sleep: Sleep = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._factory = client_factory or self._default_client
        self.budget: Budgets = budget if budget is not None else OrgBudgets()
        self._timeout = timeout
        self._max_429 = max(1, max_429)
        self._max_5xx = max(1, max_5xx)
        self._max_redirects = max_redirects
        self._backoff = backoff
        self._sleep = sleep
        self._clock = clock
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._orgs: dict[str, str] = {}                  # network id → org id (for the budget)

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
        return cls(f"{where}: {message}", target=self.kind, record=account.record_uid)

    def _headers(self, account: Account) -> dict[str, str]:
        if account.admin is None:
            raise ProfileError(f"{self.kind} needs an admin credential: the record whose password is the "
                               "API key")
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
            on_wire = await self.budget.acquire(budget_key)
            with map_httpx_errors(target=self.kind, record=account.record_uid,
                                  host=urlsplit(url).hostname or "", doing=doing):
                response = await client.request(method, url, json=json, headers=headers,
                                                extensions=_on_wire_trace(on_wire))
            status = response.status_code
            log.debug("%s %s %s -> %s", self.kind, method, urlsplit(url).path, status)
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
                                      f"({limited} times)", retry_after=wait, target=self.kind,
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

    # ---- walking the organisation (read-only) ---------------------------------------------------
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

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
