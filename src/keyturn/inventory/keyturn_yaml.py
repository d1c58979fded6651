"""keyturn's own YAML: `defaults` for every device, then `devices`, keys as the CSV's columns.

    defaults:
      admin_login: admin
      target: iosxe-restconf
      schedule: "0 2 * * sun"
    devices:
      - device: sw0001
        host: 10.0.0.1
        ssh_port: 22
        site: dc-east
        users: [netops, {login: backup, password: "..."}]

A device's own key wins over `defaults`. `users` is a list of logins or of ``{login, password}``
mappings. Problems are reported as ``file:DEVICE`` (``file:devices[N]`` before a name is known).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keyturn.inventory.model import Defaults, Inventory, device_from, finish, users_from
from keyturn.inventory.source import load_yaml

TOP_KEYS = ("defaults", "devices")


def parse(path: Path, defaults: Defaults, *, source: str | None = None) -> Inventory:
    inv = Inventory(source=str(path), format="yaml")
    doc = load_yaml(path, source)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("devices"), list):
        inv.problem(str(path), "expected a mapping with a 'devices' list (and optional 'defaults')")
        return finish(inv)
    for key in doc:
        if key not in TOP_KEYS:
            inv.problem(str(path), f"unknown top-level key {key!r} (known: {', '.join(TOP_KEYS)})")
    common: Any = doc.get("defaults") or {}
    if not isinstance(common, Mapping):
        inv.problem(f"{path}:defaults", "defaults must be a mapping")
        common = {}
    for i, item in enumerate(doc["devices"]):
        if not isinstance(item, Mapping):
            inv.problem(f"{path}:devices[{i}]", "a device must be a mapping")
            continue
        name = item.get("device", item.get("name"))
        where = f"{path}:{name}" if isinstance(name, str) and name else f"{path}:devices[{i}]"
        values = {str(k): v for k, v in {**common, **item}.items()
                  if k not in ("device", "name", "users")}
        users = users_from(item.get("users", common.get("users")), where, inv)
        spec = device_from(inv, name, where, values, users, defaults, path.parent)
        if spec is not None:
            inv.devices.append(spec)
    return finish(inv)
