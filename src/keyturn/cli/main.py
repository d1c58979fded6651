"""The `keyturn` command (console script `keyturn.cli.main:app`).

Each command group lives in its own module with its own `app = typer.Typer()`; this file only wires
them. To add a group, add ONE line in the marked block below. Heavy imports (SQLAlchemy, Rich,
targets) happen inside commands so `keyturn --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keyturn.cli import audit as audit_cli
from keyturn.cli import device as device_cli
from keyturn.cli import output
from keyturn.cli import records as records_cli
from keyturn.cli import rotation as rotation_cli
from keyturn.cli import schedule as schedule_cli
from keyturn.cli import scripts as scripts_cli
from keyturn.cli import serve as serve_cli
from keyturn.cli import sim as sim_cli
from keyturn.cli import status as status_cli
from keyturn.cli import tokens as tokens_cli
from keyturn.cli import vault as vault_cli
from keyturn.cli import worker as worker_cli
from keyturn.errors import KeyturnError
from keyturn.hardening import harden_process

app = typer.Typer(
    name="keyturn",
    help="Self-hosted privileged-credential rotation for network devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


@app.callback()
def main(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option("--home", envvar="KEYTURN_HOME", help="Data directory (env KEYTURN_HOME).",
                     show_default=False),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", envvar="KEYTURN_DATABASE_URL",
                     help="SQLAlchemy URL; default: SQLite in the data directory (env KEYTURN_DATABASE_URL).",
                     show_default=False),
    ] = None,
) -> None:
    """keyturn: an encrypted vault that rotates device credentials safely."""
    output.OVERRIDES.clear()
    output.OVERRIDES.update({"home": home, "database_url": database_url})
    # First thing every command does (keyturn.hardening): no core dumps, not dumpable, master-key
    # variables out of the environment, scripts as `script_user`. Undone when the command ends, for
    # in-process callers; a real process just exits.
    ctx.call_on_close(harden_process(script_user=_script_user()))


def _script_user() -> str | None:
    try:
        return output.settings().script_user
    except KeyturnError:  # the command reports a broken configuration itself; scripts keep the default
        return None


def demo(
    keep: Annotated[bool, typer.Option("--keep", help="Keep the demo's temporary directory.")] = False,
) -> None:
    """Start a simulator lab, rotate every device and user in a fresh vault, prove it, stop the lab."""
    from keyturn.demo import run_demo

    raise typer.Exit(run_demo(keep=keep))


# --- sub-apps (one line each) ---
app.command("init")(vault_cli.init)
app.command("reveal")(records_cli.reveal)
app.add_typer(records_cli.app, name="record")
app.add_typer(vault_cli.app, name="vault")
app.add_typer(audit_cli.app, name="audit")
app.add_typer(scripts_cli.app, name="script")
app.add_typer(sim_cli.app, name="sim")
app.add_typer(rotation_cli.app, name="rotation")
for _name in ("rotate", "history", "recover"):
    app.command(_name)(getattr(rotation_cli, _name))
app.command("demo")(demo)
app.command("serve")(serve_cli.serve)
app.add_typer(tokens_cli.app, name="token")
app.add_typer(schedule_cli.app, name="schedule")
app.add_typer(device_cli.app, name="device")
app.command("worker")(worker_cli.worker)
app.command("status")(status_cli.status)
# --- end sub-apps ---


if __name__ == "__main__":  # pragma: no cover
    app()
