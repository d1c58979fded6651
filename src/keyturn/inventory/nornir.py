"""Nornir SimpleInventory: FILE is hosts.yaml; groups.yaml and defaults.yaml are read from the same
directory when they exist (``.yml`` too).

An attribute (hostname, port, username, password, platform) and each ``data`` key comes from the host,
else its groups in order (each group before its own parent groups), else the defaults, as Nornir
resolves them. Mapping::

    hostname               the device address (default: the host's name)
    port                   the SSH port (Nornir's connection plugins — netmiko, scrapli, napalm — use
                           SSH), or the RESTCONF port when data keyturn_target is iosxe-restconf
    username / password    the admin login and its password
    platform               ios, cisco_ios, iosxe, cisco_iosxe, cisco_xe → IOS XE; any other: skipped
                           with a warning
    data.keyturn_<column>  any keyturn CSV column (keyturn_users, keyturn_target, keyturn_site, ...);
                           the default target is iosxe-ssh

Problems are reported as ``hosts.yaml:HOST`` (or ``groups.yaml:GROUP``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keyturn.inventory.model import (
    DEVICE_KEYS,
    Defaults,
    Inventory,
    device_from,
    finish,
    suggest,
    text,
    users_from,
)
from keyturn.inventory.source import load_yaml

IOS_PLATFORMS = frozenset({"ios", "cisco_ios", "iosxe", "ios-xe", "ios_xe", "cisco_iosxe", "cisco_xe",
                           "cisco.ios.ios"})
ATTRIBUTES = ("hostname", "port", "username", "password", "platform")
HOST_KEYS = frozenset({*ATTRIBUTES, "groups", "data", "connection_options"})
PREFIX = "keyturn_"


def _sibling(path: Path, stem: str) -> Path | None:
    for ext in (path.suffix, ".yaml", ".yml"):
        candidate = path.with_name(stem + ext)
        if ext and candidate.is_file():
            return candidate
    return None


def _section(inv: Inventory, path: Path | None, source: str | None = None) -> dict[str, Any]:
    if path is None:
        return {}
    doc = load_yaml(path, source)
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        inv.problem(str(path), "expected a mapping")
        return {}
    return {str(k): v for k, v in doc.items()}


def parse(path: Path, defaults: Defaults, *, source: str | None = None, groups_source: str | None = None,
          defaults_source: str | None = None) -> Inventory:
    """Parse hosts.yaml at `path` (the `*_source` texts stand in for the files, for tests)."""
    inv = Inventory(source=str(path), format="nornir")
    hosts = _section(inv, path, source if source is not None else None)
    groups_path = _sibling(path, "groups")
    defaults_path = _sibling(path, "defaults")
    groups = (_section(inv, path.with_name("groups.yaml"), groups_source) if groups_source is not None
              else _section(inv, groups_path))
    common = (_section(inv, path.with_name("defaults.yaml"), defaults_source) if defaults_source is not None
              else _section(inv, defaults_path))
    gwhere = str(groups_path or path.with_name("groups.yaml"))
    for name, group in groups.items():
        if group is not None and not isinstance(group, Mapping):
            inv.problem(f"{gwhere}:{name}", "a group must be a mapping")
    skipped: list[str] = []
    for name, host in hosts.items():
        where = f"{path}:{name}"
        if host is None:
            host = {}
        if not isinstance(host, Mapping):
            inv.problem(where, "a host must be a mapping")
            continue
        unknown = set(host) - HOST_KEYS
        if unknown:
            inv.problem(where, f"unknown key(s) {', '.join(sorted(map(str, unknown)))} (Nornir hosts have "
                        f"{', '.join(sorted(HOST_KEYS))})")
            continue
        chain = _chain(inv, gwhere, host, groups)
        layers = [host, *chain, common]
        attrs = {a: next((layer[a] for layer in layers if layer.get(a) is not None), None)
                 for a in ATTRIBUTES}
        data: dict[str, Any] = {}
        for layer in reversed(layers):
            layer_data = layer.get("data") or {}
            if isinstance(layer_data, Mapping):
                data.update(layer_data)
        platform = text(attrs["platform"])
        if platform is not None and platform.lower() not in IOS_PLATFORMS and PREFIX + "target" not in data:
            skipped.append(name)
            continue
        target = text(data.get(PREFIX + "target")) or "iosxe-ssh"
        values: dict[str, Any] = {"host": attrs["hostname"] or name, "admin_login": attrs["username"],
                                  "admin_password": attrs["password"]}
        if attrs["port"] is not None:
            values["port" if target == "iosxe-restconf" else "ssh_port"] = attrs["port"]
        for key, value in data.items():
            if not str(key).startswith(PREFIX) or key == PREFIX + "users":
                continue
            col = str(key)[len(PREFIX):]
            if col not in DEVICE_KEYS or col in ("device", "user", "user_password"):
                inv.problem(where, f"unknown data key {key!r}{suggest(col, DEVICE_KEYS)}")
                continue
            values[col] = value
        users = (users_from(data.get(PREFIX + "users"), where, inv)
                 or users_from(list(defaults.users), where, inv))
        spec = device_from(inv, name, where, {k: v for k, v in values.items() if v is not None}, users,
                           defaults, path.parent, default_target="iosxe-ssh")
        if spec is not None:
            inv.devices.append(spec)
    if skipped:
        inv.warnings.append(f"skipped {len(skipped)} host(s) whose platform is not IOS XE: "
                            + ", ".join(skipped[:10]) + (" ..." if len(skipped) > 10 else ""))
    return finish(inv)


def _chain(inv: Inventory, gwhere: str, host: Mapping[str, Any], groups: Mapping[str, Any]
           ) -> list[Mapping[str, Any]]:
    """The host's groups in resolution order: each group, then its parents (depth first), once each."""
    out: list[Mapping[str, Any]] = []
    seen: set[str] = set()

    def visit(names: Any, where: str) -> None:
        if names is None:
            return
        if not isinstance(names, list):
            inv.problem(where, "groups must be a list")
            return
        for g in names:
            name = str(g)
            if name in seen:
                continue
            seen.add(name)
            group = groups.get(name, ...)
            if group is ...:
                inv.problem(where, f"unknown group {name!r}{suggest(name, list(groups))}")
                continue
            group = group or {}
            if isinstance(group, Mapping):
                out.append(group)
                visit(group.get("groups"), f"{gwhere}:{name}")

    visit(host.get("groups"), gwhere)
    return out
