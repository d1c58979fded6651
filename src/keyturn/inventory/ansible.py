"""Ansible inventories: the JSON of ``ansible-inventory --list`` (with or without ``--export``) and
YAML inventories read directly.

Variables, per host (groups merged as Ansible does: ``all``, then parent before child groups,
alphabetical among equals, then the host's own variables)::

    ansible_host            the device address (default: the inventory name)
    ansible_port            the port Ansible connects to: SSH for network_cli (→ ssh_port), HTTPS
                            for httpapi/restconf (→ the RESTCONF port)
    ansible_user            the admin login; ansible_password / ansible_ssh_pass its password
    ansible_become_password the enable secret (ansible_become_pass too)
    ansible_network_os      cisco.ios.ios, ios, cisco.ios, ios_xe, iosxe → IOS XE; any other value:
                            the host is skipped with a warning
    ansible_connection      network_cli (default) → target iosxe-ssh; httpapi, restconf →
                            iosxe-restconf
    keyturn_<column>        any keyturn CSV column (keyturn_target, keyturn_users, keyturn_site,
                            keyturn_schedule, keyturn_ca_bundle, keyturn_ssh_port, ...)

A Jinja2 template in a variable keyturn reads cannot be evaluated here (give the output of
``ansible-inventory --list`` instead); an ``!vault`` value is an unknown secret. Problems are reported
as ``file:HOST``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keyturn.errors import ImportFailed
from keyturn.inventory.model import (
    DEVICE_KEYS,
    Defaults,
    Encrypted,
    Inventory,
    device_from,
    finish,
    suggest,
    text,
    users_from,
)
from keyturn.inventory.source import load_yaml, read_text

IOS_NETWORK_OS = frozenset({"cisco.ios.ios", "cisco.ios", "ios", "ios_xe", "iosxe", "cisco.iosxe",
                            "cisco_ios", "cisco_iosxe"})
SSH_CONNECTIONS = frozenset({"network_cli", "ansible.netcommon.network_cli", "ssh", "paramiko",
                             "libssh", "smart"})
HTTPS_CONNECTIONS = frozenset({"httpapi", "ansible.netcommon.httpapi", "restconf",
                               "ansible.netcommon.restconf"})
PREFIX = "keyturn_"
# Every variable keyturn reads; only these are checked for templates.
READ = ("ansible_host", "ansible_port", "ansible_user", "ansible_password", "ansible_ssh_pass",
        "ansible_become_password", "ansible_become_pass", "ansible_network_os", "ansible_connection")


def parse(path: Path, defaults: Defaults, *, source: str | None = None) -> Inventory:
    inv = Inventory(source=str(path), format="ansible")
    content = read_text(path) if source is None else source
    stripped = content.lstrip()
    if stripped.startswith("["):
        raise ImportFailed(f"{path} looks like an INI inventory; convert it with "
                           "`ansible-inventory -i FILE --list > inventory.json` and import that")
    doc = load_yaml(path, content)  # JSON is YAML
    if not isinstance(doc, Mapping):
        inv.problem(str(path), "expected an inventory mapping (groups, or the JSON of ansible-inventory)")
        return finish(inv)
    hosts = _from_list(doc) if "_meta" in doc else _from_yaml(doc, inv, path)
    skipped: list[str] = []
    for host, variables in hosts.items():
        where = f"{path}:{host}"
        values = _values(inv, where, host, variables, skipped)
        if values is None:
            continue
        users = users_from(variables.get(PREFIX + "users"), where, inv)
        if not users:
            users = users_from(list(defaults.users), where, inv)
        default_target = values.pop("_target")
        spec = device_from(inv, values.pop("_name"), where, values, users, defaults, path.parent,
                           default_target=default_target)
        if spec is not None:
            inv.devices.append(spec)
    if skipped:
        inv.warnings.append(f"skipped {len(skipped)} host(s) whose ansible_network_os is not IOS XE: "
                            + ", ".join(skipped[:10]) + (" ..." if len(skipped) > 10 else ""))
    return finish(inv)


def _values(inv: Inventory, where: str, host: str, v: Mapping[str, Any], skipped: list[str]
            ) -> dict[str, Any] | None:
    for key in (*READ, *(k for k in v if k.startswith(PREFIX))):
        value = v.get(key)
        if isinstance(value, str) and ("{{" in value or "{%" in value):
            inv.problem(where, f"{key} is a Jinja2 template; import the output of `ansible-inventory "
                        "--list` instead")
            return None
    os_name = text(v.get("ansible_network_os"))
    if os_name is not None and os_name.lower() not in IOS_NETWORK_OS and PREFIX + "target" not in v:
        skipped.append(host)
        return None
    connection = (text(v.get("ansible_connection")) or "network_cli").lower()
    if connection not in SSH_CONNECTIONS | HTTPS_CONNECTIONS:
        inv.problem(where, f"ansible_connection {connection!r} cannot reach IOS XE (use network_cli, "
                    "httpapi or restconf)")
        return None
    https = connection in HTTPS_CONNECTIONS
    out: dict[str, Any] = {"_name": host, "_target": "iosxe-restconf" if https else "iosxe-ssh",
                           "host": v.get("ansible_host") or host,
                           "admin_login": v.get("ansible_user")}
    if v.get("ansible_port") is not None:
        out["port" if https else "ssh_port"] = v["ansible_port"]
    out["admin_password"] = _first(v, "ansible_password", "ansible_ssh_pass")
    out["enable_secret"] = _first(v, "ansible_become_password", "ansible_become_pass")
    for key, value in v.items():
        if not key.startswith(PREFIX) or key == PREFIX + "users":
            continue
        name = key[len(PREFIX):]
        if name not in DEVICE_KEYS or name in ("device", "user", "user_password"):
            inv.problem(where, f"unknown variable {key!r}{suggest(name, DEVICE_KEYS)}")
            continue
        out[name] = value
    return {k: val for k, val in out.items() if val is not None or k.startswith("_")}


def _first(v: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = v.get(key)
        if isinstance(value, Mapping) and "__ansible_vault" in value:
            return Encrypted()
        if value is not None:
            return value
    return None


def _from_list(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``ansible-inventory --list``: _meta.hostvars (group vars already merged in, unless --export)."""
    groups = {name: g for name, g in doc.items() if name != "_meta" and isinstance(g, Mapping)}
    hostvars = doc.get("_meta", {}).get("hostvars", {}) or {}
    tree = {name: (list(g.get("hosts") or []), dict(g.get("vars") or {}), list(g.get("children") or []))
            for name, g in groups.items()}
    merged = _merge(tree)
    names = list(hostvars) + [h for hosts, _v, _c in tree.values() for h in hosts if h not in hostvars]
    return {h: {**merged.get(h, {}), **(hostvars.get(h) or {})} for h in dict.fromkeys(names)}


def _from_yaml(doc: Mapping[str, Any], inv: Inventory, path: Path) -> dict[str, dict[str, Any]]:
    """A YAML inventory (``all: {hosts, vars, children}``, groups nested under children)."""
    tree: dict[str, tuple[list[str], dict[str, Any], list[str]]] = {}
    own: dict[str, dict[str, Any]] = {}

    def walk(name: str, group: Any) -> None:
        if group is None:
            group = {}
        if not isinstance(group, Mapping):
            inv.problem(f"{path}:{name}", "a group must be a mapping of hosts, vars and children")
            return
        unknown = set(group) - {"hosts", "vars", "children"}
        if unknown:
            inv.problem(f"{path}:{name}", f"unknown group key(s) {', '.join(sorted(map(str, unknown)))}")
        hosts, variables, children = tree.setdefault(name, ([], {}, []))
        variables.update(group.get("vars") or {})
        for host, hv in (group.get("hosts") or {}).items():
            hosts.append(str(host))
            own.setdefault(str(host), {}).update(hv or {})
        for child, sub in (group.get("children") or {}).items():
            children.append(str(child))
            walk(str(child), sub)

    for name, group in doc.items():
        walk(str(name), group)
    merged = _merge(tree)
    return {h: {**merged.get(h, {}), **own[h]} for h in own}


def _merge(tree: Mapping[str, tuple[list[str], dict[str, Any], list[str]]]) -> dict[str, dict[str, Any]]:
    """Group variables per host: `all` first, then groups by depth (parents first), alphabetical."""
    depth: dict[str, int] = {}

    def visit(name: str, d: int, seen: frozenset[str]) -> None:
        if name in seen or name not in tree:
            return
        depth[name] = max(depth.get(name, 0), d)
        for child in tree[name][2]:
            visit(child, d + 1, seen | {name})

    roots = set(tree) - {c for _h, _v, children in tree.values() for c in children}
    for root in sorted(roots):
        visit(root, 0, frozenset())

    def members(name: str, seen: frozenset[str]) -> set[str]:
        if name in seen or name not in tree:
            return set()
        hosts, _v, children = tree[name]
        out = set(hosts)
        for child in children:
            out |= members(child, seen | {name})
        return out

    result: dict[str, dict[str, Any]] = {}
    order = sorted(tree, key=lambda g: (g != "all", depth.get(g, 0), g))
    for name in order:
        variables = tree[name][1]
        if not variables:
            continue
        hosts = members(name, frozenset()) if name != "all" else _all_hosts(tree)
        for host in hosts:
            result.setdefault(host, {}).update(variables)
    return result


def _all_hosts(tree: Mapping[str, tuple[list[str], dict[str, Any], list[str]]]) -> set[str]:
    return {h for hosts, _v, _c in tree.values() for h in hosts}
