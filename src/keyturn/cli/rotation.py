"""Rotation commands: `keyturn rotation set|show|log`, `keyturn rotate`, `keyturn history`, `keyturn recover`.

Thin shells over `keyturn.engine`. `keyturn rotate` first runs recovery (finishing any interrupted
rotation), then rotates with a live progress bar and prints a summary table; it exits 0 only when every
account ended `rotated` or `rotated_unverifiable`.

`--filter EXPR` selects records with a rotation profile: comma-separated terms, all must match (AND):

    type=pamUser        record type (exact, case-insensitive)
    target=iosxe-ssh    the profile's target kind
    title~sw00          title contains (case-insensitive); `title=X` is an exact title
    resource=UID        the profile's resource record uid
    uid=UID             the record's uid

(`keyturn.selection`, shared with `rotation set --filter`, `schedule set --filter`, `status --filter` and
the API). A bulk change (`--filter` on `rotation set` / `schedule set`) says how many records match and
asks unless `--yes`; all of them change in one transaction, validated as the single form, or none does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from keyturn.cli.output import (
    EXIT_USAGE,
    actor,
    echo_json,
    fail,
    handle_errors,
    open_vault,
    settings,
    silence_stdout,
    table,
    warn,
)
from keyturn.errors import ConfigError

if TYPE_CHECKING:
    from keyturn.engine.accounts import EnableLink
    from keyturn.engine.outcome import RotationResult
    from keyturn.engine.profile import RotationProfile
    from keyturn.engine.rotate import RotationEngine
    from keyturn.vault import Vault

app = typer.Typer(help="Rotation profiles and rotation logs.", no_args_is_help=True, rich_markup_mode=None)

FILTER_HELP = ("Select records: type=pamUser, target=iosxe-ssh, title~sw00, resource=UID, uid=UID; "
               "comma = AND.")


# --- helpers ---------------------------------------------------------------------------------------


def parse_filter(expr: str) -> list[tuple[str, str, str]]:
    """`key=value` / `key~value` terms separated by commas → (key, op, value) (`keyturn.selection`)."""
    from keyturn.selection import parse_filter as parse

    return parse(expr)


def select_records(vault: Vault, refs: Sequence[str], all_: bool, filter_: str | None) -> list[str]:
    """Record uids to rotate, in a stable order (refs as given; --all/--filter by title): metadata only."""
    from keyturn.engine.journal import read_tx
    from keyturn.selection import select

    if refs and (all_ or filter_):
        raise ConfigError("give record references, or --all, or --filter — not a mix")
    if refs:
        return [vault.resolve(ref) for ref in refs]
    if not (all_ or filter_):
        raise ConfigError("nothing to rotate: give RECORD..., --all or --filter EXPR")
    with read_tx(vault.engine) as conn:
        uids = [r.uid for r in select(conn, filter_ or None)]
        if not uids and filter_:
            from keyturn.selection import why_nothing

            hint = why_nothing(conn, filter_)
            raise ConfigError(f"no record matches --filter {filter_!r}" + (f": {hint}" if hint else ""))
    return uids


def _parse_options(items: Sequence[str]) -> dict[str, str]:
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option {item!r}: expected KEY=VALUE")
        options[key.strip()] = value.strip()
    return options


def _short(rid: str | None) -> str:
    return (rid or "")[:12]


def _summary(results: Sequence[RotationResult]) -> None:
    rows = [(r.title, r.target, r.outcome.value, r.reason, f"{r.duration:.1f}s") for r in results]
    table(["record", "target", "outcome", "reason", "duration"], rows)
    typer.echo(_counts(results))


def _counts(results: Sequence[RotationResult]) -> str:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
    return ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "nothing to do"


# --- rotation set / show / log ----------------------------------------------------------------------


@app.command("set")
@handle_errors
def set_(
    record: Annotated[str | None, typer.Argument(help="The user record to rotate (uid or unique title); "
                                                 "or --filter EXPR for many.", show_default=False)] = None,
    target: Annotated[str | None, typer.Option("--target", help="Target kind: iosxe-restconf, iosxe-ssh, "
                                               "iosxe-enable-secret, meraki-auth-user, noop.",
                                               show_default=False)] = None,
    resource: Annotated[str | None, typer.Option("--resource", help="Device / network record.")] = None,
    admin: Annotated[str | None, typer.Option("--admin", help="Admin credential record (Meraki: the "
                                              "record whose password is the API key).")] = None,
    policy: Annotated[str | None, typer.Option("--policy", help='Password policy: "32,5,5,5,5" '
                                               "(length,caps,lower,digits,special) or Keeper JSON.")] = None,
    verify_with: Annotated[str | None, typer.Option("--verify-with", help="Target kind that verifies "
                                                    "the new secret (for noop profiles).")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", help="Profile option KEY=VALUE: mode, "
                                                     "verify, failed_login_budget, verify_via (e.g. "
                                                     "mode=password); endpoint and trust settings such as "
                                                     "verify_url live on the resource record.")] = None,
    configuration: Annotated[str | None, typer.Option("--configuration", help="pamConfiguration "
                                                      "record (default: Default PAM Configuration).")] = None,
    max_attempts: Annotated[int | None, typer.Option("--max-attempts", min=1, max=20,
                                                     help="Verification attempts before giving up "
                                                     "(default 3).", show_default=False)] = None,
    schedule: Annotated[str | None, typer.Option("--schedule", help="Cron, Quartz, or Keeper schedule "
                                                 "JSON (see `keyturn schedule set`).")] = None,
    every: Annotated[str | None, typer.Option("--every", help="Rotate every DURATION, e.g. 30d.")] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="IANA time zone of the schedule.")] = None,
    window: Annotated[str | None, typer.Option("--window", help='Maintenance window, e.g. '
                                               '"Sat 01:00-05:00".')] = None,
    jitter: Annotated[str | None, typer.Option("--jitter", help="Spread start times, e.g. 10m.")] = None,
    site: Annotated[str | None, typer.Option("--site", help="Site whose workers rotate this account, "
                                             "overriding the resource's site (a known site, see "
                                             "KEYTURN_SITES; \"\" for none).", show_default=False)] = None,
    filter_: Annotated[str | None, typer.Option("--filter", help="Set the profile on every user record "
                                                "(pamUser, login) matching EXPR (as `keyturn rotate "
                                                "--filter`); options left out keep each record's current "
                                                "value.", show_default=False)] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="With --filter: change the matching records "
                                      "without asking.")] = False,
) -> None:
    """Attach (or replace) the rotation profile of RECORD; validated now, not at rotation time.

    With --filter EXPR instead of RECORD, every matching user record gets it: the command says how many
    match and asks (unless --yes); options left out keep each record's current value (a record without
    a profile needs --target, and --resource unless noop); all of them change in one transaction,
    validated as the single form, or none does."""
    from keyturn.cli.schedule import apply_options
    from keyturn.engine.profile import set_profile
    from keyturn.sites import profile_options

    if filter_ is not None:
        if record is not None:
            raise ConfigError("give RECORD or --filter EXPR, not both")
        _set_many(filter_, yes, target=target, resource=resource, admin=admin, policy=policy,
                  verify_with=verify_with, option=option or [], configuration=configuration,
                  max_attempts=max_attempts, site=site, sched=(schedule, every, tz, window, jitter))
        return
    if record is None:
        raise ConfigError("give RECORD, or --filter EXPR to set the profile of many records")
    if target is None:
        raise ConfigError("--target KIND is required: iosxe-restconf, iosxe-ssh, iosxe-enable-secret, "
                          "meraki-auth-user, noop")
    options = profile_options(_parse_options(option or []), site, settings())
    with open_vault() as vault:
        profile = set_profile(vault, record, target=target, resource=resource, admin=admin,
                              configuration=configuration, policy=policy, verify_with=verify_with,
                              options=options, max_attempts=max_attempts or 3, actor=actor())
        sched = apply_options(vault, record, schedule=schedule, every=every, tz=tz, window=window,
                              jitter=jitter)
        rec = vault.get(record)
        link = _link_enable_secret(vault, rec.uid, profile.target, profile.admin)
    typer.echo(f"rotation profile set on {rec.title}: target {profile.target}")
    if sched:
        typer.echo(f"schedule: {sched}")
    if link is not None:
        _say_enable_link(link, rec.title)


def _set_many(filter_: str, yes: bool, *, target: str | None, resource: str | None, admin: str | None,
              policy: str | None, verify_with: str | None, option: list[str], configuration: str | None,
              max_attempts: int | None, site: str | None,
              sched: tuple[str | None, str | None, str | None, str | None, str | None]) -> None:
    """`rotation set --filter`: each matching user record's profile, what is given replacing what it has."""
    from keyturn.cli.bulk import all_or_nothing, bulk_matches, records
    from keyturn.cli.schedule import apply_options
    from keyturn.engine.profile import USER_TYPES, RotationProfile, set_profile
    from keyturn.sites import profile_options

    cfg = settings()
    given = _parse_options(option)
    schedule, every, tz, window, jitter = sched
    targets: dict[str, int] = {}
    summary = None
    with open_vault() as vault:
        matched = bulk_matches(vault, filter_, yes=yes, doing="set the rotation profile of", profiled=False,
                               types=USER_TYPES)
        with all_or_nothing(vault) as at:
            for rec in matched:
                at(rec)
                cur = RotationProfile.from_meta(rec.profile) if rec.profile is not None else None
                kind = target or (cur.target if cur else None)
                if kind is None:
                    raise ConfigError("it has no rotation profile yet: give --target KIND")
                base = dict(cur.options) if cur else {}
                if site is not None:
                    base.pop("site", None)
                profile = set_profile(
                    vault, rec.uid, target=kind, resource=_keep(resource, cur, "resource"),
                    admin=_keep(admin, cur, "admin"),
                    configuration=_keep(configuration, cur, "configuration"),
                    policy=policy if policy is not None else (cur.policy if cur else None),
                    verify_with=_keep(verify_with, cur, "verify_with"),
                    options=profile_options({**base, **given}, site, cfg),
                    max_attempts=max_attempts or (cur.max_attempts if cur else 3), actor=actor())
                summary = apply_options(vault, rec.uid, schedule=schedule, every=every, tz=tz,
                                        window=window, jitter=jitter) or summary
                _link_enable_secret(vault, rec.uid, profile.target, profile.admin)
                targets[profile.target] = targets.get(profile.target, 0) + 1
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(targets.items()))
    typer.echo(f"rotation profile set on {records(len(matched))} (target {kinds})")
    if summary:
        typer.echo(f"schedule: {summary.partition('; next due')[0]}")


def _keep(value: str | None, cur: RotationProfile | None, name: str) -> str | None:
    """A bulk option: the value given, else the record's current one."""
    if value is not None:
        return value
    return getattr(cur, name) if cur is not None else None


def _link_enable_secret(vault: Vault, uid: str, target: str, admin: str | None) -> EnableLink | None:
    """Rotating an enable secret: let the admin record read it from this record, so it never goes stale."""
    from keyturn.engine.accounts import ENABLE_TARGET, link_enable_secret

    if target != ENABLE_TARGET or admin is None or admin == uid:
        return None
    return link_enable_secret(vault, uid, admin, actor=actor())


def _say_enable_link(link: EnableLink, title: str) -> None:
    if link.state == "linked":
        typer.echo(f"admin record {link.admin_title} now reads its enable secret from {title} "
                   f"(custom field enable_secret_record = {link.reference}): SSH rotations on this device "
                   "use the current enable secret")
    elif link.state == "other":
        warn(f"admin record {link.admin_title} reads its enable secret from record {link.reference} "
             f"(enable_secret_record), not from {title}; left as it is")
    if link.copy_ignored and link.state != "other":
        warn(f"admin record {link.admin_title} also holds a copied enable_secret; it is ignored now (the "
             "reference wins); remove it with `keyturn record edit "
             f"{link.admin_uid} --remove-field enable_secret`")


@app.command("show")
@handle_errors
def show(
    record: Annotated[str, typer.Argument(help="Record uid or unique title.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show RECORD's rotation profile and whether a rotation of it is unsettled."""
    from keyturn.engine.journal import Journal
    from keyturn.engine.profile import load_profile
    from keyturn.scheduler.assign import show_rows
    from keyturn.sites import site_and_source

    with open_vault() as vault:
        rec = vault.get(record)
        profile = load_profile(rec)
        names = {}
        for uid in (profile.resource, profile.admin, profile.configuration):
            if uid:
                names[uid] = vault.get(uid).title
        open_rows = Journal(vault.engine).open_rotations(rec.uid)
        schedule_lines = show_rows(vault, rec.uid)
        site, site_from = site_and_source(vault, rec)
    data = {"record_uid": rec.uid, "record": rec.uid, "title": rec.title, **profile.to_meta(),
            "schedule": dict(schedule_lines),
            "site": site, "site_from": site_from,
            "open_rotations": [{"id": r.id, "state": r.state.value, "reason": r.reason} for r in open_rows]}
    if as_json:
        echo_json(data)
        return
    rows = [("record", f"{rec.title} ({rec.uid})"), ("target", profile.target)]
    for key in ("resource", "admin", "configuration"):
        uid = getattr(profile, key)
        rows.append((key, f"{names[uid]} ({uid})" if uid else "-"))
    rows += [("policy", json.dumps(profile.policy) if profile.policy else "default (20,1,1,1,1)"),
             ("verify with", profile.verify_with or "-"),
             ("options", ", ".join(f"{k}={v}" for k, v in profile.options.items()) or "-"),
             ("site", f"{site} (from the {site_from})" if site_from != "default" else site),
             ("max attempts", str(profile.max_attempts))]
    for r in open_rows:
        rows.append(("UNSETTLED", f"rotation {_short(r.id)} {r.state.value}: {r.reason or 'in progress'}"))
    rows += schedule_lines
    table(["", ""], rows)


@app.command("log")
@handle_errors
def log(
    rotation_id: Annotated[str, typer.Argument(help="Rotation id (a unique prefix is enough).")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Steps and script results of one rotation."""
    from keyturn.engine.journal import Journal

    with open_vault() as vault:
        journal = Journal(vault.engine)
        rows = journal.find_prefix(rotation_id)
        if len(rows) != 1:
            fail(f"no rotation with id {rotation_id}" if not rows
                 else f"rotation id {rotation_id} is ambiguous; give more characters", 4)
        row = rows[0]
        steps = journal.steps(row.id)
    if as_json:
        from keyturn.accounts_view import Rotation, dump

        step_rows = [{"step": s.step, "status": s.status.value, "message": s.message,
                      "at": _iso(s.at), "worker": s.worker} for s in steps]
        echo_json({**dump(Rotation.from_row(row)), "steps": step_rows})
        return
    typer.echo(f"rotation {row.id} of {row.title} ({row.target}): "
               f"{row.outcome.value if row.outcome else row.state.value} — {row.reason or 'in progress'}")
    table(["at", "step", "status", "message", "by"],
          [(s.at.strftime("%H:%M:%S.%f")[:-3], s.step, s.status.value, s.message, s.worker) for s in steps])
    for s in row.scripts:
        typer.echo(f"script {s.name}: {'ok' if s.ok else 'FAILED'} (exit {s.exit_code}, {s.duration:.2f}s)"
                   + (f" — {s.error}" if s.error else ""))
        for name, text in (("stdout", s.stdout), ("stderr", s.stderr)):
            if text.strip():
                typer.echo(f"  {name}:")
                for line in text.rstrip().splitlines():
                    typer.echo(f"    {line}")


@app.command("list")
@handle_errors
def list_(
    record: Annotated[str | None, typer.Option("--record", help="Only rotations of this record (uid or "
                                               "unique title).", show_default=False)] = None,
    outcome: Annotated[str | None, typer.Option("--outcome", help="Only this outcome: rotated, "
                                                "rotated_unverifiable, rotated_script_errors, rolled_back, "
                                                "unverified, failed, needs_attention, or running.",
                                                show_default=False)] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only rotations started at or after this "
                                              "ISO 8601 time (UTC unless it says), e.g. 2026-01-31.",
                                              show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Rotations per page.")] = 50,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many (the next page: --offset "
                                        "plus --limit).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output (the API's GET "
                                          "/rotations object).")] = False,
) -> None:
    """Recent rotations, newest first; filter by --record, --outcome, --since; page with --limit/--offset."""
    from keyturn.accounts_view import dump, list_rotations, parse_since

    when = parse_since(since) if since is not None else None
    with open_vault() as vault:
        uid = vault.resolve(record) if record is not None else None
        page = list_rotations(vault.engine, record_uid=uid, outcome=outcome, since=when, limit=limit,
                              offset=offset)
    if as_json:
        echo_json(dump(page))
        return
    if not page.rotations:
        typer.echo("no rotation matches" if page.total or offset == 0 else f"no rotations past {offset}")
        return
    table(["rotation", "started", "record", "target", "outcome", "reason", "duration"],
          [(_short(r.id), _when(r.started_at), r.title, r.target, r.outcome or r.state, r.reason,
            f"{r.duration:.1f}s" if r.duration is not None else "-") for r in page.rotations])
    last = offset + len(page.rotations)
    if page.total > last:
        typer.echo(f"rotations {offset + 1}-{last} of {page.total}; next page: --offset {last}", err=True)


def _iso(t: datetime) -> str:
    """ISO 8601 UTC with ``Z``, as the API's JSON has it."""
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _when(t: datetime | None) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if t is not None else "-"


# --- rotate / history / recover (top-level commands) ---------------------------------------------


async def _rotate_all(vault: Vault, uids: list[str], concurrency: int, per_device: int,
                      show_progress: bool, each: Callable[[RotationResult], None] | None = None,
                      ) -> tuple[list[RotationResult], list[RotationResult]]:
    from keyturn.engine.batch import rotate_many
    from keyturn.engine.rotate import RotationEngine

    engine = RotationEngine(vault, actor=actor())
    try:
        recovered = await engine.recover(full=False)
        await _sweep_grace(engine, quiet=True)
        with _progress(len(uids), show_progress, each=each) as on_done:
            results = await rotate_many(engine, uids, concurrency=concurrency, per_device=per_device,
                                        progress=on_done)
    finally:
        await engine.aclose()
    return recovered, results


async def _dispatch_all(vault: Vault, broker_url: str, uids: list[str], show_progress: bool,
                        each: Callable[[RotationResult], None] | None = None) -> list[RotationResult]:
    """Enqueue for workers, then follow the ledger until every request has its one outcome."""
    from keyturn.dispatch.client import Dispatcher

    dispatcher = Dispatcher(vault, broker_url)
    try:
        ids = await asyncio.to_thread(dispatcher.submit, uids, actor=actor())
        with _progress(len(ids), show_progress, "waiting for workers", each=each) as on_done:
            return await dispatcher.follow(ids, on_result=on_done)
    finally:
        dispatcher.close()


@contextlib.contextmanager
def _progress(total: int, show: bool, label: str = "rotating", *,
              each: Callable[[RotationResult], None] | None = None,
              ) -> Iterator[Callable[[RotationResult, int, int], None]]:
    """A progress bar on stderr; yields the per-result callback (which also hands each result to `each`
    as it finishes: the streamed output)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[last]}"), console=Console(stderr=True),
                        transient=True, disable=not show)
    with progress:
        task = progress.add_task("rotate", total=total, last="")

        def on_done(result: RotationResult, done: int, _total: int) -> None:
            progress.update(task, completed=done, last=f"{result.title}: {result.outcome.value}")
            if each is not None:
                each(result)

        yield on_done


_STREAM_COLUMNS = ("record", "target", "outcome", "reason", "duration")


def _streamer(json_lines: bool) -> Callable[[RotationResult], None]:
    """Print one line per result as it finishes, flushed (stdout is a pipe: `keyturn rotate --all | tee`):
    the summary table's columns separated by tabs after a header line, or one JSON object per line."""
    from keyturn.vault.records import escaped

    started = False

    def each(r: RotationResult) -> None:
        nonlocal started
        try:
            if not (started or json_lines):   # the header with the first result: an error prints none
                typer.echo("\t".join(_STREAM_COLUMNS))
            started = True
            if json_lines:
                typer.echo(json.dumps(r.to_json(), default=str))
            else:
                cells = (r.title, r.target, r.outcome.value, r.reason or "", f"{r.duration:.1f}s")
                typer.echo("\t".join(escaped(str(c)).replace("\t", " ") for c in cells))
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader went away (`keyturn rotate --all | head -3`): the rotations in flight still
            # finish, in the vault and on the devices; nothing more is printed, no traceback.
            silence_stdout()

    return each


@handle_errors
def rotate(
    records: Annotated[list[str] | None, typer.Argument(help="Records to rotate (uid or title).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every record that has a rotation profile.")] = False,
    filter_: Annotated[str | None, typer.Option("--filter", help=FILTER_HELP)] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1, envvar="KEYTURN_CONCURRENCY",
                                                    help="Rotations in flight (env KEYTURN_CONCURRENCY).")
                           ] = None,
    per_device: Annotated[int | None, typer.Option("--per-device", min=1, help="Rotations in flight per "
                                                   "device / network (default 1).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    json_lines: Annotated[bool, typer.Option("--json-lines", help="One JSON object per result, printed "
                                             "as each finishes.")] = False,
    local: Annotated[bool, typer.Option("--local", help="Rotate in this process even when "
                                        "KEYTURN_BROKER_URL hands rotations to workers.")] = False,
) -> None:
    """Rotate accounts now: recover interrupted rotations first, then rotate with a progress bar.

    With KEYTURN_BROKER_URL set, the rotations are enqueued for `keyturn worker`s (each to its
    site's queue) and followed here until each has its outcome; the output and exit code are the same.
    When stdout is not a terminal, results are printed as they finish (tab-separated, or --json-lines);
    --json prints one document at the end."""
    if as_json and json_lines:
        fail("--json and --json-lines exclude each other", EXIT_USAGE)
    cfg = settings()
    show = not as_json and sys.stderr.isatty()
    each = _streamer(json_lines) if json_lines or not (as_json or sys.stdout.isatty()) else None
    with open_vault() as vault:
        uids = select_records(vault, records or [], all_, filter_)
        if not uids:
            fail("no record matches", EXIT_USAGE)
        recovered: list[RotationResult] = []    # with workers, recovery is theirs (per request)
        if cfg.broker_url and not local:
            results = asyncio.run(_dispatch_all(vault, cfg.broker_url, uids, show, each))
        else:
            recovered, results = asyncio.run(_rotate_all(
                vault, uids, concurrency or cfg.concurrency, per_device or cfg.per_device_concurrency,
                show_progress=show, each=each))
    if as_json:
        echo_json({"recovered": [r.to_json() for r in recovered], "results": [r.to_json() for r in results]})
    elif json_lines:
        for r in recovered:
            typer.echo(json.dumps({**r.to_json(), "recovered": True}, default=str))
    elif each is not None:
        for r in recovered:
            typer.echo(f"recovered {r.title}: {r.outcome.value} — {r.reason}")
        typer.echo(_counts(results))
    else:
        for r in recovered:
            typer.echo(f"recovered {r.title}: {r.outcome.value} — {r.reason}")
        _summary(results)
    if not all(r.outcome.success for r in results):
        raise typer.Exit(1)


@handle_errors
def history(
    record: Annotated[str, typer.Argument(help="Record uid or unique title.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Most recent rotations to show.")] = 20,
) -> None:
    """Rotations of RECORD (newest first) and its password versions."""
    from keyturn.engine.journal import Journal

    with open_vault() as vault:
        rec = vault.get(record)
        rows = Journal(vault.engine).for_record(rec.uid, limit=limit)
        versions = vault.versions(rec.uid)
    if as_json:
        from keyturn.accounts_view import Rotation, dump

        # "record" is the old key (kept for scripts); "record_uid" the one the API and --json share.
        echo_json({"record_uid": rec.uid, "record": rec.uid, "title": rec.title,
                   "rotations": [dump(Rotation.from_row(r)) for r in rows],
                   "versions": [{"version": v.version, "state": str(v.state), "rotation_id": v.rotation_id,
                                 "created_at": _iso(v.created_at),
                                 "updated_at": _iso(v.updated_at)} for v in versions]})
        return
    table(["rotation", "started", "target", "outcome", "reason", "duration"],
          [(_short(r.id), r.started_at.strftime("%Y-%m-%d %H:%M:%S"), r.target,
            r.outcome.value if r.outcome else r.state.value, r.reason, f"{r.duration:.1f}s") for r in rows],
          title=f"rotations of {rec.title}")
    table(["version", "state", "rotation", "created"],
          [(v.version, str(v.state), _short(v.rotation_id), v.created_at.strftime("%Y-%m-%d %H:%M:%S"))
           for v in versions], title="password versions")


async def _sweep_grace(engine: RotationEngine, *, quiet: bool) -> None:
    """Delete the replaced identity PSKs whose grace is over (`keyturn.engine.grace`); says what it
    deleted or could not (on stderr: `--json` output stays the rotations' list)."""
    from keyturn.engine.grace import sweep_grace

    for result in await sweep_grace(engine):
        if result.state in ("deleted", "failed") and not quiet:
            names = f" ({', '.join(result.names)})" if result.names else ""
            typer.echo(f"grace {result.title}: {result.state} — {result.detail}{names}", err=True)


@handle_errors
def recover(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Finish interrupted rotations: probe the device with both secrets, finish forward or back."""

    async def run(vault: Vault) -> list[RotationResult]:
        from keyturn.engine.rotate import RotationEngine

        engine = RotationEngine(vault, actor=actor())
        try:
            results = await engine.recover(full=True)
            await _sweep_grace(engine, quiet=as_json)
            return results
        finally:
            await engine.aclose()

    with open_vault() as vault:
        results = asyncio.run(run(vault))
    if as_json:
        echo_json([r.to_json() for r in results])
    elif results:
        _summary(results)
    else:
        typer.echo("nothing to recover")
    if any(r.outcome.flagged for r in results):
        raise typer.Exit(1)
