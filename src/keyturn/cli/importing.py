"""`keyturn import inventory FILE`: devices, admin credentials, users, rotation profiles, schedules and
sites from an inventory, in one all-or-nothing transaction (`keyturn.inventory`).

    keyturn import inventory fleet.csv --dry-run             # the plan: create / update / unchanged
    keyturn import inventory hosts.yaml --format nornir --user netops
    keyturn import inventory netbox.csv --admin-login admin --admin-password - --user netops < pw.txt

A file with problems imports nothing: each problem is printed as ``file:line: message`` (or
``file:host``) on stderr, exit 1. Secrets come from the file where the format carries them (a warning
says the file holds them in clear), the admin password also from --admin-password (stdin or a prompt);
a user whose password is unknown gets none, and its first rotation sets one through the admin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keyturn.cli.output import (
    EXIT_GENERIC,
    actor,
    echo_json,
    error,
    handle_errors,
    open_vault,
    read_secret,
    settings,
    table,
    warn,
)

app = typer.Typer(help="Import devices, credentials and rotation profiles from an inventory file.",
                  no_args_is_help=True, rich_markup_mode=None)

FORMAT_HELP = "auto, csv, yaml (keyturn's own), ansible, nornir (hosts.yaml) or netbox-csv."


@app.command("inventory")
@handle_errors
def inventory(
    file: Annotated[Path, typer.Argument(help="The inventory (Nornir: hosts.yaml; groups.yaml and "
                                         "defaults.yaml are read next to it).", exists=True,
                                         dir_okay=False)],
    fmt: Annotated[str, typer.Option("--format", help=FORMAT_HELP, metavar="FORMAT")] = "auto",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (create / update / "
                                          "unchanged per record) and write nothing.")] = False,
    target: Annotated[str | None, typer.Option("--target", metavar="KIND", help="iosxe-restconf or "
                                               "iosxe-ssh for devices the file gives none (default: "
                                               "per format, see README).")] = None,
    user: Annotated[list[str] | None, typer.Option("--user", metavar="NAME", help="A local user to rotate "
                                                   "on every device that lists none (repeatable).")] = None,
    admin_login: Annotated[str | None, typer.Option("--admin-login", metavar="NAME", help="Admin login "
                                                    "for devices the file gives none.")] = None,
    admin_password: Annotated[str | None, typer.Option(
        "--admin-password", metavar="-", help="Admin password for devices the file gives none: '-' reads "
        "one line from stdin; omitted on a terminal: a prompt when one is needed.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The plan as JSON.")] = False,
) -> None:
    """Create or update devices, admins, users, profiles, schedules and sites from FILE, all or nothing."""
    from keyturn.inventory import Defaults, InventoryInvalid, apply, load
    from keyturn.sites import known_sites

    secret = read_secret(admin_password, what="admin-password", prompt=False)
    defaults = Defaults(target=target, users=tuple(user or ()), admin_login=admin_login,
                        admin_password=secret, known_sites=tuple(known_sites(settings())))
    inv = load(file, fmt, defaults)
    for message in inv.warnings:
        warn(message)
    try:
        inv.check()
        if secret is None and any(d.admin_password is None for d in inv.devices) and admin_password is None:
            prompted = read_secret(None, what="admin password for devices the file gives none", prompt=True)
            if prompted is not None:
                for d in inv.devices:
                    d.admin_password = d.admin_password or prompted
        with open_vault() as vault:
            plan = apply(vault, inv, dry_run=dry_run, actor=actor())
    except InventoryInvalid as exc:
        error(str(exc))
        for problem in exc.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(EXIT_GENERIC) from None
    if as_json:
        echo_json({"dry_run": dry_run, "format": inv.format, "counts": plan.counts(),
                   "changes": [c.to_json() for c in plan.changes]})
        return
    if dry_run:
        table(["action", "kind", "title", "detail"],
              [(c.action, c.kind, c.title, c.detail) for c in plan.changes])
        typer.echo(f"dry run, nothing written: {plan.summary()}")
        return
    typer.echo(f"imported {len(inv.devices)} devices from {file.name} ({inv.format}): {plan.summary()}")
