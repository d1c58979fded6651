"""Inventory import: fleets of IOS XE devices from a file into the vault, all or nothing.

    inv = load(Path("hosts.yaml"), "nornir", Defaults(known_sites=("default", "dc-east")))
    inv.check()                                    # InventoryInvalid listing every problem
    plan = apply(vault, inv, dry_run=True)         # what would be created / updated / left unchanged

One module per format turns its file into the format-neutral `model.Inventory` (devices, their
admin credential and users, options, schedules, sites), checking each value where it is read;
`plan.apply` then creates or updates the records by title in ONE transaction (`Vault.unit`), setting
profiles through `engine.profile.set_profile` and schedules through `scheduler.assign.set_schedule`,
so an inventory is validated exactly as `keyturn rotation set` and `keyturn schedule set` are.

Formats (`FORMATS`): ``csv`` and ``yaml`` (keyturn's own), ``ansible`` (``ansible-inventory --list``
JSON or a YAML inventory), ``nornir`` (SimpleInventory hosts.yaml + groups.yaml + defaults.yaml),
``netbox-csv`` (NetBox's device export). ``auto`` picks one from the file (`detect`).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from keyturn.errors import ConfigError
from keyturn.inventory.model import Defaults, Inventory, InventoryInvalid, Problem
from keyturn.inventory.plan import Change, Plan, apply

FORMATS = {
    "csv": "keyturn.inventory.keyturn_csv",
    "yaml": "keyturn.inventory.keyturn_yaml",
    "ansible": "keyturn.inventory.ansible",
    "nornir": "keyturn.inventory.nornir",
    "netbox-csv": "keyturn.inventory.netbox",
}

__all__ = ["FORMATS", "Change", "Defaults", "Inventory", "InventoryInvalid", "Plan", "Problem", "apply",
           "detect", "load"]


def detect(path: Path, head: str) -> str:
    """The format of a file from its name and first bytes: `.json` → ansible; a CSV whose header has a
    ``device`` column → csv, else netbox-csv; YAML with ``devices:`` → yaml, with ``all:`` → ansible,
    else nornir."""
    suffix = path.suffix.lower()
    if suffix == ".json" or head.lstrip().startswith("{"):
        return "ansible"
    if suffix == ".csv":
        first = next((ln for ln in head.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
        return "csv" if "device" in [c.strip().lower() for c in first.split(",")] else "netbox-csv"
    lines = [ln for ln in head.splitlines() if ln and not ln.startswith(("#", " ", "-", "\t"))]
    keys = {ln.split(":", 1)[0].strip() for ln in lines}
    if "devices" in keys:
        return "yaml"
    if "all" in keys:
        return "ansible"
    return "nornir"


def load(path: Path, fmt: str, defaults: Defaults) -> Inventory:
    """Parse `path` as `fmt` (or ``auto``); the inventory carries its problems (see `Inventory.check`)."""
    from keyturn.inventory.source import read_text

    if fmt == "auto":
        fmt = detect(path, read_text(path)[:4096])
    module_name = FORMATS.get(fmt)
    if module_name is None:
        raise ConfigError(f"unknown inventory format {fmt!r}; use one of auto, {', '.join(FORMATS)}")
    module = importlib.import_module(module_name)
    inv: Inventory = module.parse(path, defaults)
    return inv
