"""The lab's state file and a typed client for its control API (what tests, the demo and bench use).

The state file (JSON, written by `keyturn sim lab|iosxe|meraki --state-file F`) is a contract:

    {"control_url": "http://127.0.0.1:P", "ca_cert": "/abs/ca.pem", "pid": 123, "seed": 7, ...,
     "iosxe": [{"name": "sw0001", "host": "127.0.0.1", "restconf_port": P, "ssh_port": P,
                "admin": {"username": "...", "password": "..."}, "enable_secret": "...",
                "users": [{"username": "...", "password": "...", "privilege": 15, "kind": "secret",
                           "encryption": "9"}],
                "profile": {"aaa": "local", "max_fail": null, "block_for": null, "exec_authorization": true,
                            "password_encryption": false, "omit_privilege_1": false, "tacacs_timeout": 2.0,
                            "tacacs_users": ["admin"], "save_delay": 0.2, "sync_window": 0.05,
                            "latency": {"restconf": 0, "save_config": 0, "ssh_login": 0, "write_memory": 0},
                            "cert": "lab-ca", "cert_fingerprint": "<sha-256 hex of the DER>",
                            "ssh_profile": "default", "ssh_host_key_fingerprint": "SHA256:...",
                            "role": "tacacs-first"}}],
     "meraki": {"base_url": "http://127.0.0.1:P/api/v1", "proxy_url": "http://127.0.0.1:P",
                "api_key": "<40 hex>", "orgs": [{"id": "...", "name": "...", "networks": [
                    {"id": "N_...", "name": "...", "users": [{"email": "...", "password": "...",
                                                           "accountType": "Client VPN"}],
                     "ssids": [{"number": 1, "name": "...", "auth_mode": "psk", "psk": "...", "ipsks": [
                         {"name": "...", "group_policy_id": "101", "passphrase": "..."}]}]}]}]}}

`restconf_port`/`ssh_port` are null when that listener is disabled; `meraki` is null without orgs.
A user's `encryption` is how the device stores it ("9", "7" for `password` users, "5" for legacy md5
users). `profile` is the device's realism switches (`sim.iosxe_profile.DeviceProfile`) plus what a client
pins: the RESTCONF certificate's SHA-256 fingerprint (lower-case hex of the DER) and the SSH host key's
`SHA256:` fingerprint; `role` names the `--profile enterprise` role. `tacacs_users` are the names the
device's TACACS+ server knows (with their initial passwords: the admin's).
Passwords in it are the *initial* ones; after that the control API (`verify`) is the truth. They are
simulator test data, yet kept out of `repr` so a failing assertion does not print them.

`ControlClient` is async because in-process tests share the loop with the lab; every call returns
parsed JSON and raises `SimulatorError` (one line, no password) on a non-2xx answer.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from keyturn.errors import SimulatorError


@dataclass
class Login:
    username: str
    password: str = field(repr=False)


@dataclass
class IosXeUser:
    username: str
    password: str = field(repr=False)
    privilege: int = 15
    kind: Literal["secret", "password"] = "secret"
    encryption: str | None = None     # "5" for a legacy md5-crypt secret; None: the kind's default


@dataclass
class IosXeEntry:
    name: str
    host: str
    restconf_port: int | None
    ssh_port: int | None
    admin: Login
    enable_secret: str = field(repr=False)
    users: list[IosXeUser] = field(default_factory=list)
    ca_cert: str | None = None    # the device's own CA when the lab runs with tls="self-signed"
    profile: dict[str, Any] = field(default_factory=dict)   # realism switches + fingerprints (above)

    @property
    def restconf_url(self) -> str:
        """Base URL of the RESTCONF root (`https://host:port/restconf`)."""
        return f"https://{self.host}:{self.restconf_port}/restconf"


@dataclass
class MerakiUser:
    email: str
    password: str = field(repr=False)
    account_type: str = "Client VPN"
    name: str | None = None


@dataclass
class MerakiIpsk:
    name: str
    group_policy_id: str
    passphrase: str = field(repr=False)


@dataclass
class MerakiSsid:
    """A configured SSID of a lab network; `psk` for PSK mode, `ipsks` for identity PSK mode."""

    number: int
    name: str
    auth_mode: str
    psk: str | None = field(default=None, repr=False)
    ipsks: list[MerakiIpsk] = field(default_factory=list)


@dataclass
class MerakiNetwork:
    id: str
    name: str
    users: list[MerakiUser] = field(default_factory=list)
    ssids: list[MerakiSsid] = field(default_factory=list)


@dataclass
class MerakiOrg:
    id: str
    name: str
    networks: list[MerakiNetwork] = field(default_factory=list)


@dataclass
class MerakiEntry:
    base_url: str
    proxy_url: str | None
    api_key: str = field(repr=False)
    orgs: list[MerakiOrg] = field(default_factory=list)

    def network(self, network_id: str) -> MerakiNetwork:
        for org in self.orgs:
            for net in org.networks:
                if net.id == network_id:
                    return net
        raise SimulatorError(f"no Meraki network {network_id!r} in the lab state")


@dataclass
class LabState:
    """A parsed state file. `extra` keeps every key not modelled here (pid, seed, fingerprints, ...)."""

    control_url: str
    ca_cert: str
    iosxe: list[IosXeEntry] = field(default_factory=list)
    meraki: MerakiEntry | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def device(self, name: str) -> IosXeEntry:
        for entry in self.iosxe:
            if entry.name == name:
                return entry
        raise SimulatorError(f"no IOS XE device {name!r} in the lab state")

    # ---- JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        meraki = None
        if self.meraki is not None:
            meraki = asdict(self.meraki)
            for org in meraki["orgs"]:
                for net in org["networks"]:
                    for user in net["users"]:
                        user["accountType"] = user.pop("account_type")
        return {
            **self.extra,
            "control_url": self.control_url,
            "ca_cert": self.ca_cert,
            "iosxe": [asdict(d) for d in self.iosxe],
            "meraki": meraki,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabState:
        try:
            iosxe = [
                IosXeEntry(
                    name=d["name"], host=d["host"], restconf_port=d.get("restconf_port"),
                    ssh_port=d.get("ssh_port"), admin=Login(**d["admin"]), enable_secret=d["enable_secret"],
                    users=[IosXeUser(**u) for u in d.get("users", [])], ca_cert=d.get("ca_cert"),
                    profile=dict(d.get("profile") or {}),
                )
                for d in data.get("iosxe", [])
            ]
            meraki = None
            if data.get("meraki"):
                m = data["meraki"]
                meraki = MerakiEntry(
                    base_url=m["base_url"], proxy_url=m.get("proxy_url"), api_key=m["api_key"],
                    orgs=[
                        MerakiOrg(id=o["id"], name=o["name"], networks=[
                            MerakiNetwork(id=n["id"], name=n["name"], users=[
                                MerakiUser(email=u["email"], password=u["password"], name=u.get("name"),
                                           account_type=u.get("accountType", "Client VPN"))
                                for u in n.get("users", [])
                            ], ssids=[
                                MerakiSsid(number=w["number"], name=w["name"], auth_mode=w["auth_mode"],
                                           psk=w.get("psk"),
                                           ipsks=[MerakiIpsk(**i) for i in w.get("ipsks", [])])
                                for w in n.get("ssids", [])
                            ])
                            for n in o.get("networks", [])
                        ])
                        for o in m.get("orgs", [])
                    ],
                )
            known = {"control_url", "ca_cert", "iosxe", "meraki"}
            return cls(control_url=data["control_url"], ca_cert=data["ca_cert"], iosxe=iosxe, meraki=meraki,
                       extra={k: v for k, v in data.items() if k not in known})
        except (KeyError, TypeError) as exc:
            raise SimulatorError(f"malformed lab state: missing or bad key {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> LabState:
        """Parse a state file; raises `SimulatorError` if it is missing or malformed."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SimulatorError(f"cannot read lab state {path}: {exc.__class__.__name__}") from exc
        return cls.from_dict(data)

    @classmethod
    def wait_for(cls, path: str | Path, timeout: float = 60.0, *, poll: float = 0.05) -> LabState:
        """Poll until a lab writes `path` (it does so only once every listener is up), then load it.

        For a lab running in another process; raises `SimulatorError` after `timeout` seconds. Async
        callers: `await asyncio.to_thread(LabState.wait_for, path)`.
        """
        deadline = time.monotonic() + timeout
        while not Path(path).exists():
            if time.monotonic() > deadline:
                raise SimulatorError(f"lab state {path} did not appear within {timeout:g} s")
            time.sleep(poll)
        return cls.load(path)

    def write(self, path: str | Path) -> Path:
        """Write atomically (temp file + rename) with mode 0600: the file holds lab passwords."""
        target = Path(path).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=1)
            fh.write("\n")
        os.replace(tmp, target)
        return target


class ControlClient:
    """Async client for the lab control API. Use as `async with ControlClient(url) as c: ...`."""

    def __init__(self, control_url: str, *, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(base_url=control_url, timeout=timeout, transport=transport)

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            resp = await self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise SimulatorError(f"control API {method} {path}: {exc.__class__.__name__}") from exc
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("error", resp.reason_phrase)
            except ValueError:
                detail = resp.reason_phrase
            raise SimulatorError(f"control API {method} {path}: {resp.status_code} {detail}")
        return resp.json()

    # ---- reads -----------------------------------------------------------------------------------
    async def devices(self) -> list[dict[str, Any]]:
        return list(await self._call("GET", "/devices"))

    async def meraki_orgs(self) -> list[dict[str, Any]]:
        return list(await self._call("GET", "/meraki/orgs"))

    async def api_keys(self, *, propagation: float | None = None) -> dict[str, Any]:
        """The Meraki identities' API keys (suffixes); `propagation` sets the new-key delay first."""
        if propagation is None:
            result: dict[str, Any] = await self._call("GET", "/meraki/api-keys")
        else:
            result = await self._call("POST", "/meraki/api-keys", {"propagation": propagation})
        return result

    async def stats(self) -> dict[str, Any]:
        return dict(await self._call("GET", "/stats"))

    # ---- checks and actions ----------------------------------------------------------------------
    async def verify_iosxe(self, device: str, username: str, password: str) -> bool:
        """True if the device's local user store (running config) holds `password` for `username`.

        Whatever the device's AAA profile (a TACACS+-first device refuses that login, yet this says
        True), lockouts and quiet mode; it never counts as a failed login."""
        return bool((await self.verify_iosxe_detail(device, username, password))["ok"])

    async def verify_iosxe_detail(self, device: str, username: str, password: str) -> dict[str, bool]:
        """`{"ok": stored, "locked": the local user is locked out now}` (see `verify_iosxe`)."""
        body = {"kind": "iosxe", "device": device, "username": username, "password": password}
        answer = await self._call("POST", "/verify", body)
        return {"ok": bool(answer["ok"]), "locked": bool(answer.get("locked", False))}

    async def verify_meraki(self, network: str, email: str, password: str) -> bool:
        body = {"kind": "meraki", "network": network, "email": email, "password": password}
        return bool((await self._call("POST", "/verify", body))["ok"])

    async def set_faults(self, target: str, faults: dict[str, Any], *,
                         kind: Literal["iosxe", "meraki"] = "iosxe") -> dict[str, Any]:
        """Set fault switches on a device (`kind="iosxe"`) or an org; returns the new snapshot."""
        key = "device" if kind == "iosxe" else "org"
        return dict(await self._call("POST", "/faults", {"kind": kind, key: target, "faults": faults}))

    async def reboot(self, device: str) -> dict[str, Any]:
        return dict(await self._call("POST", "/reboot", {"device": device}))

    async def drift_iosxe(self, device: str, username: str, password: str) -> dict[str, Any]:
        """Change a device password out of band (as a person at the console would, saved)."""
        body = {"kind": "iosxe", "device": device, "username": username, "password": password}
        return dict(await self._call("POST", "/drift", body))

    async def drift_meraki(self, network: str, email: str, password: str) -> dict[str, Any]:
        body = {"kind": "meraki", "network": network, "email": email, "password": password}
        return dict(await self._call("POST", "/drift", body))

    async def drift(self, body: dict[str, Any]) -> dict[str, Any]:
        """Raw `POST /drift` (see `drift_iosxe`/`drift_meraki`)."""
        return dict(await self._call("POST", "/drift", body))

    async def profile(self, device: str) -> dict[str, Any]:
        """The device's profile (`GET /devices/NAME/profile`)."""
        return dict(await self._call("GET", f"/devices/{device}/profile"))

    async def set_profile(self, device: str | None, switches: dict[str, Any]) -> Any:
        """Change profile switches of one device, or of every device with `device=None`; returns the new
        profile (a list of them for the whole lab)."""
        path = "/profile" if device is None else f"/devices/{device}/profile"
        return await self._call("POST", path, switches)

    async def reset(self, *, faults_only: bool = False) -> dict[str, Any]:
        """Clear every fault switch and (unless `faults_only`) restore the initial credentials/counters."""
        return dict(await self._call("POST", "/reset", {"faults_only": faults_only}))
