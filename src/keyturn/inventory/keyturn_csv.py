"""keyturn's own CSV: one row per account (device + user); the device's columns repeat or stay empty.

    device,host,port,ssh_port,target,site,admin_login,admin_password,user,schedule
    sw0001,10.0.0.1,443,22,iosxe-restconf,dc-east,admin,,netops,0 2 * * sun
    sw0001,,,,,,,,backup,
    sw0002,10.0.0.2,,,iosxe-ssh,,admin,,netops,

Columns: `model.DEVICE_KEYS` (README, "Importing an inventory"); `device` and `host` are required, a
row without `user` adds the device and its admin only. A column name keyturn does not know, a row with
more cells than the header, a device column that contradicts an earlier row of the same device and an
account given twice are problems (``file:line``). Lines starting with ``#`` are comments.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from keyturn.inventory.model import (
    DEVICE_KEYS,
    SECRET_KEYS,
    Defaults,
    Inventory,
    UserInput,
    device_from,
    finish,
    suggest,
)
from keyturn.inventory.source import read_text

ROW_KEYS = ("device", "user", "user_password")


def parse(path: Path, defaults: Defaults, *, source: str | None = None) -> Inventory:
    inv = Inventory(source=str(path), format="csv")
    content = read_text(path) if source is None else source
    reader = csv.reader(io.StringIO(content, newline=""))
    header: list[str] | None = None
    # case-folded name -> (name as first written, where, device values, users, where each value came from)
    devices: dict[str, tuple[str, str, dict[str, Any], list[UserInput], dict[str, str]]] = {}
    for cells in reader:
        line = f"{path}:{reader.line_num}"
        if not cells or all(not c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [c.strip().lower() for c in cells]
            for col in header:
                if col not in DEVICE_KEYS:
                    inv.problem(line, f"unknown column {col!r}{suggest(col, DEVICE_KEYS)}")
            for required in ("device", "host"):
                if required not in header:
                    inv.problem(line, f"the header has no {required!r} column")
            if len(set(header)) != len(header):
                inv.problem(line, "a column is named twice")
            continue
        if len(cells) > len(header):
            inv.problem(line, f"{len(cells)} cells, but the header names {len(header)} columns")
            continue
        row = {col: cell.strip() for col, cell in zip(header, cells, strict=False) if cell.strip()}
        name = row.get("device")
        if not name:
            inv.problem(line, "no device name")
            continue
        key = name.casefold()
        if key not in devices:
            devices[key] = (name, line, {}, [], {})
        _name, _first, values, users, origin = devices[key]
        for col, value in row.items():
            if col in ROW_KEYS or col not in DEVICE_KEYS:  # an unknown column is reported once, above
                continue
            if col in values and values[col] != value:
                shown = (f"{value!r} contradicts {values[col]!r}" if col not in SECRET_KEYS
                         else "differs from the one")  # a secret is never shown
                inv.problem(line, f"{col} {shown} given for {name} at {origin[col]}")
            elif col not in values:
                values[col], origin[col] = value, line
        if row.get("user"):
            users.append(UserInput(row["user"], row.get("user_password"), line))
        elif row.get("user_password"):
            inv.problem(line, "user_password without a user")
    if header is None:
        inv.problem(f"{path}:1", "the file is empty (no header)")
    for name, where, values, users, _origin in devices.values():
        spec = device_from(inv, name, where, values, users, defaults, path.parent)
        if spec is not None:
            inv.devices.append(spec)
    return finish(inv)
