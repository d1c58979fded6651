"""`keyturn exec`: run a command with current credentials in its environment (issue 16, item 2).

    keyturn exec --env NETOPS_USER="sw1 admin:login" --env NETOPS_PW="sw1 admin" -- ./backup.sh sw1

Each ``--env NAME=RECORD[:FIELD]`` puts one value into the command's environment — never its argv, so
the process list shows nothing. FIELD is ``password`` (the default), ``login`` or a custom field's
label; the last ``:`` separates it, so a title that holds a ``:`` is given with its field
(``--env PW="a:b:password"``) or by uid. Every value is read before the command starts: a record that
does not exist (or that the token is not granted) means nothing runs and keyturn exits 4. Then keyturn
*becomes* the command (``execvp``): its exit status, signals and pid are the command's own.

Where the values come from:

- the local vault (as `keyturn reveal`: the master key or passphrase of this host), audited as the OS
  user;
- a keyturn server when KEYTURN_URL is set, with the consumer token in KEYTURN_TOKEN (environment only:
  an option would show the token in the process list). HTTPS with certificate verification against the
  system's CAs or ``--ca`` (KEYTURN_CA_BUNDLE, as `keyturn.integrations`); plain http only to a loopback
  address. The server audits every read with the token's name. KEYTURN_TOKEN is not passed on to the
  command.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from keyturn.cli.output import EXIT_USAGE, actor, fail, handle_errors, open_vault
from keyturn.secret import Secret

if TYPE_CHECKING:
    pass

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")  # fullmatch
EXIT_CANNOT_RUN, EXIT_NO_COMMAND = 126, 127  # what a shell reports
DEFAULT_FIELD = "password"
BEARER_VAR = "KEYTURN_TOKEN"  # where the consumer token is read from (environment only)


def parse_env(spec: str) -> tuple[str, str, str]:
    """``NAME=RECORD[:FIELD]`` → (name, record, field); a usage error (exit 2) when malformed."""
    from keyturn.vault.records import shown

    name, sep, target = spec.partition("=")
    if not sep or not ENV_NAME.fullmatch(name):
        fail(f"--env {shown(spec)}: expected NAME=RECORD[:FIELD], NAME a shell variable name", EXIT_USAGE)
    record, colon, field = target.rpartition(":")
    if not colon:
        record, field = target, DEFAULT_FIELD
    if not record or not field:
        fail(f"--env {shown(spec)}: expected NAME=RECORD[:FIELD] with a record and a field", EXIT_USAGE)
    return name, record, field


def _command_path(command: list[str]) -> str:
    """The program to run, found before any secret is read (exit 127 / 126 as a shell would)."""
    if not command:
        fail("no command: give it after --, e.g. keyturn exec --env PW=sw1 -- ./backup.sh", EXIT_USAGE)
    found = shutil.which(command[0])
    if found is None:
        exists = os.sep in command[0] and Path(command[0]).exists()
        fail(f"{command[0]}: {'not executable' if exists else 'command not found'}",
             EXIT_CANNOT_RUN if exists else EXIT_NO_COMMAND)
    return found


def _from_vault(wanted: list[tuple[str, str, str]]) -> dict[str, Secret]:
    from keyturn.consumers import read_field

    with open_vault() as vault:
        uids = {record: vault.resolve(record) for _, record, _ in wanted}  # all found before any read
        # One transaction: the login and password of an A/B record are read as one pair, never across
        # a rotation's swap.
        with vault.unit():
            return {name: read_field(vault, uids[record], field, actor=actor())
                    for name, record, field in wanted}


def _from_server(url: str, ca: Path | None, wanted: list[tuple[str, str, str]]) -> dict[str, Secret]:
    """Through `keyturn.integrations.source.ServerSource` (the one server client): a refused or missing
    record is `RecordNotFound` (exit 4), a refused token or a bad URL `ConfigError`, an unreachable or
    untrusted server `StorageUnavailable`."""
    from keyturn.integrations.source import ServerSource, read_consistent

    token = os.environ.get(BEARER_VAR, "")
    if not token:
        fail(f"KEYTURN_URL is set: put a consumer token in {BEARER_VAR} (`keyturn token create --role "
             "consumer --grant ...` on the server)", EXIT_USAGE)
    source = ServerSource(url, Secret(token), ca_bundle=str(ca) if ca else None)
    try:
        values = read_consistent(source, [(record, field) for _, record, field in wanted])
    finally:
        source.close()
    return {name: value for (name, _, _), value in zip(wanted, values, strict=True)}


@handle_errors
def exec_(
    command: Annotated[list[str] | None, typer.Argument(
        help="The command and its arguments, after --.", show_default=False)] = None,
    env: Annotated[list[str] | None, typer.Option(
        "--env", show_default=False,
        help="NAME=RECORD[:FIELD]: put FIELD (password, login or a custom label; default password) of "
             "RECORD into the command's environment as NAME (repeatable).")] = None,
    url: Annotated[str | None, typer.Option(
        "--url", envvar="KEYTURN_URL", show_default=False,
        help="Read from this keyturn server with the consumer token in KEYTURN_TOKEN (env KEYTURN_URL); "
             "default: the local vault.")] = None,
    ca: Annotated[Path | None, typer.Option(
        "--ca", envvar="KEYTURN_CA_BUNDLE", show_default=False, exists=True, dir_okay=False,
        help="CA certificates (PEM) to verify the server with (env KEYTURN_CA_BUNDLE); default: the "
             "system's.")]
        = None,
) -> None:
    """Run a command with current credentials in its environment (never argv); exits with its status."""
    wanted = [parse_env(spec) for spec in env or []]
    if not wanted:
        fail("give at least one --env NAME=RECORD[:FIELD]", EXIT_USAGE)
    names = [name for name, _, _ in wanted]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        fail(f"--env {twice[0]} is given twice", EXIT_USAGE)
    argv = list(command or [])
    program = _command_path(argv)
    values = _from_server(url, ca, wanted) if url else _from_vault(wanted)
    child = {k: v for k, v in os.environ.items() if k != BEARER_VAR}
    child.update({name: value.reveal() for name, value in values.items()})
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(program, argv, child)  # noqa: S606 - no shell: the argv is the user's, as given
    except OSError as exc:
        fail(f"{argv[0]}: cannot run it: {exc.strerror}", EXIT_CANNOT_RUN)


__all__ = ["exec_", "parse_env"]
