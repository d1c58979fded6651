"""The `keyturn` command (console script `keyturn.cli.main:app`).

Each command group lives in its own module with its own `app = typer.Typer()`; this file only wires
them. To add a command or group, add ONE entry in the marked block below: its name, where it lives and
the first line of its help. Modules are imported when their command runs (`keyturn.cli.lazy`), and
heavy imports (SQLAlchemy, Rich, targets) happen inside commands, so `keyturn --help` imports no
command module and `keyturn reveal` only `keyturn.cli.records` (guarded by tests/unit/test_cli_imports.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keyturn.cli import output
from keyturn.cli.lazy import Lazy, lazy_group
from keyturn.errors import KeyturnError
from keyturn.hardening import harden_process

# --- commands and sub-apps, in `--help` order: one entry each ---
COMMANDS = (
    Lazy("init", "keyturn.cli.vault:init",
         "Create the data directory, master key and vault. Refuses to overwrite an existing vault."),
    Lazy("reveal", "keyturn.cli.records:reveal",
         "Print one secret value (alone, then a newline), the current one or --version N. Audited."),
    Lazy("exec", "keyturn.cli.exec:exec_",
         "Run a command with current credentials in its environment (never argv); exits with its status."),
    Lazy("rotate", "keyturn.cli.rotation:rotate",
         "Rotate accounts now: recover interrupted rotations first, then rotate with a progress bar."),
    Lazy("history", "keyturn.cli.rotation:history",
         "Rotations of RECORD (newest first) and its password versions."),
    Lazy("recover", "keyturn.cli.rotation:recover",
         "Finish interrupted rotations: probe the device with both secrets, finish forward or back."),
    Lazy("demo", "keyturn.cli.demo:demo",
         "Start a simulator lab, rotate every device and user in a fresh vault, prove it, stop the lab."),
    Lazy("serve", "keyturn.cli.serve:serve",
         "Serve the REST API with scheduled rotation. Logs are JSON lines on stderr; stop with SIGTERM."),
    Lazy("worker", "keyturn.cli.worker:worker",
         "Run rotations for a site from the broker (KEYTURN_BROKER_URL) until SIGTERM."),
    Lazy("status", "keyturn.cli.status:status",
         "Every managed account (target, site, last outcome, next due, flags), then queues and workers "
         "per site."),
    Lazy("record", "keyturn.cli.records:app", "Add, list, show, edit, remove, import and export records."),
    Lazy("vault", "keyturn.cli.vault:app", "Master key and vault state."),
    Lazy("db", "keyturn.cli.db:app", "Database schema: current revision, check, upgrade."),
    Lazy("doctor", "keyturn.cli.doctor:doctor",
         "Check the installation and say what is wrong and how to fix it; exit 1 on a problem."),
    Lazy("audit", "keyturn.cli.audit:app", "The hash-chained audit log."),
    Lazy("config", "keyturn.cli.config:app", "Example configuration file and effective settings."),
    Lazy("notify", "keyturn.cli.notify:app",
         "Notification rules: rotation outcomes to a Slack webhook or e-mail."),
    Lazy("script", "keyturn.cli.scripts:app",
         "Attach, list and detach post-rotation scripts (KeeperPAM-compatible)."),
    Lazy("sim", "keyturn.cli.sim:app",
         "Run device simulators (IOS XE RESTCONF + SSH, Meraki Dashboard API)."),
    Lazy("rotation", "keyturn.cli.rotation:app", "Rotation profiles and rotation logs."),
    Lazy("token", "keyturn.cli.tokens:app", "API bearer tokens (roles: admin, operator, auditor, consumer)."),
    Lazy("schedule", "keyturn.cli.schedule:app",
         "Rotation schedules: set, clear, list (next due time per record)."),
    Lazy("device", "keyturn.cli.device:app",
         "Trust material of devices: pin TLS certificate and SSH host key fingerprints."),
    Lazy("import", "keyturn.cli.importing:app",
         "Import devices, credentials and rotation profiles from an inventory file."),
    Lazy("discover", "keyturn.cli.discover:app",
         "Find the accounts on Meraki networks and IOS XE devices; propose records to rotate them."),
)
# --- end commands and sub-apps ---

app = typer.Typer(
    name="keyturn",
    help="Self-hosted privileged-credential rotation for network devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,   # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    rich_markup_mode=None,
    cls=lazy_group(*COMMANDS),
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        from keyturn.vault.storage import shipped_head

        schema = f"database schema {shipped_head() or 'unknown'}"
        try:
            typer.echo(f"keyturn {version('keyturn')} ({schema})")
        except PackageNotFoundError:  # running from a source tree that was never installed
            typer.echo(f"keyturn (not installed: version unknown) ({schema})")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    _version_flag: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, expose_value=True,
                     help="Print keyturn's version and exit."),
    ] = False,
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
        return output.quick_settings().script_user
    except KeyturnError:  # the command reports a broken configuration itself; scripts keep the default
        return None


if __name__ == "__main__":  # pragma: no cover
    app(prog_name="keyturn")   # `python -m keyturn.cli.main`: usage lines and completion say `keyturn`
