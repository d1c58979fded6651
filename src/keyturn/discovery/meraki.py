"""Meraki discovery: organisations → networks → auth users, then the plan for them.

`scan_meraki` walks ``GET /organizations`` → ``/organizations/{id}/networks`` (every page) →
``/networks/{id}/merakiAuthUsers`` with the `meraki-auth-user` target, so every request takes a token
from the per-organisation budget a rotation uses. `plan_meraki` proposes a `pamMerakiNetwork` record
per network that has none and a `pamUser` per auth user no profile rotates yet, (`plan_api_key`,
asked with ``api_key=True``) a `meraki-api-key` profile on the API-key record itself, and
(`scan_wireless` + `plan_wireless`, ``--wireless``) a record per PSK SSID (`meraki-ssid-psk`) and per
identity PSK family (`meraki-ipsk`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from keyturn.discovery.plan import (
    CONCURRENCY,
    MANAGED,
    SKIP,
    UNREADABLE,
    NewNetwork,
    Plan,
    Row,
    credential_text,
    login_of,
    managed_by,
    profiled_records,
    taken_titles,
    text_field,
)
from keyturn.engine.profile import META_KEY
from keyturn.errors import KeyturnError
from keyturn.targets.base import AdminCredential, Endpoint, FoundAccount

MERAKI_KIND = "meraki-auth-user"
# Admin-record custom fields that say how to reach the Meraki API; copied onto new network records.
MERAKI_TRANSPORT = ("base_url", "proxy", "ca_bundle", "fingerprint", "insecure", "auth_header")


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
    values = {label: text_field(admin_record, label) for label in MERAKI_TRANSPORT}
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
                verify_url: str | None = None, *, api_key: bool = False,
                wireless: Sequence[WirelessScan] = ()) -> Plan:
    """Rows for every auth user found; a new network record for each network without one."""
    plan = Plan("meraki")
    taken = taken_titles(vault)
    profiles = profiled_records(vault)
    resources: dict[str, Any] = {}
    managed_on: dict[str, dict[str, str]] = {}   # network id → every record rotating a user there
    for record in [*vault.find(type="pamMerakiNetwork"), *vault.find(type="login")]:
        net = text_field(record, "network_id")
        if net and record.meta.get(META_KEY) is None:
            resources.setdefault(net, record)
            managed_on.setdefault(net, {}).update(managed_by(profiles, record.uid))
    transport = [(label, value) for label in MERAKI_TRANSPORT
                 if (value := text_field(admin_record, label)) and label != "base_url"]
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
    if api_key:
        plan_api_key(plan, admin_record, profiles, resources, scans)
    if wireless:
        plan_wireless(plan, wireless, admin_record, profiles, resources, transport, taken)
    return plan


KEY_ROTATION_KIND = "meraki-api-key"


def plan_api_key(plan: Plan, admin_record: Any, profiles: Sequence[tuple[Any, Any]],
                 resources: Mapping[str, Any], scans: Sequence[NetworkScan]) -> None:
    """One row for the Dashboard API key the walk used (the admin record): `managed` when its record
    already has a `meraki-api-key` profile, else `create` = give that record the profile (issue 19),
    on the first readable network's record (existing, or new in this plan); `skip` when there is none
    or the record rotates as something else."""
    row = Row("Meraki API (the key this walk used)", text_field(admin_record, "login")
              or str(admin_record.field("login") or admin_record.title), None, "dashboard API key",
              target=KEY_ROTATION_KIND)
    theirs = next((prof for rec, prof in profiles if rec.uid == admin_record.uid), None)
    if theirs is not None:
        action, note = (MANAGED, f"record {admin_record.title}") if theirs.target == KEY_ROTATION_KIND else (
            SKIP, f"record {admin_record.title} already rotates as {theirs.target}")
        plan.rows.append(replace(row, action=action, note=note))
        return
    news = {n.title: n for n in plan.networks}
    for scan in scans:
        if scan.error or not scan.network_id:
            continue
        existing = resources.get(scan.network_id)
        title = f"meraki-{scan.network_id}"
        resource = existing.uid if existing is not None else title if title in news else ""
        if resource:
            plan.rows.append(replace(row, title=admin_record.title, admin=admin_record.uid, resource=resource,
                                     note=f"profile on record {admin_record.title}, verified on network "
                                          f"{scan.network_id}"))
            return
    plan.rows.append(replace(row, action=SKIP, note="no network record to verify the key on (onboard a "
                                                     "network first)"))


# ---- wireless: SSID PSKs and identity PSK families (issue 19) ---------------------------------------

WIRELESS_KINDS = ("meraki-ssid-psk", "meraki-ipsk")
_WIRELESS_TITLES = {"meraki-ssid-psk": "SSID {name} @ {network}", "meraki-ipsk": "iPSK {name} @ {network}"}


@dataclass(frozen=True, slots=True)
class WirelessScan:
    """What one wireless target (`kind`) found on one network: PSK SSIDs, or identity PSK families."""

    network: NetworkScan
    kind: str
    found: tuple[FoundAccount, ...] = ()
    error: str = ""


async def scan_wireless(targets: Mapping[str, Any], endpoint: Endpoint, admin: AdminCredential,
                        scans: Sequence[NetworkScan], *,
                        concurrency: int = CONCURRENCY) -> list[WirelessScan]:
    """For every network `scan_meraki` could read, ask each wireless target (`WIRELESS_KINDS` → target)
    what it would rotate there (its `discover`: read-only, on the organisation's budget)."""
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(scan: NetworkScan, kind: str) -> WirelessScan:
        async with gate:
            try:
                found = await targets[kind].discover(
                    replace(endpoint, network_id=scan.network_id, org_id=scan.org_id), admin)
            except KeyturnError as exc:
                return WirelessScan(scan, kind, error=str(exc))
        return WirelessScan(scan, kind, tuple(found))

    readable = [s for s in scans if s.network_id and not s.error]
    return list(await asyncio.gather(*(one(s, k) for s in readable for k in WIRELESS_KINDS)))


def plan_wireless(plan: Plan, wireless: Sequence[WirelessScan], admin_record: Any,
                  profiles: Sequence[tuple[Any, Any]], resources: Mapping[str, Any],
                  transport: Sequence[tuple[str, str]], taken: set[str]) -> None:
    """Rows for each PSK SSID (`meraki-ssid-psk`) and identity PSK family (`meraki-ipsk`) found: `managed`
    when a profile of that kind already rotates that SSID (and family) on the network's record, else
    `create` with the profile option ``ssid`` — and a new network record when the network has none."""
    news = {n.title: n for n in plan.networks}
    for ws in wireless:
        scan = ws.network
        if ws.error:
            plan.rows.append(Row(scan.source, action=UNREADABLE, target=ws.kind, note=ws.error))
            continue
        existing = resources.get(scan.network_id)
        network_title = existing.title if existing is not None else f"meraki-{scan.network_id}"
        mine = {(prof.options.get("ssid"), login_of(rec).casefold()) for rec, prof in profiles
                if existing is not None and prof.resource == existing.uid and prof.target == ws.kind}
        for found in ws.found:
            ssid = found.details.get("ssid", "")
            row = Row(scan.source, found.username, None, credential_text(found), target=ws.kind)
            title = _WIRELESS_TITLES[ws.kind].format(name=found.username, network=scan.network_id)
            login_key = found.username.casefold() if ws.kind == "meraki-ipsk" else None
            if any(s == ssid and (login_key is None or login == login_key) for s, login in mine):
                plan.rows.append(replace(row, action=MANAGED, note=f"SSID {ssid} on {network_title}"))
                continue
            if existing is None and network_title not in news and network_title.casefold() in taken:
                plan.rows.append(replace(row, action=SKIP, note=f"title {network_title} is taken by a "
                                                                "record that is not this network"))
                continue
            if title.casefold() in taken:
                plan.rows.append(replace(row, action=SKIP, note=f"title {title!r} is taken"))
                continue
            if existing is None and network_title not in news:
                news[network_title] = NewNetwork(network_title, (("network_id", scan.network_id),
                                                                 ("org_id", scan.org_id), *transport))
                plan.networks.append(news[network_title])
                taken.add(network_title.casefold())
            taken.add(title.casefold())
            what = ("the first rotation sets a new PSK: every client of the SSID reconnects"
                    if ws.kind == "meraki-ssid-psk" else
                    f"group policy {found.details.get('group_policy', '?')}; each rotation adds "
                    f"{found.username}-vK beside the current one")
            plan.rows.append(replace(row, title=title, admin=admin_record.uid, options=(("ssid", ssid),),
                                     resource=existing.uid if existing is not None else network_title,
                                     note=f"SSID {ssid}: {what}"))
