"""RESTCONF (RFC 8040) front-end of a simulated Cisco IOS XE device: one HTTPS listener per device.

Serves what a rotation client touches, with IOS XE 17.x behaviour (reference cisco-iosxe.md §1.5-2.6):

    GET  /.well-known/host-meta                          XRD pointing at /restconf
    GET  /restconf                                       API root
    GET  /restconf/data/ietf-restconf-monitoring:restconf-state/capabilities
    GET|PATCH|PUT|POST       /restconf/data/Cisco-IOS-XE-native:native          (hostname, enable, username)
    GET|PATCH|PUT|POST|DELETE .../native/username        the whole list
    GET|PATCH|PUT|DELETE      .../native/username=NAME   one entry (key percent-decoded)
    GET  .../native/aaa, .../native/login                the AAA / `login block-for` subtrees (204 if none)
    POST /restconf/operations/cisco-ia:save-config       running → startup, after `save_delay`

Every request needs HTTP Basic credentials of a privilege-15 user of the device's *running* config
(so a rotated password takes effect on the next request). Who checks them follows `ip http
authentication` and the AAA method list (`IosXeDevice.authenticate(service="http")`): with TACACS+
first a local user is refused, with the server unreachable the answer waits the TACACS+ timeout. With
`aaa new-model` and no `aaa authorization exec default local` nobody reaches privilege 15 (the
Programmability Configuration Guide's RESTCONF prerequisites), so every request is refused 401. In
`login block-for` quiet mode every connection is closed unanswered (the device's `sl_def_acl`).

A trailing slash is accepted everywhere. Data reads apply the `fields` query parameter (RFC 8040
§4.8.3: IOS XE advertises `...:capability:fields:1.0`, and the 17.1 guide's list of unsupported query
parameters — filter, start-time, stop-time, replay, action, reference cisco-iosxe.md §2.1 — leaves it
out); a selection that leaves nothing is 204, a malformed one 400 `invalid-value`. Other query
parameters are ignored. The answer is always JSON
(`application/yang-data+json`), whatever the `Accept` header asks for — the simulator has no XML
encoding; real ConfD would default to XML when `Accept` is absent, so clients should always send it.

Write semantics: PATCH merges (on `native` it creates a missing user, as the device does; on
`username=NAME` a missing entry is 404), PUT replaces (an entry without `privilege` drops back to 1),
POST creates one child (409 `data-exists` if present), DELETE removes (204/404). A request is
applied all-or-nothing through `IosXeDevice.atomic()`; IOS refusals become 400 `invalid-value`
"inconsistent value: Device refused one or more commands". Two overlapping writes on one device get
409 `lock-denied` (the config database is locked while a write or save-config runs); so does every
write while a save runs (save-config or `write memory` on the CLI) and for `device.sync_window` seconds
after a CLI change, while the datastore re-syncs (`cisco-ia.yang`: requests "may get rejected when
sync is in progress", reference §4). `request_latency` is added to every request (100-400 ms on
real access switches, reference §6).

Faults (`sim/faults.py`) are read on every request, in this order: `down` (connection closed at
once), `latency`, `reset_rate` (connection aborted), `timeout_rate` (never answered until `stop()`),
`error_rate` (503 `operation-failed`); for data writes `refuse_passwords` (next N credential writes
refused) and `drop_after_apply` (next N data writes applied, then the connection aborted unanswered).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import ssl as ssl_module
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal
from urllib.parse import quote, unquote

from aiohttp import web

from keyturn.errors import SimulatorError
from keyturn.sim import restconf_codec as codec
from keyturn.sim.faults import Faults
from keyturn.sim.iosxe_device import BOTH_ERROR, DeviceRefused, IosXeDevice, type7_decode
from keyturn.sim.restconf_errors import (
    DEVICE_REFUSED,
    KEYPATH_NOT_FOUND,
    ErrorsShape,
    RestconfError,
    error_body,
)

YANG_JSON = "application/yang-data+json"
DATA_ROOT = "/restconf/data"
NATIVE_PATH = f"{DATA_ROOT}/{codec.NATIVE_NODE}"
USERNAME_PATH = f"{NATIVE_PATH}/username"
OPERATIONS_ROOT = "/restconf/operations"
REALM = "restconf"

HOST_META = (
    b"<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n"
    b"    <Link rel='restconf' href='/restconf'/>\n"
    b"</XRD>\n"
)
ROOT_DOCUMENT = {
    "ietf-restconf:restconf": {"data": {}, "operations": {}, "yang-library-version": "2016-06-21"}
}
CAPABILITIES_DOCUMENT = {
    "ietf-restconf-monitoring:capabilities": {
        "capability": [
            "urn:ietf:params:restconf:capability:defaults:1.0?basic-mode=explicit",
            "urn:ietf:params:restconf:capability:depth:1.0",
            "urn:ietf:params:restconf:capability:fields:1.0",
            "urn:ietf:params:restconf:capability:with-defaults:1.0",
            "urn:ietf:params:restconf:capability:filter:1.0",
            "urn:ietf:params:restconf:capability:replay:1.0",
            "http://tail-f.com/ns/restconf/collection/1.0",
            "http://tail-f.com/ns/restconf/query-api/1.0",
        ]
    }
}

# Answers that never change, encoded once.
_ROOT_BODY = codec.dumps(ROOT_DOCUMENT)
_CAPABILITIES_BODY = codec.dumps(CAPABILITIES_DOCUMENT)
_SAVE_CONFIG_BODY = codec.dumps(codec.SAVE_CONFIG_OUTPUT)

Resource = Literal["host-meta", "root", "capabilities", "native", "username", "user", "save-config", "aaa",
                   "login"]

# The routing table: fixed paths, then which methods each resource answers.
_FIXED: dict[str, Resource] = {
    "/.well-known/host-meta": "host-meta",
    "/restconf": "root",
    f"{DATA_ROOT}/ietf-restconf-monitoring:restconf-state/capabilities": "capabilities",
    NATIVE_PATH: "native",
    USERNAME_PATH: "username",
    f"{NATIVE_PATH}/aaa": "aaa",
    f"{NATIVE_PATH}/login": "login",
    f"{OPERATIONS_ROOT}/cisco-ia:save-config": "save-config",
}
_READ = frozenset({"GET", "HEAD"})
_METHODS: dict[Resource, frozenset[str]] = {
    "host-meta": _READ,
    "root": _READ,
    "capabilities": _READ,
    "native": _READ | {"PATCH", "PUT", "POST"},
    "username": _READ | {"PATCH", "PUT", "POST", "DELETE"},
    "user": _READ | {"PATCH", "PUT", "DELETE"},
    "save-config": frozenset({"POST"}),
    "aaa": _READ,
    "login": _READ,
}

# Already-encoded credential values the device accepts, per (container, encryption).
_STORED_FORMATS: dict[tuple[str, str], re.Pattern[str]] = {
    ("password", "7"): re.compile(r"(?:0\d|1[0-5])(?:[0-9A-Fa-f]{2})+"),
    ("secret", "5"): re.compile(r"\$1\$[./0-9A-Za-z]{1,8}\$[./0-9A-Za-z]{22}"),
    ("secret", "8"): re.compile(r"\$8\$[./0-9A-Za-z]{14}\$[./0-9A-Za-z]{43}"),
    ("secret", "9"): re.compile(r"\$9\$[./0-9A-Za-z]{14}\$[./0-9A-Za-z]{43}"),
    ("secret", "4"): re.compile(r"[./0-9A-Za-z]{43}"),
}
_USERS_ERROR_PATH = f"/{codec.NATIVE_NODE}/username"
_Parsed = codec.NativeEdit | tuple[codec.UserEdit, ...]
_LOCKED = (
    "the configuration database is locked by session 18 yang_mgmt_infra tcp (system from 127.0.0.1) "
    "IOS-XE YANG Infrastructure"
)


class _Dropped(SimulatorError):
    """The connection was aborted on purpose (a fault): there is no answer to send."""


def route(raw_path: str) -> tuple[Resource, str | None]:
    """Map a raw (still percent-encoded) request path to a resource and list key."""
    path = raw_path[:-1] if len(raw_path) > 1 and raw_path.endswith("/") else raw_path
    fixed = _FIXED.get(path)
    if fixed is not None:
        return fixed, None
    prefix = USERNAME_PATH + "="
    if path.startswith(prefix):
        key = path[len(prefix):]
        if key and "/" not in key:
            return "user", unquote(key)
    if path.startswith(OPERATIONS_ROOT + "/"):
        raise RestconfError("malformed-message", "invalid path")
    raise RestconfError("invalid-value", KEYPATH_NOT_FOUND, status=404)


def fields_query(raw_query: str) -> codec.FieldsTree | None:
    """The parsed `fields` parameter of a raw query string, None if absent (`;` is not a separator
    here: RFC 8040 query parameters are `&`-separated and `fields` uses `;` itself)."""
    for part in raw_query.split("&") if raw_query else ():
        name, _, value = part.partition("=")
        if unquote(name) == "fields":
            return codec.parse_fields(unquote(value))
    return None


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` header, None if absent or malformed."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


# ---- RESTCONF edits → device calls -------------------------------------------------------------

def _apply_credential(
    device: IosXeDevice, name: str, cred: codec.CredentialEdit, privilege: int | None, create: bool
) -> None:
    if cred.value is None:
        raise DeviceRefused("% Incomplete command.")
    encryption = cred.encryption or "0"
    if encryption == "0":
        device.set_user(name, kind=cred.kind, clear=cred.value, privilege=privilege, create=create)
        return
    pattern = _STORED_FORMATS.get((cred.kind, encryption))
    if pattern is None or not pattern.fullmatch(cred.value):
        # Type 6 needs the device's master key, which a simulated device does not have.
        raise DeviceRefused(f"% Invalid encrypted {cred.kind}")
    if cred.kind == "password":
        try:
            clear = type7_decode(cred.value)
        except ValueError as exc:
            raise DeviceRefused("% Invalid encrypted password") from exc
        if any(not 0x20 <= ord(c) <= 0x7E for c in clear):
            raise DeviceRefused("% Invalid encrypted password")
    device.set_user(name, kind=cred.kind, stored=cred.value, encryption=encryption, privilege=privilege,
                    create=create)


def merge_user(device: IosXeDevice, edit: codec.UserEdit, *, create: bool) -> None:
    """`username NAME ...` with only the members sent (RFC 8040 merge)."""
    if edit.password is not None and edit.secret is not None:
        raise DeviceRefused(BOTH_ERROR)
    creds = edit.credentials
    if creds:
        _apply_credential(device, edit.name, creds[0], edit.privilege, create)
        if edit.view is not None:
            device.update_user(edit.name, view=edit.view, create=False)
    else:
        device.update_user(edit.name, privilege=edit.privilege, view=edit.view, create=create)


def replace_user(device: IosXeDevice, edit: codec.UserEdit) -> bool:
    """Make the entry exactly `edit` (absent members take their defaults); True if it was created."""
    existed = device.delete_user(edit.name)
    merge_user(device, edit, create=True)
    return not existed


def _apply_enable(device: IosXeDevice, cred: codec.CredentialEdit) -> None:
    if cred.value is None:
        raise DeviceRefused("% Incomplete command.")
    encryption = cred.encryption or "0"
    if encryption == "0":
        device.set_enable_secret(cred.value)
        return
    pattern = _STORED_FORMATS.get(("secret", encryption))
    if pattern is None or not pattern.fullmatch(cred.value):
        raise DeviceRefused("% Invalid encrypted secret")
    device.set_enable_secret_stored(cred.value, encryption)


def _merge_native(device: IosXeDevice, edit: codec.NativeEdit) -> None:
    if edit.hostname is not None:
        device.set_hostname(edit.hostname)
    if edit.enable_secret is not None:
        _apply_enable(device, edit.enable_secret)
    for user in edit.users or ():
        merge_user(device, user, create=True)


def _replace_native(device: IosXeDevice, edit: codec.NativeEdit) -> None:
    if edit.hostname is not None:
        device.set_hostname(edit.hostname)
    device.clear_enable_secret()
    if edit.enable_secret is not None:
        _apply_enable(device, edit.enable_secret)
    _replace_users(device, edit.users or ())


def _replace_users(device: IosXeDevice, users: tuple[codec.UserEdit, ...]) -> None:
    for name in list(device.running.users):
        device.delete_user(name)
    for user in users:
        merge_user(device, user, create=True)


def _credential_count(body: codec.NativeEdit | tuple[codec.UserEdit, ...]) -> int:
    if isinstance(body, codec.NativeEdit):
        enable = 0 if body.enable_secret is None else 1
        return enable + sum(len(u.credentials) for u in body.users or ())
    return sum(len(u.credentials) for u in body)


# ---- the HTTP front-end -------------------------------------------------------------------------

class RestconfFrontend:
    """One simulated device's RESTCONF server over HTTPS (plain HTTP if `ssl` is None).

    `errors_shape` picks the release's error body shape; `save_delay` is how long save-config takes
    (2.5-3.7 s on real devices); `non_priv15_status` is what a valid user below privilege 15 gets
    (401 or 403 — sources disagree). Counters `requests` and `writes` are for tests and the lab, as are
    `connections` (accepted; over TLS each one is a handshake) and `tls_resumed` (of those, abbreviated
    handshakes resuming an earlier session).
    """

    def __init__(
        self,
        device: IosXeDevice,
        faults: Faults,
        *,
        errors_shape: ErrorsShape = "ietf",
        save_delay: float = 0.0,
        non_priv15_status: int = 401,
        lock_conflicts: bool = True,
        request_latency: float = 0.0,
    ) -> None:
        if non_priv15_status not in (401, 403):
            raise SimulatorError("non_priv15_status must be 401 or 403")
        self.device = device
        self.faults = faults
        self.errors_shape: ErrorsShape = errors_shape
        self.save_delay = save_delay
        self.non_priv15_status = non_priv15_status
        self.lock_conflicts = lock_conflicts
        self.request_latency = request_latency
        self.requests = 0
        self.writes = 0
        self.connections = 0
        self.tls_resumed = 0
        self.port: int | None = None
        self._locked = False
        self._closing = asyncio.Event()
        self._runner: web.ServerRunner | None = None

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, ssl: ssl_module.SSLContext | None = None
    ) -> int:
        """Listen on `host:port` (0 = an ephemeral port) and return the bound port."""
        if self._runner is not None:
            raise SimulatorError(f"RESTCONF front-end of {self.device.name} is already running")
        self._closing = asyncio.Event()
        # Hung requests (timeout faults) are released by `stop()`, so shutdown need not wait long.
        runner = web.ServerRunner(_CountingServer(self, self._handle, access_log=None), shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, ssl_context=ssl)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise SimulatorError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        """Close the listener and every connection, releasing requests held by faults."""
        self._closing.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # ---- request pipeline ----------------------------------------------------------------------
    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self.requests += 1
        try:
            if self.device.refuse_in_quiet_mode():
                self._drop(request)
            if self.request_latency > 0 and await self._pause(self.request_latency):
                self._drop(request)
            await self._inject_faults(request)
            await self._authenticate(request)
            resource, key = route(request.rel_url.raw_path)
            if request.method not in _METHODS[resource]:
                allow = ", ".join(sorted(_METHODS[resource]))
                raise RestconfError("operation-not-supported", f"method {request.method} not allowed",
                                    error_type="protocol", headers={"Allow": allow})
            return await self._dispatch(request, resource, key)
        except RestconfError as err:
            return self._error(err)
        except _Dropped:
            # The transport is already aborted; aiohttp sees a vanished client and sends nothing.
            return web.Response(status=500)

    async def _inject_faults(self, request: web.BaseRequest) -> None:
        f = self.faults
        if f.down:
            self._drop(request)
        if f.latency > 0 and await self._pause(f.latency):
            self._drop(request)
        if f.roll(f.reset_rate):
            self._drop(request)
        if f.roll(f.timeout_rate):
            await self._closing.wait()
            self._drop(request)
        if f.roll(f.error_rate):
            raise RestconfError("operation-failed", "service temporarily unavailable", status=503)

    async def _pause(self, seconds: float) -> bool:
        """Wait `seconds`; True if the front-end is stopping meanwhile."""
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            return False
        return True

    @staticmethod
    def _drop(request: web.BaseRequest) -> None:
        if request.transport is not None:
            request.transport.abort()
        raise _Dropped("connection dropped by fault injection")

    async def _authenticate(self, request: web.BaseRequest) -> None:
        creds = basic_credentials(request.headers.get("Authorization"))
        user = None
        if creds:
            # An unreachable TACACS+ server first in the list is waited out before local is tried.
            delay = self.device.login_delay("http")
            if delay > 0 and await self._pause(delay):
                self._drop(request)
            user = self.device.authenticate(*creds, service="http")
        if user is None:
            raise RestconfError("access-denied", "access denied", error_type="protocol",
                                headers={"WWW-Authenticate": f'Basic realm="{REALM}"'})
        if self.device.exec_level(user) < 15:
            headers = {"WWW-Authenticate": f'Basic realm="{REALM}"'} if self.non_priv15_status == 401 else {}
            raise RestconfError("access-denied", "access denied: RESTCONF needs privilege level 15",
                                status=self.non_priv15_status, error_type="protocol", headers=headers)

    async def _dispatch(
        self, request: web.BaseRequest, resource: Resource, key: str | None
    ) -> web.StreamResponse:
        method = request.method
        if method in _READ:
            return self._read(resource, key, fields_query(request.rel_url.raw_query_string))
        if resource == "save-config":
            return await self._save_config()
        body = await self._body(request) if method != "DELETE" else None
        with self._write_lock():
            status, location = self._write(method, resource, key, body)
            self.writes += 1
            if self.faults.take("drop_after_apply"):
                self._drop(request)
        headers = {"Location": location} if location else None
        return web.Response(status=status, headers=headers)

    # ---- reads ---------------------------------------------------------------------------------
    def _read(self, resource: Resource, key: str | None,
              fields: codec.FieldsTree | None = None) -> web.Response:
        if resource == "host-meta":
            return web.Response(body=HOST_META, headers={"Content-Type": "application/xrd+xml"})
        if resource == "root":
            return self._encoded(200, _ROOT_BODY)
        if resource == "capabilities":
            return self._encoded(200, _CAPABILITIES_BODY)
        if resource == "native":
            # Only the selected members are rendered: a user's type-9 hash is computed on first read.
            return self._data(codec.native_document(self.device, only=fields), fields)
        if resource in ("aaa", "login"):
            aaa = self.device.running.aaa
            members = codec.aaa_members(aaa) if resource == "aaa" else codec.login_members(aaa)
            node = codec.AAA_NODE if resource == "aaa" else codec.LOGIN_NODE
            # Nothing configured under the node: "no content", as for an empty username list.
            return self._data({node: members}, fields) if members else web.Response(status=204)
        if resource == "username":
            users = list(self.device.running.users.values())
            # An empty list is "no content" on IOS XE, not an empty array.
            return self._data(codec.username_document(users), fields) if users else web.Response(status=204)
        assert key is not None
        user = self.device.user(key)
        if user is None:
            raise RestconfError("invalid-value", KEYPATH_NOT_FOUND, status=404)
        return self._data(codec.username_document([user]), fields)

    def _data(self, doc: dict[str, Any], fields: codec.FieldsTree | None) -> web.Response:
        """200 with `doc` (one top-level member), narrowed to `fields`; 204 if that leaves nothing."""
        if fields is None:
            return self._json(200, doc)
        ((node, value),) = doc.items()
        value = codec.select_fields(value, fields)
        if not value or (isinstance(value, list) and not any(value)):
            return web.Response(status=204)
        return self._json(200, {node: value})

    # ---- writes --------------------------------------------------------------------------------
    async def _body(self, request: web.BaseRequest) -> object:
        ctype = request.headers.get("Content-Type", YANG_JSON).split(";")[0].strip().lower()
        if ctype not in (YANG_JSON, "application/json"):
            raise RestconfError("invalid-value", f"unsupported media type {ctype}", status=415)
        try:
            return json.loads(await request.read())
        except (ValueError, UnicodeDecodeError) as exc:
            raise RestconfError("malformed-message", "invalid JSON in request body") from exc

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        # A save in progress and the re-sync after a CLI change answer like a held lock.
        if (self._locked and self.lock_conflicts) or self.device.write_blocked() is not None:
            raise RestconfError("lock-denied", _LOCKED, path=f"/{codec.NATIVE_NODE}")
        self._locked = True
        try:
            yield
        finally:
            self._locked = False

    def _write(
        self, method: str, resource: Resource, key: str | None, body: object
    ) -> tuple[int, str | None]:
        """Apply one data write; returns (status, Location) or raises RestconfError."""
        device = self.device
        if method == "DELETE":
            if resource == "user":
                assert key is not None
                if not device.delete_user(key):
                    raise RestconfError("invalid-value", KEYPATH_NOT_FOUND, status=404)
            else:
                _replace_users(device, ())
            return 204, None
        parsed = self._parse(resource, key, body, method)
        if _credential_count(parsed) and self.faults.take("refuse_passwords"):
            raise RestconfError("invalid-value", DEVICE_REFUSED, path=_USERS_ERROR_PATH)
        try:
            with device.atomic():
                return self._apply(method, resource, key, parsed)
        except DeviceRefused as exc:
            raise RestconfError("invalid-value", DEVICE_REFUSED, path=_USERS_ERROR_PATH) from exc

    def _parse(self, resource: Resource, key: str | None, body: object, method: str) -> _Parsed:
        if resource == "native" and method != "POST":
            return codec.parse_native(codec.top_member(body, codec.NATIVE_NODE))
        # POST carries the child (`username`), every other method the target resource itself.
        users = codec.parse_users(codec.top_member(body, codec.USERNAME_NODE))
        if resource == "user" and (len(users) != 1 or users[0].name != key):
            raise RestconfError("invalid-value", "the list key in the body does not match the key in the URI",
                                path=_USERS_ERROR_PATH)
        if method == "POST" and len(users) != 1:
            raise RestconfError("malformed-message", "POST creates exactly one list entry")
        return users

    def _apply(
        self, method: str, resource: Resource, key: str | None, parsed: _Parsed
    ) -> tuple[int, str | None]:
        device = self.device
        if isinstance(parsed, codec.NativeEdit):
            (_merge_native if method == "PATCH" else _replace_native)(device, parsed)
            return 204, None
        if method == "POST":
            (user,) = parsed
            if device.user(user.name) is not None:
                raise RestconfError("data-exists", "object already exists",
                                    path=f"/{codec.NATIVE_NODE}/username[name='{user.name}']")
            merge_user(device, user, create=True)
            return 201, f"{USERNAME_PATH}={_quote(user.name)}"
        if resource == "username":
            if method == "PATCH":
                for user in parsed:
                    merge_user(device, user, create=True)
            else:
                _replace_users(device, parsed)
            return 204, None
        (user,) = parsed
        if method == "PATCH":
            if device.user(user.name) is None:
                # RFC 8040 §4.6.1: a plain PATCH never creates its target resource.
                raise RestconfError("invalid-value", KEYPATH_NOT_FOUND, status=404)
            merge_user(device, user, create=False)
            return 204, None
        return (201 if replace_user(device, user) else 204), None

    async def _save_config(self) -> web.Response:
        with self._write_lock():
            token = self.device.begin_save(self.save_delay)
            try:
                if self.save_delay > 0 and await self._pause(self.save_delay):
                    raise RestconfError("operation-failed", "save interrupted by shutdown", status=500)
                self.device.save()
            finally:
                self.device.end_save(token)
        return self._encoded(200, _SAVE_CONFIG_BODY)

    # ---- answers -------------------------------------------------------------------------------
    @staticmethod
    def _json(status: int, doc: dict[str, Any]) -> web.Response:
        return web.Response(status=status, body=codec.dumps(doc), headers={"Content-Type": YANG_JSON})

    @staticmethod
    def _encoded(status: int, body: bytes) -> web.Response:
        return web.Response(status=status, body=body, headers={"Content-Type": YANG_JSON})

    def _error(self, err: RestconfError) -> web.Response:
        resp = self._json(err.status, error_body(err, self.errors_shape))
        resp.headers.update(err.headers)
        return resp


class _CountingServer(web.Server):
    """aiohttp's low-level server, counting accepted connections and resumed TLS sessions."""

    def __init__(self, frontend: RestconfFrontend, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._frontend = frontend

    def connection_made(self, handler: Any, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._frontend.connections += 1
        # asyncio reports a TLS connection only once its handshake is done.
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.session_reused:
            self._frontend.tls_resumed += 1


def _quote(key: str) -> str:
    return quote(key, safe="")
