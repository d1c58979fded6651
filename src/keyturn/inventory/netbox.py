"""NetBox's device CSV export (Devices → Export → "Current view" or "All data").

Column headers are matched case-insensitively, by their label or field name::

    Name / name                                    the device title
    Primary IPv4 / primary_ip4 / IP Address /      the address (a "/prefix" is dropped); Primary IPv6
    Primary IP / primary_ip                        when there is no IPv4
    Platform / platform                            empty, or an IOS XE platform (Cisco IOS XE,
                                                   cisco-ios-xe, ios, iosxe, ...); any other: skipped
    Status / status                                only Active devices are imported (others skipped)
                                                   — and only those with a primary IP
    Site / site                                    the keyturn site: lowercased, spaces → "-", then it
                                                   must be a known site (KEYTURN_SITES)

NetBox holds no credentials: the admin login comes from --admin-login, its password from
--admin-password (or a prompt), the users to rotate from --user, and the target from --target
(default iosxe-restconf). Other NetBox columns are ignored. Problems are reported as ``file:line``.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

from keyturn.inventory.model import Defaults, Inventory, UserInput, device_from, finish
from keyturn.inventory.source import read_text

COLUMNS: dict[str, tuple[str, ...]] = {
    "name": ("name",),
    "ipv4": ("primary ipv4", "primary_ip4", "ip address", "primary ip", "primary_ip"),
    "ipv6": ("primary ipv6", "primary_ip6"),
    "platform": ("platform",),
    "status": ("status",),
    "site": ("site",),
}
IOS_PLATFORM = re.compile(r"(cisco[\s_-]*)?ios([\s_-]*xe)?", re.IGNORECASE)


def parse(path: Path, defaults: Defaults, *, source: str | None = None) -> Inventory:
    inv = Inventory(source=str(path), format="netbox-csv")
    reader = csv.reader(io.StringIO(read_text(path) if source is None else source, newline=""))
    index: dict[str, int] | None = None
    skipped: list[str] = []
    for cells in reader:
        line = f"{path}:{reader.line_num}"
        if not cells or all(not c.strip() for c in cells):
            continue
        if index is None:
            names = [c.strip().lower() for c in cells]
            index = {}
            for key, labels in COLUMNS.items():
                pos = next((names.index(label) for label in labels if label in names), None)
                if pos is not None:
                    index[key] = pos
            for required in ("name", "ipv4"):
                if required not in index and not (required == "ipv4" and "ipv6" in index):
                    inv.problem(line, f"no {COLUMNS[required][0]!r} column (a NetBox device export "
                                f"has Name and Primary IPv4)")
            if inv.problems:
                return finish(inv)
            continue
        row = {key: cells[pos].strip() if pos < len(cells) else "" for key, pos in index.items()}
        name = row.get("name", "")
        status = row.get("status", "")
        if status and status.lower() != "active":
            skipped.append(f"{name or line} ({status})")
            continue
        platform = row.get("platform", "")
        if platform and not IOS_PLATFORM.fullmatch(platform.strip()):
            skipped.append(f"{name or line} ({platform})")
            continue
        address = (row.get("ipv4") or row.get("ipv6") or "").split("/")[0].strip()
        if not address:  # NetBox also lists what keyturn cannot reach (patch panels, PDUs, spares)
            skipped.append(f"{name or line} (no primary IP)")
            continue
        values: dict[str, Any] = {"host": address}
        if row.get("site"):
            values["site"] = re.sub(r"\s+", "-", row["site"].strip().lower())
        users = [UserInput(u, None, line) for u in defaults.users]
        spec = device_from(inv, name, line, values, users, defaults, path.parent)
        if spec is not None:
            inv.devices.append(spec)
    if index is None:
        inv.problem(f"{path}:1", "the file is empty (no header)")
    if skipped:
        inv.warnings.append(f"skipped {len(skipped)} device(s) not Active, not IOS XE or without an address: "
                            + ", ".join(skipped[:10]) + (" ..." if len(skipped) > 10 else ""))
    return finish(inv)
