"""`keyturn db current|check|upgrade`: the database schema against the one this keyturn ships.

The schema is Alembic's (`keyturn/vault/migrations`). Opening a vault upgrades a schema that is behind
when the setting `auto_upgrade` is on (the default for the embedded SQLite) and refuses otherwise, with
"run `keyturn db upgrade`" (the default for PostgreSQL, where several keyturn processes share one
database and an upgrade is a deliberate step). A schema newer than this keyturn is always refused.
None of these commands needs the master key: the schema is not secret.

    current  prints the stored revision and the shipped head
    check    exit 0 when the database is at the head, 1 when it is behind, empty or newer
    upgrade  `alembic upgrade head` under the migration lock; nothing to do at the head
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from keyturn.cli.output import echo_json, handle_errors, settings

if TYPE_CHECKING:
    from keyturn.vault.storage import Storage

app = typer.Typer(no_args_is_help=True, help="Database schema: current revision, check, upgrade.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _storage() -> Storage:
    from keyturn.vault.storage import Storage

    return Storage(settings().effective_database_url)


def _state(current: str | None, head: str) -> str:
    """`up to date`, `behind`, `empty` or `newer` (a revision this keyturn does not know)."""
    from keyturn.vault.storage import shipped_revisions

    if current == head:
        return "up to date"
    if current is None:
        return "empty"
    return "behind" if current in shipped_revisions() else "newer"


def _report(as_json: bool) -> str:
    from keyturn.vault.storage import shipped_head

    storage = _storage()
    try:
        current = storage.schema_revision()
        url = storage.display_url
    finally:
        storage.dispose()
    head = shipped_head() or "?"
    state = _state(current, head)
    if as_json:
        echo_json({"database": url, "current": current, "head": head, "state": state})
    else:
        hint = {"behind": "; run `keyturn db upgrade`", "empty": "; `keyturn init` creates a vault",
                "newer": "; a newer keyturn upgraded it: run that one"}.get(state, "")
        typer.echo(f"{url}: schema {current or 'none'}, this keyturn's is {head}: {state}{hint}")
    return state


@app.command()
@handle_errors
def current(as_json: JsonOpt = False) -> None:
    """Print the database's schema revision and the one this keyturn ships."""
    _report(as_json)


@app.command()
@handle_errors
def check(as_json: JsonOpt = False) -> None:
    """Exit 0 when the database schema is this keyturn's, 1 when it is behind, empty or newer."""
    if _report(as_json) != "up to date":
        raise typer.Exit(1)


@app.command()
@handle_errors
def upgrade(as_json: JsonOpt = False) -> None:
    """Upgrade the database schema to this keyturn's (a newer one is refused, nothing is changed)."""
    from keyturn.vault.storage import shipped_head

    storage = _storage()
    try:
        before = storage.schema_revision()
        storage.migrate(upgrade=True)
        after = storage.schema_revision()
        url = storage.display_url
    finally:
        storage.dispose()
    if as_json:
        echo_json({"database": url, "before": before, "after": after, "head": shipped_head()})
    elif before == after:
        typer.echo(f"{url}: schema {after} is already this keyturn's; nothing to do")
    else:
        typer.echo(f"{url}: schema upgraded from {before or 'none'} to {after}")
