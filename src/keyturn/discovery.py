"""Discovery: list the accounts on Meraki networks and IOS XE devices, propose records, apply the plan.

Two phases, so nothing changes by surprise:

1. **scan** (async, read-only): the targets' `Discovering.discover` through the admin credential —
   Meraki: ``GET /organizations`` → ``/organizations/{id}/networks`` → ``/networks/{id}/merakiAuthUsers``;
   IOS XE: the local user list (RESTCONF ``native/username``, or ``show running-config | include
   ^username`` over SSH). Targets come from the rotation engine's `TargetPool`, so requests are paced
   by the same budgets as rotation (the Meraki per-organisation budget). A resource that cannot be
   read (unreachable, refused, rate limited past the retries) becomes a row saying why; the others
   are still listed.
2. **plan** (sync, vault reads only): each account found is `managed` (a record's rotation profile
   already rotates it), `admin` (the credential discovery logged in with), `skip` (not rotatable, or
   the proposed title is taken) or `create`: a `pamUser` record with the login and **no password** —
   the first rotation sets one through the admin credential (reconcile path). Meraki networks
   without a `pamMerakiNetwork` record get one.

`apply_plan` writes every `create` row in ONE transaction (`vault.unit()`), each profile through
`set_profile`, so a proposal is validated exactly like `keyturn rotation set`; any error leaves the
vault as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from keyturn.engine.accounts import build_admin, build_endpoint, resource_kind
from keyturn.engine.profile import META_KEY, RotationProfile, set_profile
from keyturn.errors import ConfigError, KeyturnError, ProfileError
from keyturn.targets.base import AdminCredential, Discovering, Endpoint, FoundAccount
from keyturn.vault import Field

MERAKI_KIND = "meraki-auth-user"
IOSXE_KINDS = ("iosxe-restconf", "iosxe-ssh")
DEFAULT_IOSXE_KIND = "iosxe-restconf"
# Admin-record custom fields that say how to reach the Meraki API; copied onto new network records.
MERAKI_TRANSPORT = ("base_url", "proxy", "ca_bundle", "fingerprint", "insecure", "auth_header")
CONCURRENCY = 8
Hold = Callable[[str], contextlib.AbstractAsyncContextManager[None]]

# Row actions, in the order a person reads them.
CREATE, MANAGED, ADMIN, SKIP, UNREADABLE = "create", "managed", "admin", "skip", "unreadable"


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a plan: an account found (or a resource that could not be read, `UNREADABLE`)."""

    source: str                       # "org / network (id)" or the device record's title
    account: str = ""                 # login / e-mail ("" on an UNREADABLE row)
    privilege: int | None = None
    credential: str = ""              # "secret 9", "password 7", Meraki: the account type
    action: str = CREATE
    note: str = ""                    # why (managed by whom, why skipped, what failed)
    title: str = ""                   # the record to create (CREATE rows)
    resource: str = ""                # uid of its resource, or the title of a NewNetwork
    admin: str = ""                   # uid of the admin record for its profile
    target: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "account": self.account, "privilege": self.privilege,
                "credential": self.credential, "action": self.action, "note": self.note,
                "title": self.title or None, "target": self.target or None}


@dataclass(frozen=True, slots=True)
class NewNetwork:
    """A `pamMerakiNetwork` record the plan creates (a network with users to onboard and no record)."""

    title: str
    custom: tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Plan:
    kind: str                                        # "meraki" | "iosxe"
    rows: list[Row] = field(default_factory=list)
    networks: list[NewNetwork] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for r in self.rows if r.action == action)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "summary": {a: self.count(a) for a in (CREATE, MANAGED, ADMIN, SKIP,
                                                                           UNREADABLE)},
                "new_resources": [n.title for n in self.networks],
                "rows": [r.to_json() for r in self.rows]}


def credential_text(found: FoundAccount) -> str:
    return " ".join(part for part in (found.kind, found.type) if part)


def _text(record: Any, label: str) -> str | None:
    from keyturn.secret import Secret

    value = record.custom_value(label)
    if value is None or isinstance(value, Secret):
        return None
    return str(value).strip() or None


def _login(record: Any) -> str:
    return str(record.field("login") or record.field("email") or _text(record, "login") or "").strip()


def _taken_titles(vault: Any) -> set[str]:
    return {s.title.casefold() for s in vault.summaries()}


def _profiles(vault: Any) -> list[tuple[Any, RotationProfile]]:
    """(record, profile) for every record with a rotation profile."""
    out = []
    for record in vault.find():
        data = record.meta.get(META_KEY)
        if data is None:
            continue
        try:
            out.append((record, RotationProfile.from_meta(data)))
        except ProfileError:
            continue
    return out


def _managed_by(profiles: Iterable[tuple[Any, RotationProfile]], resource_uid: str) -> dict[str, str]:
    """login (case-folded) → title of the record whose profile rotates it on `resource_uid`."""
    return {_login(rec).casefold(): rec.title for rec, prof in profiles
            if prof.resource == resource_uid and _login(rec)}


# ---- Meraki -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NetworkScan:
    org_id: str
    org_name: str
    network_id: str
    network_name: str
    found: tuple[FoundAccount, ...] = ()
    error: str = ""                   # the network (or its organisation) could not be read

    @property
    def source(self) -> str:
        if not self.network_id:
            return f"{self.org_name} ({self.org_id})" if self.org_id else "Meraki API"
        return f"{self.org_name} / {self.network_name} ({self.network_id})"


def meraki_endpoint(admin_record: Any, base_url: str | None = None) -> Endpoint:
    """Where the API is, from the admin record's custom fields (`MERAKI_TRANSPORT`), `base_url` first."""
    values = {label: _text(admin_record, label) for label in MERAKI_TRANSPORT}
    url = base_url or values["base_url"]
    options = {k: v for k in ("proxy", "auth_header") if (v := values[k])}
    from urllib.parse import urlsplit

    return Endpoint(host=(urlsplit(url).hostname or "") if url else "api.meraki.com", base_url=url,
                    ca_bundle=values["ca_bundle"], fingerprint=values["fingerprint"],
                    insecure=(values["insecure"] or "").lower() in ("1", "true", "yes", "on"),
                    options=options)


async def scan_meraki(target: Any, endpoint: Endpoint, admin: AdminCredential, *, org: str | None = None,
                      network_filter: str | None = None, concurrency: int = CONCURRENCY) -> list[NetworkScan]:
    """Walk organisations → networks → auth users with `target` (a `MerakiAuthUserTarget`).

    `org` limits the walk to one organisation (id); `network_filter` keeps networks whose name or id
    contains it (case-insensitive). Failures are rows (`NetworkScan.error`), never an exception, except
    when the organisations cannot be listed at all (then the one row says why)."""
    if org:
        orgs = [{"id": org, "name": org}]
    else:
        try:
            orgs = await target.organizations(endpoint, admin)
        except KeyturnError as exc:
            return [NetworkScan("", "", "", "", error=f"listing the organisations: {exc}")]
    gate = asyncio.Semaphore(max(1, concurrency))
    wanted = (network_filter or "").casefold()

    async def one_network(org_id: str, org_name: str, net: Mapping[str, Any]) -> NetworkScan:
        net_id, net_name = str(net.get("id") or ""), str(net.get("name") or "")
        async with gate:
            try:
                found = await target.discover(replace(endpoint, network_id=net_id, org_id=org_id), admin)
            except KeyturnError as exc:
                return NetworkScan(org_id, org_name, net_id, net_name, error=str(exc))
        return NetworkScan(org_id, org_name, net_id, net_name, tuple(found))

    async def one_org(entry: Mapping[str, Any]) -> list[NetworkScan]:
        org_id, org_name = str(entry.get("id") or ""), str(entry.get("name") or entry.get("id") or "")
        async with gate:
            try:
                networks = await target.networks(endpoint, admin, org_id)
            except KeyturnError as exc:
                return [NetworkScan(org_id, org_name, "", "", error=f"listing the networks: {exc}")]
        chosen = [n for n in networks if n.get("id") and (
            not wanted or wanted in str(n.get("name") or "").casefold() or wanted in str(n["id"]).casefold())]
        return list(await asyncio.gather(*(one_network(org_id, org_name, n) for n in chosen)))

    per_org = await asyncio.gather(*(one_org(o) for o in orgs if o.get("id")))
    return [scan for scans in per_org for scan in scans]


def plan_meraki(vault: Any, scans: Sequence[NetworkScan], admin_record: Any, endpoint: Endpoint,
                verify_url: str | None = None) -> Plan:
    """Rows for every auth user found; a new network record for each network without one."""
    plan = Plan("meraki")
    taken = _taken_titles(vault)
    profiles = _profiles(vault)
    resources: dict[str, Any] = {}
    managed_on: dict[str, dict[str, str]] = {}   # network id → every record rotating a user there
    for record in [*vault.find(type="pamMerakiNetwork"), *vault.find(type="login")]:
        net = _text(record, "network_id")
        if net and record.meta.get(META_KEY) is None:
            resources.setdefault(net, record)
            managed_on.setdefault(net, {}).update(_managed_by(profiles, record.uid))
    transport = [(label, value) for label in MERAKI_TRANSPORT
                 if (value := _text(admin_record, label)) and label != "base_url"]
    if endpoint.base_url:
        transport.insert(0, ("base_url", endpoint.base_url))
    if verify_url:
        transport.append(("verify_url", verify_url))
    for scan in scans:
        if scan.error:
            plan.rows.append(Row(scan.source, action=UNREADABLE, note=scan.error))
            continue
        existing = resources.get(scan.network_id)
        managed = managed_on.get(scan.network_id, {})
        network_title = existing.title if existing is not None else f"meraki-{scan.network_id}"
        new_network: NewNetwork | None = None
        if existing is None and network_title.casefold() in taken:
            network_title = ""  # the title belongs to another record: nothing can be proposed here
        for found in scan.found:
            row = Row(scan.source, found.username, None, credential_text(found), target=MERAKI_KIND)
            title = f"{found.username} @ {scan.network_id}"
            key = found.username.casefold()
            if key in managed:
                plan.rows.append(replace(row, action=MANAGED, note=f"record {managed[key]}"))
            elif not found.rotatable:
                plan.rows.append(replace(row, action=SKIP, note=found.note))
            elif not network_title:
                plan.rows.append(replace(row, action=SKIP, note=f"title meraki-{scan.network_id} is taken by "
                                                                "a record that is not this network"))
            elif title.casefold() in taken:
                plan.rows.append(replace(row, action=SKIP, note=f"title {title!r} is taken"))
            else:
                if existing is None and new_network is None:
                    new_network = NewNetwork(network_title, (("network_id", scan.network_id),
                                                             ("org_id", scan.org_id), *transport))
                    plan.networks.append(new_network)
                    taken.add(network_title.casefold())
                taken.add(title.casefold())
                plan.rows.append(replace(row, title=title, admin=admin_record.uid,
                                         resource=existing.uid if existing is not None else network_title,
                                         note="new network record " + network_title if existing is None
                                         else f"network record {network_title}"))
    return plan


# ---- IOS XE -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Device:
    """A device to scan: its resource record, the admin credential to log in with, the target kind."""

    record: Any
    target: str = DEFAULT_IOSXE_KIND
    admin: Any | None = None          # the admin record (None: `problem` says why)
    problem: str = ""


def iosxe_devices(vault: Any, refs: Sequence[str], all_: bool, *, admin: str | None = None,
                  target: str | None = None) -> list[Device]:
    """The devices to scan with their admin record and target kind.

    Admin: `admin`, else the record itself for a Keeper-style login record with `host_endpoint`, else
    the admin most of the device's existing profiles use. Target: `target`, else the kind most of its
    profiles use, else iosxe-restconf."""
    if refs and all_:
        raise ConfigError("give device records or --all, not both")
    if not refs and not all_:
        raise ConfigError("nothing to discover: give device RECORD... or --all")
    if target is not None and target not in IOSXE_KINDS:
        raise ConfigError(f"--target must be one of {', '.join(IOSXE_KINDS)}, not {target!r}")
    if refs:
        records = [vault.get(ref) for ref in refs]
        for rec in records:
            try:
                kind = resource_kind(rec)
            except ProfileError as exc:
                raise ConfigError(str(exc)) from exc
            if kind != "iosxe":
                raise ConfigError(f"record {rec.title!r} is a {kind} resource; use `keyturn discover meraki`")
    else:
        records = [*vault.find(type="pamNetworkDevice"),
                   *(r for r in vault.find(type="login") if _text(r, "host_endpoint"))]
    forced = vault.get(admin) if admin else None
    profiles = _profiles(vault)
    devices = []
    for rec in records:
        used = [p for _r, p in profiles if p.resource == rec.uid]
        kinds = Counter(p.target for p in used if p.target in IOSXE_KINDS)
        kind = target or (kinds.most_common(1)[0][0] if kinds else DEFAULT_IOSXE_KIND)
        admins = Counter(p.admin for p in used if p.admin and p.target in IOSXE_KINDS)
        chosen = forced
        if chosen is None and rec.type == "login":
            chosen = rec
        if chosen is None and admins:
            chosen = vault.get(admins.most_common(1)[0][0])
        problem = "" if chosen is not None else ("no admin credential known for this device (no profile on "
                                                 "it names one): give --admin RECORD")
        devices.append(Device(rec, kind, chosen, problem))
    return devices


@dataclass(frozen=True, slots=True)
class DeviceScan:
    device: Device
    found: tuple[FoundAccount, ...] = ()
    error: str = ""


async def scan_iosxe(get_target: Callable[[str], Any], vault: Any, devices: Sequence[Device], *,
                     concurrency: int = CONCURRENCY, hold: Hold | None = None) -> list[DeviceScan]:
    """The local users of every device (one admin session each, `concurrency` at a time). `hold`
    takes the device's slot (resource uid) for the session, as a worker's rotation does
    (`keyturn.engine.shared_limits.DeviceSlots.hold`)."""
    gate = asyncio.Semaphore(max(1, concurrency))
    prepared: list[tuple[Device, Endpoint | None, AdminCredential | None, str]] = []
    for dev in devices:  # vault reads first, on this thread: the scans then only talk to devices
        if dev.admin is None:
            prepared.append((dev, None, None, dev.problem))
            continue
        try:
            endpoint = build_endpoint(dev.record, RotationProfile(target=dev.target))
            prepared.append((dev, endpoint, build_admin(vault, dev.admin), ""))
        except KeyturnError as exc:
            prepared.append((dev, None, None, str(exc)))

    async def one(dev: Device, endpoint: Endpoint | None, admin: AdminCredential | None,
                  problem: str) -> DeviceScan:
        if endpoint is None or admin is None:
            return DeviceScan(dev, error=problem)
        target = get_target(dev.target)
        if not isinstance(target, Discovering):
            return DeviceScan(dev, error=f"target {dev.target} cannot list accounts")
        async with gate:
            try:
                async with hold(dev.record.uid) if hold is not None else contextlib.nullcontext():
                    return DeviceScan(dev, tuple(await target.discover(endpoint, admin)))
            except KeyturnError as exc:
                return DeviceScan(dev, error=str(exc))

    return list(await asyncio.gather(*(one(*p) for p in prepared)))


def plan_iosxe(vault: Any, scans: Sequence[DeviceScan]) -> Plan:
    plan = Plan("iosxe")
    taken = _taken_titles(vault)
    profiles = _profiles(vault)
    for scan in scans:
        dev = scan.device
        if scan.error:
            plan.rows.append(Row(dev.record.title, action=UNREADABLE, note=scan.error, target=dev.target))
            continue
        managed = _managed_by(profiles, dev.record.uid)
        admin_login = _login(dev.admin).casefold() if dev.admin is not None else ""
        for found in scan.found:
            row = Row(dev.record.title, found.username, found.privilege, credential_text(found),
                      target=dev.target)
            key = found.username.casefold()
            title = f"{found.username} @ {dev.record.title}"
            if key in managed:
                plan.rows.append(replace(row, action=MANAGED, note=f"record {managed[key]}"))
            elif key == admin_login and dev.admin is not None:
                plan.rows.append(replace(row, action=ADMIN, note=f"the admin credential (record "
                                                                 f"{dev.admin.title})"))
            elif not found.rotatable:
                plan.rows.append(replace(row, action=SKIP, note=found.note))
            elif title.casefold() in taken:
                plan.rows.append(replace(row, action=SKIP, note=f"title {title!r} is taken"))
            else:
                taken.add(title.casefold())
                assert dev.admin is not None
                plan.rows.append(replace(row, title=title, resource=dev.record.uid, admin=dev.admin.uid,
                                         note="current secret unknown: the first rotation sets one "
                                              "through the admin"))
    return plan


# ---- apply --------------------------------------------------------------------------------------------


def apply_plan(vault: Any, plan: Plan, *, actor: str = "cli") -> list[str]:
    """Create the plan's new network records and one `pamUser` per CREATE row with its profile (via
    `set_profile`), all in one transaction. Returns the uids of the user records created."""
    created: list[str] = []
    with vault.unit():
        networks: dict[str, str] = {}
        for net in plan.networks:
            rec = vault.add(type="pamMerakiNetwork", title=net.title, actor=actor,
                            custom=[Field("text", label, [value]) for label, value in net.custom])
            networks[net.title] = rec.uid
        for row in plan.rows:
            if row.action != CREATE:
                continue
            rec = vault.add(type="pamUser", title=row.title, actor=actor,
                            fields=[Field("login", None, [row.account])])
            set_profile(vault, rec.uid, target=row.target, resource=networks.get(row.resource, row.resource),
                        admin=row.admin, actor=actor)
            created.append(rec.uid)
    return created


__all__ = [
    "ADMIN", "CREATE", "MANAGED", "SKIP", "UNREADABLE", "Device", "DeviceScan", "NetworkScan", "NewNetwork",
    "Plan", "Row", "apply_plan", "iosxe_devices", "meraki_endpoint", "plan_iosxe", "plan_meraki",
    "scan_iosxe", "scan_meraki",
]
