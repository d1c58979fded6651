"""Bulk changes (`keyturn rotation set --filter`, `keyturn schedule set --filter`): which records, the
question before, and one transaction for all of them.

    matched = bulk_matches(vault, "title~sw", yes=yes, doing="set the schedule of")
    with all_or_nothing(vault) as at:
        for rec in matched:
            at(rec)                     # a refusal then names this record
            set_schedule(vault, rec.uid, ...)

The filter language is `keyturn.selection`'s. Every change goes through the same function as the
single form, so it is validated the same way; the first refusal rolls back every change made before
it and ends the command as one line: the record, the reason, "nothing was changed".
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import typer

from keyturn.cli.output import EXIT_USAGE, exit_code, fail
from keyturn.errors import KeyturnError

if TYPE_CHECKING:
    from keyturn.selection import MetaRecord
    from keyturn.vault import Vault

#: What a bulk change shows of the records it is about to change before asking.
SHOWN_MATCHES = 10


def bulk_matches(vault: Vault, filter_: str, *, yes: bool, doing: str, profiled: bool = True,
                 types: Sequence[str] = ()) -> list[MetaRecord]:
    """The records `filter_` selects for a bulk change: says how many (and which, the first few), then
    asks unless `yes` (without a terminal, refuses without --yes). A filter matching nothing ends the
    command with that said and nothing changed."""
    from keyturn.engine.journal import read_tx
    from keyturn.selection import select, why_nothing

    with read_tx(vault.engine) as conn:
        matched = select(conn, filter_, profiled=profiled, types=types)
        hint = "" if matched else why_nothing(conn, filter_, profiled=profiled, types=types)
    if not matched:
        fail(f"no record matches --filter {filter_!r}" + (f" ({hint})" if hint else "")
             + "; nothing was changed", EXIT_USAGE)
    shown = ", ".join(r.title for r in matched[:SHOWN_MATCHES])
    more = f" and {len(matched) - SHOWN_MATCHES} more" if len(matched) > SHOWN_MATCHES else ""
    typer.echo(f"{records(len(matched))} match --filter {filter_!r}: {shown}{more}")
    if not yes:
        if not sys.stdin.isatty():
            fail(f"refusing to {doing} {records(len(matched))} without confirmation; run again with --yes",
                 EXIT_USAGE)
        typer.confirm(f"{doing.capitalize()} {records(len(matched))}?", abort=True)
    return matched


def records(n: int) -> str:
    return f"{n} record" + ("" if n == 1 else "s")


@contextlib.contextmanager
def all_or_nothing(vault: Vault) -> Iterator[Callable[[MetaRecord], None]]:
    """One transaction for a bulk change; yields `at(record)` to name the record being changed, so a
    refusal ends as one line naming it, the reason and that nothing was changed."""
    current: list[MetaRecord] = []
    try:
        with vault.unit(batch_audit=True):
            yield current.append
    except KeyturnError as exc:
        where = f"record {current[-1].title!r}: " if current else ""
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        fail(f"{where}{first}; nothing was changed", exit_code(exc))
