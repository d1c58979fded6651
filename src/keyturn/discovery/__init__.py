"""Discovery: list the accounts on Meraki networks and IOS XE devices, propose records, apply the plan.

Two phases, so nothing changes by surprise:

1. **scan** (async, read-only): the targets' `Discovering.discover` through the admin credential —
   Meraki: ``GET /organizations`` → ``/organizations/{id}/networks`` → ``/networks/{id}/merakiAuthUsers``;
   with ``--wireless`` also each network's SSIDs in PSK mode and its identity PSK families;
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

Modules: `plan` (rows, new network records, `apply_plan`), `meraki`, `iosxe` (scan + plan each).
"""

from __future__ import annotations

from keyturn.discovery.iosxe import Device, DeviceScan, iosxe_devices, plan_iosxe, scan_iosxe
from keyturn.discovery.meraki import (
    WIRELESS_KINDS,
    NetworkScan,
    WirelessScan,
    meraki_endpoint,
    plan_meraki,
    scan_meraki,
    scan_wireless,
)
from keyturn.discovery.plan import (
    ADMIN,
    CREATE,
    MANAGED,
    SKIP,
    UNREADABLE,
    NewNetwork,
    Plan,
    Row,
    apply_plan,
)

__all__ = [
    "ADMIN", "CREATE", "MANAGED", "SKIP", "UNREADABLE", "WIRELESS_KINDS", "Device", "DeviceScan",
    "NetworkScan", "NewNetwork", "Plan", "Row", "WirelessScan", "apply_plan", "iosxe_devices",
    "meraki_endpoint", "plan_iosxe", "plan_meraki", "scan_iosxe", "scan_meraki", "scan_wireless",
]
