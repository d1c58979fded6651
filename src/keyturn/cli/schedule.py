"""Schedule commands: `keyturn schedule set|clear|list|reset`.

Thin shells over `keyturn.scheduler.assign`. Spec forms (see `keyturn.scheduler.schedules`): cron
(5 fields), Quartz (6-7 fields, seconds first, `?`), `every 30d`, or a Keeper JSON object; `--tz` is an
IANA zone; `--window` e.g. "Sat 01:00-05:00" or "Mon-Fri 22:00-02:00"; `--jitter` e.g. 10m.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from keyturn.cli.output import actor, echo_json, handle_errors, open_vault, table
from keyturn.errors import ConfigError

if TYPE_CHECKING:
    from keyturn.vault import Vault

app = typer.Typer(help="Rotation schedules: set, clear, list (next due time per record).",
                  no_args_is_help=True, rich_markup_mode=None)


TIMES = ("next_due", "last_run_at")


def _z(value: str | None) -> str | None:
    return value.replace("+00:00", "Z") if isinstance(value, str) else value


def _when(t: datetime | None) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if t else "-"


def apply_options(vault: Vault, record: str, *, schedule: str | None, every: str | None, tz: str | None,
                  window: str | None, jitter: str | None) -> str | None:
    """For `keyturn rotation set --schedule/--every/--tz/--window/--jitter`: store the schedule when one
    is given (validated) and return a one-line summary; None when no schedule option was used."""
    from keyturn.scheduler.assign import set_schedule

    if schedule is None and every is None:
        if tz or window or jitter:
            raise ConfigError("--tz, --window and --jitter need --schedule SPEC or --every DURATION")
        return None
    if schedule is not None and every is not None:
        raise ConfigError("give exactly one of --schedule SPEC or --every DURATION")
    sched = set_schedule(vault, record, schedule if schedule is not None else f"every {every}", tz=tz,
                         window=window, jitter=jitter, actor=actor())
    nxt = sched.due(sched.next_slot(datetime.now(UTC)), vault.resolve(record))[0]
    return f"{sched.describe()}; next due {_when(nxt)}"


@app.command("set")
@handle_errors
def set_(
    record: Annotated[str | None, typer.Argument(help="Record with a rotation profile (uid or unique "
                                                 "title); or --filter EXPR for many.",
                                                 show_default=False)] = None,
    schedule: Annotated[str | None, typer.Option(
        "--schedule", help="Cron (5 fields), Quartz (6-7 fields, seconds first), 'every 30d', or Keeper "
        "schedule JSON.")] = None,
    every: Annotated[str | None, typer.Option("--every", help="Interval, e.g. 30d, 12h, 2w.")] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="IANA time zone of the schedule and window "
                                           "(default UTC).")] = None,
    window: Annotated[str | None, typer.Option("--window", help='Maintenance window, e.g. "Sat 01:00-05:00" '
                                               'or "Mon-Fri 22:00-02:00".')] = None,
    jitter: Annotated[str | None, typer.Option("--jitter", help="Spread start times by up to this much, "
                                               "e.g. 10m (fixed per record).")] = None,
    filter_: Annotated[str | None, typer.Option("--filter", help="Set it on every record with a rotation "
                                                "profile matching EXPR (as `keyturn rotate --filter`).",
                                                show_default=False)] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="With --filter: change the matching records "
                                      "without asking.")] = False,
) -> None:
    """Set RECORD's rotation schedule; refused with the reason when anything is invalid.

    With --filter EXPR instead of RECORD, every matching record with a rotation profile gets it: the
    command says how many match and asks (unless --yes); all of them change in one transaction, or
    none does."""
    if (schedule is None) == (every is None):
        raise ConfigError("give exactly one of --schedule SPEC or --every DURATION")
    if filter_ is not None:
        if record is not None:
            raise ConfigError("give RECORD or --filter EXPR, not both")
        _set_many(filter_, yes, schedule if schedule is not None else f"every {every}", tz=tz, window=window,
                  jitter=jitter)
        return
    if record is None:
        raise ConfigError("give RECORD, or --filter EXPR to set the schedule of many records")
    with open_vault() as vault:
        summary = apply_options(vault, record, schedule=schedule, every=every, tz=tz, window=window,
                                jitter=jitter)
        title = vault.get(record).title
    typer.echo(f"schedule set on {title}: {summary}")


def _set_many(filter_: str, yes: bool, spec: str, *, tz: str | None, window: str | None,
              jitter: str | None) -> None:
    """`schedule set --filter`: one schedule, validated as the single form, on every matching record."""
    from keyturn.cli.bulk import all_or_nothing, bulk_matches, records
    from keyturn.scheduler.assign import set_schedule
    from keyturn.scheduler.schedules import parse_schedule

    now = datetime.now(UTC)
    parse_schedule(spec, tz=tz, window=window, jitter=jitter, anchor=now)  # refused before anything is asked
    with open_vault() as vault:
        matched = bulk_matches(vault, filter_, yes=yes, doing="set the schedule of")
        with all_or_nothing(vault) as at:
            for rec in matched:
                at(rec)
                sched = set_schedule(vault, rec.uid, spec, tz=tz, window=window, jitter=jitter, actor=actor(),
                                     now=now)
    typer.echo(f"schedule set on {records(len(matched))}: {sched.describe()}")


@app.command("clear")
@handle_errors
def clear(record: Annotated[str, typer.Argument(help="Record uid or unique title.")]) -> None:
    """Remove RECORD's schedule (it is then rotated on demand only)."""
    from keyturn.scheduler.assign import clear_schedule

    with open_vault() as vault:
        had = clear_schedule(vault, record, actor=actor())
        title = vault.get(record).title
    typer.echo(f"schedule cleared on {title}" if had else f"{title} had no schedule")


@app.command("reset")
@handle_errors
def reset(record: Annotated[str, typer.Argument(help="Record uid or unique title.")]) -> None:
    """Clear RECORD's needs-attention flag so the scheduler retries it (after fixing the cause)."""
    from keyturn.scheduler.assign import reset_attention

    with open_vault() as vault:
        done = reset_attention(vault, record, actor=actor())
        title = vault.get(record).title
    typer.echo(f"{title}: needs-attention flag cleared" if done else f"{title} was not flagged")


@app.command("list")
@handle_errors
def list_(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Scheduled records with their next due time, earliest first; flagged and invalid ones marked."""
    from keyturn.scheduler.assign import schedule_rows

    with open_vault() as vault:
        rows = schedule_rows(vault)
    if as_json:
        # "record" is the old key (kept for scripts); "record_uid" and times with Z as the API has them.
        echo_json([{"record_uid": r.uid, **{k: _z(v) if k in TIMES else v for k, v in r.to_json().items()}}
                   for r in rows])
        return
    if not rows:
        typer.echo("no scheduled records; add one with `keyturn schedule set RECORD --schedule SPEC`")
        return
    table(["next due", "record", "title", "schedule", "last run", "outcome", "status"], [
        (_when(r.next_due), r.uid, r.title, r.schedule, _when(r.last_run_at), r.last_outcome or "-",
         ("NEEDS ATTENTION: " + r.problem) if r.needs_attention
         else (f"NOT SCHEDULED: {r.problem}" if r.problem
               else (f"retry {r.attempts}" if r.attempts else "ok")))
        for r in rows
    ])
