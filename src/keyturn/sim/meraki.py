"""Meraki Dashboard API v1 simulator: the aiohttp front-end over `MerakiState`.

Serves plain HTTP; the base URL is `http://<host>:<port>/api/v1`. For unmodified clients that hard-code
`https://api.meraki.com`, put `sim/meraki_proxy.MerakiProxy` in front of it (reference §4.7 B/C).

Per request, in this order (reference §2, §7.1):
  1. route (percent-decoded path segments, so `…%3D%3D` and raw `…==` ids match alike)
  2. the org's fault switches: down, latency, reset_rate, timeout_rate
  3. per-source-IP token bucket (100/s)                               → 429
  4. API key from `X-Cisco-Meraki-API-Key` or `Authorization: Bearer` → 401 {"errors": ["Invalid API key"]}
  5. rate_limit_storm, then the per-org token bucket (10/s, burst 10) → 429 + integer Retry-After
  6. error_rate                                                       → 500/502/503
  7. redirect_on_write (writes on a non-shard host)                   → 3xx to https://nNNN.meraki.com/…
  8. the operation (refuse_passwords is a state rule); drop_after_apply drops the answer to an applied write
Requests not tied to an org (`/administered/*`) count only against the IP bucket and see no org faults.
Every response carries `X-Request-Id`; every body is JSON (`{"errors": [...]}` on 4xx/5xx).

`GET /_sim/request-times` (outside the API, no key) answers `{"clock": now, "orgs": {org id: [t, ...]}}`:
the arrival time, on the simulator's monotonic clock, of each of an org's last `TIMES_KEPT` requests
(every request its `requests` counter counts, 429s included), for benchmarks that check a rate over
any 1-second window.

Example:
    state = MerakiState(seed=1); ...
    frontend = MerakiFrontend(state)
    port = await frontend.start()            # http://127.0.0.1:{port}/api/v1
    ...
    await frontend.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from aiohttp import web

from keyturn.errors import SimulatedApiError, SimulatorError
from keyturn.sim import meraki_identities, meraki_wireless
from keyturn.sim.faults import Faults
from keyturn.sim.meraki_state import (
    FIRST_TOKEN,
    LAST_TOKEN,
    AdminIdentity,
    MerakiState,
    OrgStats,
    RequestRecord,
    paginate,
)
from keyturn.sim.ratebucket import Clock, TokenBucket, retry_after_seconds

Json = Any

API_PREFIX = "/api/v1/"
MERAKI_DOMAINS = ("meraki.com", "meraki.ca", "meraki.cn", "meraki.in", "gov-meraki.com")
_SHARD_HOST = re.compile(r"^n\d+\.meraki\.(com|cn)$")
WRITE_METHODS = frozenset({"POST", "PUT", "DELETE"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ERROR_STATUSES = (500, 502, 503)

SIM_REQUEST_TIMES = "/_sim/request-times"
TIMES_KEPT = 100_000     # arrival times kept per org (a long chaos run must not grow without bound)

ERR_INVALID_KEY = "Invalid API key"
ERR_ORG_RATE = "API rate limit exceeded for organization"
ERR_IP_RATE = "API rate limit exceeded for source IP"  # per-IP wording unknown (reference §2.3)
ERR_NOT_FOUND = "Not found"
ERR_SERVER = {500: "Internal server error", 502: "Bad gateway", 503: "Service unavailable"}

# (min, max, default) perPage per paginated operation (reference §2.4)
PER_PAGE = {"getOrganizations": (3, 9000, 9000), "getOrganizationNetworks": (3, 100_000, 1000),
            "getOrganizationInventoryDevices": (3, 1000, 1000)}


def is_meraki_host(host: str) -> bool:
    """True for Meraki API hosts (`api.meraki.com`, shards `n123.meraki.com`, regional hosts)."""
    host = host.lower().rsplit(":", 1)[0] if host.count(":") == 1 else host.lower()
    return any(host == d or host.endswith("." + d) for d in MERAKI_DOMAINS)


def _is_shard_host(host: str) -> bool:
    return bool(_SHARD_HOST.match(host.lower().split(":")[0]))


# ---------------------------------------------------------------------------------------------- routing


@dataclass(frozen=True)
class Route:
    method: str
    pattern: tuple[str, ...]
    operation: str

    def match(self, segments: list[str]) -> dict[str, str] | None:
        params: dict[str, str] = {}
        for i, part in enumerate(self.pattern):
            if part.endswith("*}"):  # greedy tail: a raw base64 id may contain "/"
                if i >= len(segments):
                    return None
                params[part[1:-2]] = "/".join(segments[i:])
                return params
            if i >= len(segments):
                return None
            if part.startswith("{"):
                if not segments[i]:
                    return None
                params[part[1:-1]] = segments[i]
            elif part != segments[i]:
                return None
        return params if len(segments) == len(self.pattern) else None


def _routes(table: str) -> list[Route]:
    out = []
    for line in table.strip().splitlines():
        method, path, operation = line.split()
        out.append(Route(method, tuple(path.strip("/").split("/")), operation))
    return out


# One line per operation: method, path under /api/v1, operationId (the spec's names).
ROUTES = _routes("""
GET    /organizations                                               getOrganizations
GET    /organizations/{org}                                         getOrganization
GET    /organizations/{org}/networks                                getOrganizationNetworks
GET    /organizations/{org}/inventoryDevices                        getOrganizationInventoryDevices
GET    /organizations/{org}/inventory/devices                       getOrganizationInventoryDevices
GET    /networks/{net}                                              getNetwork
GET    /networks/{net}/merakiAuthUsers                              getNetworkMerakiAuthUsers
POST   /networks/{net}/merakiAuthUsers                              createNetworkMerakiAuthUser
GET    /networks/{net}/merakiAuthUsers/{user*}                      getNetworkMerakiAuthUser
PUT    /networks/{net}/merakiAuthUsers/{user*}                      updateNetworkMerakiAuthUser
DELETE /networks/{net}/merakiAuthUsers/{user*}                      deleteNetworkMerakiAuthUser
""") + _routes(meraki_wireless.ROUTES) + _routes(meraki_identities.ROUTES)


def match_route(method: str, segments: list[str]) -> tuple[Route, dict[str, str]] | None:
    for route in ROUTES:
        if route.method == method:
            params = route.match(segments)
            if params is not None:
                return route, params
    return None


# ---------------------------------------------------------------------------------------------- replies


@dataclass
class Reply:
    status: int
    body: Json = None
    headers: dict[str, str] = field(default_factory=dict)


def _errors(status: int, *messages: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"errors": list(messages)}, headers or {})


@dataclass
class Call:
    """One routed, authenticated request as the operation handlers see it."""

    operation: str
    params: dict[str, str]
    query: dict[str, str]
    body: dict[str, Any]
    who: AdminIdentity
    base_url: str  # scheme://host/api/v1 as the client addressed us (Link URLs stay on that host)
    path: str      # raw path after /api/v1


class _Drop(Exception):
    """Close the connection without an answer (reset / down / drop-after-apply faults)."""


# ---------------------------------------------------------------------------------------------- front-end


class MerakiFrontend:
    """aiohttp server for one `MerakiState`; any number of orgs/networks behind one port."""

    def __init__(self, state: MerakiState, *, rate_per_org: float = 10.0, burst: int = 10,
                 rate_per_ip: float = 100.0, key_propagation: float = 0.0,
                 clock: Clock = time.monotonic) -> None:
        self.state = state
        self.rate_per_org = rate_per_org
        self.burst = burst
        self.rate_per_ip = rate_per_ip
        # Keys generated through the API answer 401 for `key_propagation` s (`sim/meraki_identities`).
        self.new_keys = meraki_identities.NewKeys(key_propagation)
        self._clock = clock
        self._org_buckets: dict[str, TokenBucket] = {}
        self._ip_buckets: dict[str, TokenBucket] = {}
        self.ip_rate_limited = 0
        self._request_ids = itertools.count(0x5EED0000)
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._ops: dict[str, Callable[[Call], Reply]] = _operations(state, self.new_keys)
        self.request_times: dict[str, deque[float]] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on host:port (0 = ephemeral); returns the bound port."""
        if self._runner is not None:
            raise SimulatorError("Meraki simulator already started")
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._stopping = asyncio.Event()
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise SimulatorError(f"Meraki simulator cannot listen on {host}:{port}: {exc.strerror}") from exc
        self._runner = runner
        return int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening; requests held by `timeout_rate` are released (their connections closed)."""
        self._stopping.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    @property
    def key_propagation(self) -> float:
        """Seconds a key generated through the API answers 401 (settable)."""
        return self.new_keys.delay

    @key_propagation.setter
    def key_propagation(self, seconds: float) -> None:
        self.new_keys.delay = seconds

    # ------------------------------------------------------------------ buckets

    def bucket_for_org(self, org_id: str) -> TokenBucket:
        bucket = self._org_buckets.get(org_id)
        if bucket is None:
            bucket = TokenBucket(self.rate_per_org, self.burst, clock=self._clock)
            self._org_buckets[org_id] = bucket
        return bucket

    def _bucket_for_ip(self, ip: str) -> TokenBucket:
        bucket = self._ip_buckets.get(ip)
        if bucket is None:
            bucket = TokenBucket(self.rate_per_ip, max(1.0, self.rate_per_ip), clock=self._clock)
            self._ip_buckets[ip] = bucket
        return bucket

    # ------------------------------------------------------------------ request pipeline

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        request_id = f"{next(self._request_ids):x}"
        auth_kind: str | None = None
        org_id: str | None = None
        raw = request.raw_path
        if raw.startswith(("http://", "https://")):  # absolute-form request line
            parts = urlsplit(raw)
            raw = parts.path + (f"?{parts.query}" if parts.query else "")
        path, _, _ = raw.partition("?")
        if path == SIM_REQUEST_TIMES and request.method == "GET":
            return self._respond(Reply(200, {"clock": self._clock(), "orgs": {
                org: list(times) for org, times in sorted(self.request_times.items())}}), request_id)
        found: tuple[Route, dict[str, str]] | None = None
        if path.startswith(API_PREFIX):
            segments = [unquote(s) for s in path[len(API_PREFIX):].rstrip("/").split("/")]
            found = match_route(request.method, segments)
            if found is not None and segments[0] in ("organizations", "networks") and len(segments) > 1:
                org_id = self.state.org_of(segments[0], segments[1])
        try:
            reply, auth_kind = await self._pipeline(request, raw, path, found, org_id)
        except _Drop:
            self._record(request, path, 0, org_id, auth_kind)
            return self._drop(request)
        self._record(request, path, reply.status, org_id, auth_kind)
        return self._respond(reply, request_id)

    async def _pipeline(self, request: web.Request, raw: str, path: str,
                        found: tuple[Route, dict[str, str]] | None,
                        org_id: str | None) -> tuple[Reply, str | None]:
        faults = self.state.faults_for(org_id) if org_id else None
        stats = self.state.stats_for(org_id) if org_id else None
        if faults is not None and stats is not None and org_id is not None:
            stats.requests += 1
            times = self.request_times.get(org_id)
            if times is None:
                times = self.request_times[org_id] = deque(maxlen=TIMES_KEPT)
            times.append(self._clock())
            await self._pre_faults(faults, stats)

        ip_bucket = self._bucket_for_ip(request.remote or "?")
        if not ip_bucket.take():
            self.ip_rate_limited += 1
            return self._too_many(ERR_IP_RATE, ip_bucket.wait()), None

        key, auth_kind = _api_key(request)
        who = meraki_identities.authenticate(self.state, key, self.new_keys) if key else None
        if who is None:
            return _errors(401, ERR_INVALID_KEY), auth_kind
        if found is None:
            return _errors(404, ERR_NOT_FOUND), auth_kind
        route, params = found

        if faults is not None and stats is not None and org_id is not None:
            if faults.take("rate_limit_storm"):
                stats.storm_limited += 1
                return self._too_many(ERR_ORG_RATE, float(faults.retry_after)), auth_kind
            bucket = self.bucket_for_org(org_id)
            if not bucket.take():
                stats.rate_limited += 1
                return self._too_many(ERR_ORG_RATE, bucket.wait()), auth_kind
            if faults.roll(faults.error_rate):
                stats.errors_injected += 1
                status = ERROR_STATUSES[stats.errors_injected % len(ERROR_STATUSES)]
                return _errors(status, ERR_SERVER[status]), auth_kind
            if (faults.redirect_on_write and request.method in WRITE_METHODS
                    and not _is_shard_host(request.host)):
                stats.redirected += 1
                return self._redirect(request, raw, org_id, faults), auth_kind

        body: dict[str, Any] = {}
        if request.method in WRITE_METHODS and request.can_read_body:
            try:
                parsed = await request.json(loads=json.loads)
            except (ValueError, UnicodeDecodeError):
                return _errors(400, "The request body is not valid JSON"), auth_kind
            if parsed is not None and not isinstance(parsed, dict):
                return _errors(400, "The request body must be a JSON object"), auth_kind
            body = parsed or {}
        call = Call(route.operation, params, dict(request.query), body, who,
                    f"{_scheme(request)}://{request.host}/api/v1", path[len(API_PREFIX) - 1:])
        try:
            reply = self._ops[route.operation](call)
        except SimulatedApiError as exc:
            reply = _errors(exc.status, *exc.errors)
        if (faults is not None and stats is not None and request.method in WRITE_METHODS
                and 200 <= reply.status < 300 and faults.take("drop_after_apply")):
            stats.dropped_after_apply += 1
            raise _Drop
        return reply, auth_kind

    async def _pre_faults(self, faults: Faults, stats: OrgStats) -> None:
        if faults.down:
            stats.refused_down += 1
            raise _Drop
        if faults.latency > 0:
            # the fault itself: delay the answer (cut short by stop(), which then drops it)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), faults.latency)
            if self._stopping.is_set():
                raise _Drop
        if faults.roll(faults.reset_rate):
            stats.resets += 1
            raise _Drop
        if faults.roll(faults.timeout_rate):
            stats.timeouts += 1
            await self._stopping.wait()  # accepted, never answered (released by stop())
            raise _Drop

    @staticmethod
    def _too_many(message: str, wait: float) -> Reply:
        return _errors(429, message, headers={"Retry-After": str(retry_after_seconds(wait))})

    def _redirect(self, request: web.Request, raw: str, org_id: str, faults: Faults) -> Reply:
        status = faults.redirect_status if faults.redirect_status in REDIRECT_STATUSES else 302
        shard = self.state.orgs[org_id].shard
        # Shards are https, except for clients that reached us as a plain-HTTP Meraki host via the proxy
        scheme = "http" if request.headers.get("X-Forwarded-Proto") == "http" else "https"
        location = f"{scheme}://n{shard}.meraki.com{raw}"
        return Reply(status, {"errors": [f"Moved to n{shard}.meraki.com"]}, {"Location": location})

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.abort()
        # aiohttp's write to the aborted transport fails quietly (ConnectionError is handled there)
        return web.Response(status=500)

    def _record(self, request: web.Request, path: str, status: int, org_id: str | None,
                auth: str | None) -> None:
        self.state.requests.append(RequestRecord(request.method, path, request.host, status, org_id, auth))

    @staticmethod
    def _respond(reply: Reply, request_id: str) -> web.Response:
        headers = {"X-Request-Id": request_id, **reply.headers}
        if reply.status == 204:
            return web.Response(status=204, headers=headers)
        body = b"" if reply.body is None else json.dumps(reply.body).encode()
        return web.Response(status=reply.status, body=body, headers=headers, content_type="application/json")


def _scheme(request: web.Request) -> str:
    forwarded = request.headers.get("X-Forwarded-Proto")
    if forwarded in ("http", "https"):
        return forwarded
    # Through the CONNECT proxy the TLS is already terminated; a Meraki Host means the client spoke https.
    return "https" if request.secure or is_meraki_host(request.host) else "http"


def _api_key(request: web.Request) -> tuple[str | None, str | None]:
    legacy = request.headers.get("X-Cisco-Meraki-API-Key")
    if legacy:
        return legacy.strip(), "x-cisco-meraki-api-key"
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip(), "bearer"
    return None, None


# ---------------------------------------------------------------------------------------------- operations


def _query_int(call: Call, name: str, default: int, low: int, high: int) -> int:
    raw = call.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SimulatedApiError(400, f"'{name}' must be an integer") from exc
    if not low <= value <= high:
        raise SimulatedApiError(400, f"'{name}' must be between {low} and {high}")
    return value


def _paged(call: Call, items: list[Any], id_of: Callable[[Any], str], render: Callable[[Any], Json]) -> Reply:
    low, high, default = PER_PAGE[call.operation]
    per_page = _query_int(call, "perPage", default, low, high)
    page = paginate(items, id_of, per_page=per_page, starting_after=call.query.get("startingAfter"),
                    ending_before=call.query.get("endingBefore"))
    url = f"{call.base_url}{call.path}"

    def link(rel: str, **cursor: str) -> str:
        return f"<{url}?{urlencode({'perPage': per_page, **cursor})}>; rel={rel}"

    links = [link("first", startingAfter=FIRST_TOKEN)]
    if page.has_prev and page.items:
        links.append(link("prev", endingBefore=id_of(page.items[0])))
    if page.has_next and page.items:
        links.append(link("next", startingAfter=id_of(page.items[-1])))
    links.append(link("last", endingBefore=LAST_TOKEN))
    return Reply(200, [render(i) for i in page.items], {"Link": ", ".join(links)})


def _wrap(handler: meraki_wireless.Handler) -> Callable[[Call], Reply]:
    def run(c: Call) -> Reply:
        status, body = handler(c.params, c.body, c.who)
        return Reply(status, body)
    return run


def _operations(state: MerakiState,
                new_keys: meraki_identities.NewKeys) -> dict[str, Callable[[Call], Reply]]:
    """operationId → handler; each is a thin mapping of a `Call` onto one `MerakiState` method."""

    def ok(body: Json, status: int = 200) -> Reply:
        return Reply(status, body)

    def inventory(c: Call) -> Reply:
        state.get_org(c.params["org"], c.who)  # 404 for an unknown org; the inventory itself is empty
        return Reply(200, [])

    def delete_user(c: Call) -> Reply:
        delete = c.query.get("delete", "false").lower() in ("true", "1")
        state.delete_auth_user(c.params["net"], c.params["user"], c.who, delete=delete)
        return Reply(204)

    ops: dict[str, Callable[[Call], Reply]] = {
        "getOrganizations": lambda c: _paged(
            c, state.list_orgs(c.who), lambda o: o.id, lambda o: o.to_json()),
        "getOrganization": lambda c: ok(state.get_org(c.params["org"], c.who)),
        "getOrganizationNetworks": lambda c: _paged(
            c, state.list_networks(c.params["org"], c.who), lambda n: n.id, state.network_json),
        "getOrganizationInventoryDevices": inventory,
        "getNetwork": lambda c: ok(state.get_network(c.params["net"], c.who)),
        "getNetworkMerakiAuthUsers": lambda c: ok(state.list_auth_users(c.params["net"], c.who)),
        "createNetworkMerakiAuthUser": lambda c: ok(
            state.create_auth_user(c.params["net"], c.body, c.who), 201),
        "getNetworkMerakiAuthUser": lambda c: ok(
            state.get_auth_user(c.params["net"], c.params["user"], c.who)),
        "updateNetworkMerakiAuthUser": lambda c: ok(
            state.update_auth_user(c.params["net"], c.params["user"], c.body, c.who)),
        "deleteNetworkMerakiAuthUser": delete_user,
    }
    for operation, handler in meraki_wireless.operations(state).items():
        ops[operation] = _wrap(handler)
    for operation, handler in meraki_identities.operations(state, new_keys).items():
        ops[operation] = _wrap(handler)
    missing = {r.operation for r in ROUTES} - set(ops)
    if missing:  # a route without a handler is a programming error, caught at construction
        raise SimulatorError(f"Meraki simulator: no handler for {sorted(missing)}")
    return ops


__all__ = ["MERAKI_DOMAINS", "ROUTES", "MerakiFrontend", "Reply", "Route", "is_meraki_host", "match_route"]
