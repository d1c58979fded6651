"""IOS XE discovery: each device's local users through its admin credential, then the plan.

The admin is the one given, else the record itself for a Keeper-style login record with
`host_endpoint`, else the admin most of the device's profiles use; the target likewise (default
iosxe-restconf). Proposed users get no password: the first rotation sets one through the admin.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from keyturn.discovery.plan import (
    ADMIN,
    CONCURRENCY,
    MANAGED,
    SKIP,
    UNREADABLE,
    Plan,
    Row,
    credential_text,
    login_of,
    managed_by,
    profiled_records,
    taken_titles,
    text_field,
)
from keyturn.engine.accounts import build_admin, build_endpoint, resource_kind
from keyturn.engine.profile import RotationProfile
from keyturn.errors import ConfigError, KeyturnError, ProfileError
from keyturn.targets.base import AdminCredential, Discovering, Endpoint, FoundAccount

IOSXE_KINDS = ("iosxe-restconf", "iosxe-ssh")
DEFAULT_IOSXE_KIND = "iosxe-restconf"
Hold = Callable[[str], contextlib.AbstractAsyncContextManager[None]]


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
                   *(r for r in vault.find(type="login") if text_field(r, "host_endpoint"))]
    forced = vault.get(admin) if admin else None
    profiles = profiled_records(vault)
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
    taken = taken_titles(vault)
    profiles = profiled_records(vault)
    for scan in scans:
        dev = scan.device
        if scan.error:
            plan.rows.append(Row(dev.record.title, action=UNREADABLE, note=scan.error, target=dev.target))
            continue
        managed = managed_by(profiles, dev.record.uid)
        admin_login = login_of(dev.admin).casefold() if dev.admin is not None else ""
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
