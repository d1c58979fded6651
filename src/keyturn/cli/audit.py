"""`keyturn audit verify|list`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from keyturn.cli.audit_export import export, sinks
from keyturn.cli.output import echo_json, fail, handle_errors, open_vault, table

app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)


@app.command("verify")
@handle_errors
def verify() -> None:
    """Check the whole chain; exit 1 naming the first modified, deleted or reordered entry."""
    with open_vault() as vault:
        broken = vault.audit.verify()
        count = vault.status().audit_entries
    if broken is not None:
        fail(f"audit chain broken at entry {broken} (modified, deleted or reordered)")
    typer.echo(f"audit chain intact: {count} entries")


@app.command("list")
@handle_errors
def list_(
    record: Annotated[str | None, typer.Option("--record", show_default=False,
                                               help="Only entries for this record (uid or title).")] = None,
    action: Annotated[str | None, typer.Option("--action", show_default=False, help="Only this action.")] \
        = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest N entries.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
) -> None:
    """Newest entries first."""
    with open_vault() as vault:
        uid = vault.resolve(record) if record is not None else None
        entries = vault.audit.list(record_uid=uid, action=action, limit=limit)
    if as_json:
        echo_json([{"id": e.id, "ts": e.ts.isoformat(), "actor": e.actor, "action": e.action,
                    "record_uid": e.record_uid, "details": e.details, "hash": e.hash} for e in entries])
    elif not entries:
        typer.echo("no audit entries")
    else:
        table(["ID", "TIME", "ACTOR", "ACTION", "RECORD", "DETAILS"],
              [(e.id, e.ts.strftime("%Y-%m-%d %H:%M:%S"), e.actor, e.action, e.record_uid or "",
                json.dumps(e.details, sort_keys=True)) for e in entries])


app.command("export")(export)
app.command("sinks")(sinks)
