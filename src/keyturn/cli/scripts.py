"""`keyturn script attach|list|detach`: post-rotation scripts on a record (Keeper-compatible).

    keyturn script attach "core-sw1 admin" ./update.py --prefix /usr/bin/python3 \\
        --with "Cisco Authentication Record" --timeout 60 --env NOTIFY_URL=https://hooks.example/x \\
        --fail-on "Failed to update"
    keyturn script list "core-sw1 admin" [--json]
    keyturn script detach "core-sw1 admin" 2          # by position (see `list`), or by path / file name

Scripts run after a rotation in this order: those of the user record, then the resource record, then
the PAM configuration record. When keyturn runs as root they run as the `script_user` setting
(KEYTURN_SCRIPT_USER, default `nobody`), so the script and its interpreter must be readable and
executable by that account. Attachments live in the record's meta, **unencrypted**: `--env` values and
`--fail-on` patterns must not be secrets (give a script credentials through `--with RECORD`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from keyturn.cli.output import EXIT_USAGE, actor, echo_json, fail, handle_errors, open_vault, table
from keyturn.scripts.attachments import (
    DEFAULT_TIMEOUT,
    META_KEY,
    ScriptAttachment,
    attachments_of,
    parse_env_assignments,
    to_meta,
)

app = typer.Typer(
    help="Attach, list and detach post-rotation scripts (KeeperPAM-compatible).", no_args_is_help=True
)

_RECORD_HELP = "Record uid or unique title (user, resource or PAM configuration)."
_PREFIX_HELP = ("Command prefix, e.g. '/usr/bin/python3' or 'pwsh -File' (split like a shell would, never "
                "run through one). Default: run the script by its shebang.")
_WITH_HELP = "Additional record (uid or title) the script sees in `records`; repeatable."
_ENV_HELP = ("Extra environment NAME=VALUE; repeatable. Stored IN CLEAR in the record's meta: never a "
             "secret. PATH, LD_*, PYTHON* and the like (what chooses the code that runs) are refused.")
_FAIL_ON_HELP = "Regex on stdout/stderr that marks the run failed even with exit 0; repeatable."

RecordArg = Annotated[str, typer.Argument(metavar="RECORD", help=_RECORD_HELP)]
ScriptArg = Annotated[Path, typer.Argument(metavar="SCRIPT", help="Script file; stored as an absolute path.")]
PrefixOpt = Annotated[
    str | None, typer.Option("--prefix", metavar="CMD", help=_PREFIX_HELP, show_default=False)
]
WithOpt = Annotated[
    list[str] | None, typer.Option("--with", metavar="RECORD", help=_WITH_HELP, show_default=False)
]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", metavar="S", help="Seconds before the script's process group is killed.")
]
EnvOpt = Annotated[list[str] | None, typer.Option("--env", metavar="K=V", help=_ENV_HELP, show_default=False)]
FailOnOpt = Annotated[
    list[str] | None, typer.Option("--fail-on", metavar="REGEX", help=_FAIL_ON_HELP, show_default=False)
]
NoCheckOpt = Annotated[
    bool, typer.Option("--no-check", help="Attach even if the script cannot run on this host now.")
]
WhichArg = Annotated[
    str, typer.Argument(metavar="SCRIPT|INDEX", help="Position (from `list`), script path, or file name.")
]


@app.command("attach")
@handle_errors
def attach(
    record: RecordArg,
    script: ScriptArg,
    prefix: PrefixOpt = None,
    with_records: WithOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    env: EnvOpt = None,
    fail_on: FailOnOpt = None,
    no_check: NoCheckOpt = False,
) -> None:
    """Attach a script to a record; it runs after each rotation that involves the record."""
    from keyturn.scripts.runner import build_env, prepare_argv, refused_env_message, refused_env_names

    path = Path(os.path.abspath(script.expanduser()))
    extra_env = parse_env_assignments(env or [])
    refused = refused_env_names(extra_env)
    if refused:
        fail(refused_env_message(refused), EXIT_USAGE)
    with open_vault() as vault:
        rec = vault.get(record)
        uids = tuple(vault.resolve(ref) for ref in with_records or [])
        att = ScriptAttachment(
            script=str(path), prefix=prefix, with_records=uids, timeout=timeout,
            env=extra_env, fail_on=tuple(fail_on or []),
        )
        if not no_check:
            # The same checks the runner makes, so a broken attachment is caught now, not at 3 a.m.
            argv = prepare_argv(att, build_env(att, None, str(Path.home())))
            if isinstance(argv, str):
                fail(f"{argv} (or attach anyway with --no-check)", EXIT_USAGE)
        current = attachments_of(rec)
        vault.set_meta(rec.uid, META_KEY, to_meta([*current, att]), actor=actor())
    typer.echo(f"attached {att.name} to {rec.title!r} ({rec.uid}) as script {len(current) + 1}")


@app.command("list")
@handle_errors
def list_(
    record: RecordArg,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")] = False,
) -> None:
    """List a record's scripts in run order."""
    with open_vault() as vault:
        rec = vault.get(record)
        atts = attachments_of(rec)
    if as_json:
        echo_json([{"index": i, **a.to_meta()} for i, a in enumerate(atts, 1)])
        return
    if not atts:
        typer.echo(f"no scripts attached to {rec.title!r}")
        return
    rows = [
        (
            i, a.script, a.prefix or "(shebang)", ", ".join(a.with_records), f"{a.timeout:g}",
            " ".join(f"{k}={v}" for k, v in a.env.items()), " | ".join(a.fail_on),
        )
        for i, a in enumerate(atts, 1)
    ]
    columns = ["#", "script", "prefix", "with", "timeout", "env", "fail-on"]
    table(columns, rows, title=f"scripts of {rec.title}")


@app.command("detach")
@handle_errors
def detach(
    record: RecordArg,
    which: WhichArg,
) -> None:
    """Detach one script from a record."""
    with open_vault() as vault:
        rec = vault.get(record)
        atts = attachments_of(rec)
        index = _pick(atts, which)
        removed = atts.pop(index)
        vault.set_meta(rec.uid, META_KEY, to_meta(atts), actor=actor())
    typer.echo(f"detached {removed.name} (script {index + 1}) from {rec.title!r}")


def _pick(atts: list[ScriptAttachment], which: str) -> int:
    """The 0-based index `which` designates: a 1-based position, a path, or a unique file name."""
    if not atts:
        fail("the record has no scripts attached", EXIT_USAGE)
    if which.isdigit():
        n = int(which)
        if 1 <= n <= len(atts):
            return n - 1
        fail(f"no script {n}: the record has {len(atts)} (see `keyturn script list`)", EXIT_USAGE)
    path = os.path.abspath(os.path.expanduser(which))
    hits = [i for i, a in enumerate(atts) if a.script == path] or [
        i for i, a in enumerate(atts) if a.name == which
    ]
    if not hits:
        fail(f"no attached script matches {which!r} (see `keyturn script list`)", EXIT_USAGE)
    if len(hits) > 1:
        fail(f"{which!r} matches scripts {', '.join(str(i + 1) for i in hits)}; detach by position",
             EXIT_USAGE)
    return hits[0]
