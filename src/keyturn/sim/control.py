"""The lab control API: JSON over HTTP on loopback (aiohttp), a thin shell over `Lab`'s operations.

    GET  /devices        IOS XE devices: name, host, ports, fault switches, unsaved_changes, profile
    GET  /devices/NAME/profile   the device's realism profile (`sim.iosxe_profile`) and its fingerprints
    POST /devices/NAME/profile   {"aaa": "tacacs-first", "max_fail": 3, ...} → the new profile; changes
                         the configuration lines in running and startup config (as if configured and
                         saved) and the front-ends' delays at once; `cert`/`ssh_profile` are start-time
                         switches (400); an unknown switch or bad value → 400 naming it
    POST /profile        {switch: value, ...} → the same change on every device (all or nothing)
    GET  /meraki/orgs    orgs: id, name, networks, fault switches
    GET  /meraki/api-keys  {"propagation": s, "identities": [{"name", "email", "keys": [{"suffix",
                         "createdAt", "usable"}]}]} — suffixes only, never a key
    POST /meraki/api-keys  {"propagation": s} → the same after setting the delay during which a new
                         API key answers 401 (Meraki: "up to five minutes to propagate")
    GET  /stats          per device change/save/reboot/auth-failure counts, RESTCONF `restconf_requests`,
                         `restconf_connections` (accepted: TLS handshakes) and `restconf_tls_resumed`
                         (of those, resumed sessions), and login safety:
                         `failed_logins` (every refused SSH/RESTCONF authentication this run),
                         `failed_logins_by_user` {name: n}, `lockouts` (lock events), `locked_users`,
                         `quiet_mode_entries`, `quiet_mode_refusals` (connections closed), `quiet_mode`;
                         per org request, 429 (`rate_limited` bucket, `storm_limited` fault, `throttled`
                         both) and fault counts
    POST /faults         {"kind": "iosxe", "device": NAME, "faults": {...}}
                         | {"kind": "meraki", "org": ID, "faults": {...}}
                         → the new switch snapshot; an unknown switch → 400 naming it
    POST /reset          {"faults_only": false} → clear all faults, restore initial credentials + counters
    POST /reboot         {"device": NAME} → reload startup-config (unsaved changes are lost)
    POST /drift          {"kind": "iosxe", "device", "username", "password", "save": true}
                         | {"kind": "meraki", "network", "email", "password"} → out-of-band change
    POST /verify         {"kind": "iosxe", "device", "username", "password"}
                         | {"kind": "meraki", "network", "email", "password"} → {"ok": true|false}
                         IOS XE: checks the device's LOCAL user store whatever its AAA profile, ignores
                         lockouts and quiet mode, never counts as a login; adds "locked": true|false

Errors are `{"error": "<one line>"}` with 400 (bad body, unknown switch) or 404 (unknown device,
org or network). Bodies carry lab passwords (simulator test data): they are never logged, and the
aiohttp access log is off.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from aiohttp import web

from keyturn.errors import SimulatorError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Lab(Protocol):
    """The operations this API serves (`keyturn.sim.lab.Lab` has them). A Protocol, not an import of
    the lab: the lab starts this server, so importing it back would make the two one module split."""

    def has_device(self, name: str) -> bool: ...
    def has_org(self, org_id: str) -> bool: ...
    def has_network(self, network_id: str) -> bool: ...
    def devices_info(self) -> list[dict[str, Any]]: ...
    def meraki_info(self) -> list[dict[str, Any]]: ...
    def api_keys(self, propagation: float | None = None) -> dict[str, Any]: ...
    def stats(self) -> dict[str, Any]: ...
    def set_faults(self, kind: str, ident: str, switches: Mapping[str, Any]) -> dict[str, Any]: ...
    def profile(self, name: str) -> dict[str, Any]: ...
    def set_profile(self, name: str, changes: Mapping[str, Any]) -> dict[str, Any]: ...
    def set_profile_all(self, changes: Mapping[str, Any]) -> list[dict[str, Any]]: ...
    def reset(self, *, faults_only: bool = False) -> None: ...
    def reboot(self, name: str) -> None: ...
    def drift_iosxe(self, name: str, username: str, password: str, *, save: bool = True) -> None: ...
    def drift_meraki(self, network_id: str, email: str, password: str) -> None: ...
    def verify_iosxe(self, name: str, username: str, password: str) -> tuple[bool, bool]: ...
    def verify_meraki(self, network_id: str, email: str, password: str) -> bool: ...


class _NotFound(Exception):
    """Internal: becomes a 404 at the handler boundary."""


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = json.loads(await request.read())
    except ValueError:
        raise SimulatorError("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise SimulatorError("body must be a JSON object")
    return data


def _str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise SimulatorError(f"missing or non-string field {key!r}")
    return value


def make_app(lab: Lab) -> web.Application:
    """The control application for `lab`."""

    def need_device(body: dict[str, Any]) -> str:
        name = _str(body, "device")
        if not lab.has_device(name):
            raise _NotFound(f"no IOS XE device {name!r}")
        return name

    def need_network(body: dict[str, Any]) -> str:
        network = _str(body, "network")
        if not lab.has_network(network):
            raise _NotFound(f"no Meraki network {network!r}")
        return network

    def kind_of(body: dict[str, Any]) -> str:
        kind = body.get("kind", "iosxe")
        if kind not in ("iosxe", "meraki"):
            raise SimulatorError(f"unknown kind {kind!r}; use 'iosxe' or 'meraki'")
        return str(kind)

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except _NotFound as exc:
            return _error(404, str(exc))
        except SimulatorError as exc:
            return _error(400, str(exc))

    async def devices(request: web.Request) -> web.Response:
        return web.json_response(lab.devices_info())

    async def orgs(request: web.Request) -> web.Response:
        return web.json_response(lab.meraki_info())

    async def api_keys(request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.json_response(lab.api_keys())
        delay = (await _body(request)).get("propagation")
        if not isinstance(delay, int | float) or isinstance(delay, bool):
            raise SimulatorError("field 'propagation' must be a number of seconds")
        return web.json_response(lab.api_keys(float(delay)))

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(lab.stats())

    async def faults(request: web.Request) -> web.Response:
        body = await _body(request)
        switches = body.get("faults")
        if not isinstance(switches, dict):
            raise SimulatorError("field 'faults' must be an object of switch: value")
        if kind_of(body) == "iosxe":
            ident = need_device(body)
            return web.json_response(lab.set_faults("iosxe", ident, switches))
        org = _str(body, "org")
        if not lab.has_org(org):
            raise _NotFound(f"no Meraki organisation {org!r}")
        return web.json_response(lab.set_faults("meraki", org, switches))

    async def device_profile(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not lab.has_device(name):
            raise _NotFound(f"no IOS XE device {name!r}")
        if request.method == "GET":
            return web.json_response(lab.profile(name))
        return web.json_response(lab.set_profile(name, await _body(request)))

    async def lab_profile(request: web.Request) -> web.Response:
        return web.json_response(lab.set_profile_all(await _body(request)))

    async def reset(request: web.Request) -> web.Response:
        body = await _body(request)
        faults_only = bool(body.get("faults_only", False))
        lab.reset(faults_only=faults_only)
        return web.json_response({"ok": True, "faults_only": faults_only})

    async def reboot(request: web.Request) -> web.Response:
        name = need_device(await _body(request))
        lab.reboot(name)
        return web.json_response({"ok": True, "device": name})

    async def drift(request: web.Request) -> web.Response:
        body = await _body(request)
        if kind_of(body) == "iosxe":
            name = need_device(body)
            lab.drift_iosxe(name, _str(body, "username"), _str(body, "password"),
                            save=bool(body.get("save", True)))
            return web.json_response({"ok": True, "device": name})
        network = need_network(body)
        lab.drift_meraki(network, _str(body, "email"), _str(body, "password"))
        return web.json_response({"ok": True, "network": network})

    async def verify(request: web.Request) -> web.Response:
        body = await _body(request)
        if kind_of(body) == "iosxe":
            ok, locked = lab.verify_iosxe(need_device(body), _str(body, "username"), _str(body, "password"))
            return web.json_response({"ok": ok, "locked": locked})
        ok = lab.verify_meraki(need_network(body), _str(body, "email"), _str(body, "password"))
        return web.json_response({"ok": ok})

    app = web.Application(middlewares=[errors])
    app.router.add_get("/devices", devices)
    app.router.add_get("/meraki/orgs", orgs)
    app.router.add_get("/meraki/api-keys", api_keys)
    app.router.add_post("/meraki/api-keys", api_keys)
    app.router.add_get("/stats", stats)
    app.router.add_post("/faults", faults)
    app.router.add_get("/devices/{name}/profile", device_profile)
    app.router.add_post("/devices/{name}/profile", device_profile)
    app.router.add_post("/profile", lab_profile)
    app.router.add_post("/reset", reset)
    app.router.add_post("/reboot", reboot)
    app.router.add_post("/drift", drift)
    app.router.add_post("/verify", verify)
    return app


class ControlServer:
    """Runs `make_app(lab)` on a loopback port; `start` returns the bound port."""

    def __init__(self, lab: Lab) -> None:
        self._runner = web.AppRunner(make_app(lab), access_log=None)

    async def start(self, host: str, port: int = 0) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        return int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        await self._runner.cleanup()
