"""Rotation commands: `keyturn rotation set|show|log`, `keyturn rotate`, `keyturn history`, `keyturn recover`.

Thin shells over `keyturn.engine`. `keyturn rotate` first runs recovery (finishing any interrupted
rotation), then rotates with a live progress bar and prints a summary table; it exits 0 only when every
account ended `rotated` or `rotated_unverifiable`.

`--filter EXPR` selects records with a rotation profile: comma-separated terms, all must match (AND):

    type=pamUser        record type (exact, case-insensitive)
    target=iosxe-ssh    the profile's target kind
    title~sw00          title contains (case-insensitive); `title=X` is an exact title
    resource=UID        the profile's resource record uid
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from keyturn.cli.output import (
    EXIT_USAGE,
    actor,
    echo_json,
    fail,
    handle_errors,
    open_vault,
    settings,
    table,
    warn,
)
from keyturn.errors import ConfigError

if TYPE_CHECKING:
    from keyturn.engine.accounts import EnableLink
    from keyturn.engine.outcome import RotationResult
    from keyturn.vault import Vault

app = typer.Typer(help="Rotation profiles and rotation logs.", no_args_is_help=True, rich_markup_mode=None)

FILTER_KEYS = ("type", "target", "title", "resource", "uid")


# --- helpers ---------------------------------------------------------------------------------------


def parse_filter(expr: str) -> list[tuple[str, str, str]]:
    """`key=value` / `key~value` terms separated by commas → (key, op, value)."""
    terms = []
    for raw in expr.split(","):
        term = raw.strip()
        if not term:
            continue
        op = "~" if "~" in term and ("=" not in term or term.index("~") < term.index("=")) else "="
        key, sep, value = term.partition(op)
        key = key.strip().lower()
        if not sep or key not in FILTER_KEYS:
            raise ConfigError(f"bad filter term {term!r}: use KEY=VALUE or KEY~TEXT with KEY one of "
                              f"{', '.join(FILTER_KEYS)}")
        terms.append((key, op, value.strip()))
    if not terms:
        raise ConfigError("empty --filter")
    return terms


def _matches(record: Any, terms: Sequence[tuple[str, str, str]]) -> bool:
    profile = record.meta.get("rotation") or {}
    values = {"type": record.type, "target": profile.get("target") or "", "title": record.title,
              "resource": profile.get("resource") or "", "uid": record.uid}
    for key, op, wanted in terms:
        have = str(values[key])
        if op == "~" and wanted.casefold() not in have.casefold():
            return False
        if op == "=" and have.casefold() != wanted.casefold():
            return False
    return True


def select_records(vault: Vault, refs: Sequence[str], all_: bool, filter_: str | None) -> list[str]:
    """Record uids to rotate, in a stable order (refs as given; --all/--filter by title)."""
    if refs and (all_ or filter_):
        raise ConfigError("give record references, or --all, or --filter — not a mix")
    if refs:
        return [vault.resolve(ref) for ref in refs]
    if not (all_ or filter_):
        raise ConfigError("nothing to rotate: give RECORD..., --all or --filter EXPR")
    terms = parse_filter(filter_) if filter_ else []
    chosen = [r for r in vault.find() if r.meta.get("rotation") and _matches(r, terms)]
    return [r.uid for r in sorted(chosen, key=lambda r: (r.title.casefold(), r.uid))]


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
    counts: dict[str, int] = {}
    for r in results:
        counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
    typer.echo(", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "nothing to do")


# --- rotation set / show / log ----------------------------------------------------------------------


@app.command("set")
@handle_errors
def set_(
    record: Annotated[str, typer.Argument(help="The user record to rotate (uid or unique title).")],
    target: Annotated[str, typer.Option("--target", help="Target kind: iosxe-restconf, iosxe-ssh, "
                                        "iosxe-enable-secret, meraki-auth-user, noop.")],
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
    max_attempts: Annotated[int, typer.Option("--max-attempts", min=1, max=20,
                                              help="Verification attempts before giving up.")] = 3,
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
) -> None:
    """Attach (or replace) the rotation profile of RECORD; validated now, not at rotation time."""
    from keyturn.cli.schedule import apply_options
    from keyturn.engine.profile import set_profile
    from keyturn.sites import profile_options

    options = profile_options(_parse_options(option or []), site, settings())
    with open_vault() as vault:
        profile = set_profile(vault, record, target=target, resource=resource, admin=admin,
                              configuration=configuration, policy=policy, verify_with=verify_with,
                              options=options, max_attempts=max_attempts, actor=actor())
        sched = apply_options(vault, record, schedule=schedule, every=every, tz=tz, window=window,
                              jitter=jitter)
        rec = vault.get(record)
        link = _link_enable_secret(vault, rec.uid, profile.target, profile.admin)
    typer.echo(f"rotation profile set on {rec.title}: target {profile.target}")
    if sched:
        typer.echo(f"schedule: {sched}")
    if link is not None:
        _say_enable_link(link, rec.title)


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
    data = {"record": rec.uid, "title": rec.title, **profile.to_meta(), "schedule": dict(schedule_lines),
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
        step_rows = [{"step": s.step, "status": s.status.value, "message": s.message,
                      "at": s.at.isoformat(), "worker": s.worker} for s in steps]
        echo_json({**row.to_json(), "steps": step_rows})
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


# --- rotate / history / recover (top-level commands) ---------------------------------------------


async def _rotate_all(vault: Vault, uids: list[str], concurrency: int, per_device: int,
                      show_progress: bool) -> tuple[list[RotationResult], list[RotationResult]]:
    from keyturn.engine.batch import rotate_many
    from keyturn.engine.rotate import RotationEngine

    engine = RotationEngine(vault, actor=actor())
    try:
        recovered = await engine.recover(full=False)
        with _progress(len(uids), show_progress) as on_done:
            results = await rotate_many(engine, uids, concurrency=concurrency, per_device=per_device,
                                        progress=on_done)
    finally:
        await engine.aclose()
    return recovered, results


async def _dispatch_all(vault: Vault, broker_url: str, uids: list[str], show_progress: bool
                        ) -> list[RotationResult]:
    """Enqueue for workers, then follow the ledger until every request has its one outcome."""
    from keyturn.dispatch.client import Dispatcher

    dispatcher = Dispatcher(vault, broker_url)
    try:
        ids = await asyncio.to_thread(dispatcher.submit, uids, actor=actor())
        with _progress(len(ids), show_progress, "waiting for workers") as on_done:
            return await dispatcher.follow(ids, on_result=on_done)
    finally:
        dispatcher.close()


@contextlib.contextmanager
def _progress(total: int, show: bool, label: str = "rotating"
              ) -> Iterator[Callable[[RotationResult, int, int], None]]:
    """A progress bar on stderr; yields the per-result callback."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[last]}"), console=Console(stderr=True),
                        transient=True, disable=not show)
    with progress:
        task = progress.add_task("rotate", total=total, last="")

        def on_done(result: RotationResult, done: int, _total: int) -> None:
            progress.update(task, completed=done, last=f"{result.title}: {result.outcome.value}")

        yield on_done


@handle_errors
def rotate(
    records: Annotated[list[str] | None, typer.Argument(help="Records to rotate (uid or title).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every record that has a rotation profile.")] = False,
    filter_: Annotated[str | None, typer.Option("--filter", help="Select records: type=pamUser, "
                                                "target=iosxe-ssh, title~sw00, resource=UID; comma = AND.")
                       ] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1, envvar="KEYTURN_CONCURRENCY",
                                                    help="Rotations in flight (env KEYTURN_CONCURRENCY).")
                           ] = None,
    per_device: Annotated[int | None, typer.Option("--per-device", min=1, help="Rotations in flight per "
                                                   "device / network (default 1).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    local: Annotated[bool, typer.Option("--local", help="Rotate in this process even when "
                                        "KEYTURN_BROKER_URL hands rotations to workers.")] = False,
) -> None:
    """Rotate accounts now: recover interrupted rotations first, then rotate with a progress bar.

    With KEYTURN_BROKER_URL set, the rotations are enqueued for `keyturn worker`s (each to its
    site's queue) and followed here until each has its outcome; the output and exit code are the same."""
    import sys

    cfg = settings()
    show = not as_json and sys.stderr.isatty()
    with open_vault() as vault:
        uids = select_records(vault, records or [], all_, filter_)
        if not uids:
            fail("no record matches", EXIT_USAGE)
        recovered: list[RotationResult] = []    # with workers, recovery is theirs (per request)
        if cfg.broker_url and not local:
            results = asyncio.run(_dispatch_all(vault, cfg.broker_url, uids, show))
        else:
            recovered, results = asyncio.run(_rotate_all(
                vault, uids, concurrency or cfg.concurrency, per_device or cfg.per_device_concurrency,
                show_progress=show))
    if as_json:
        echo_json({"recovered": [r.to_json() for r in recovered], "results": [r.to_json() for r in results]})
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
        echo_json({"record": rec.uid, "title": rec.title, "rotations": [r.to_json() for r in rows],
                   "versions": [{"version": v.version, "state": str(v.state), "rotation_id": v.rotation_id,
                                 "created_at": v.created_at.isoformat(),
                                 "updated_at": v.updated_at.isoformat()} for v in versions]})
        return
    table(["rotation", "started", "target", "outcome", "reason", "duration"],
          [(_short(r.id), r.started_at.strftime("%Y-%m-%d %H:%M:%S"), r.target,
            r.outcome.value if r.outcome else r.state.value, r.reason, f"{r.duration:.1f}s") for r in rows],
          title=f"rotations of {rec.title}")
    table(["version", "state", "rotation", "created"],
          [(v.version, str(v.state), _short(v.rotation_id), v.created_at.strftime("%Y-%m-%d %H:%M:%S"))
           for v in versions], title="password versions")


@handle_errors
def recover(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Finish interrupted rotations: probe the device with both secrets, finish forward or back."""

    async def run(vault: Vault) -> list[RotationResult]:
        from keyturn.engine.rotate import RotationEngine

        engine = RotationEngine(vault, actor=actor())
        try:
            return await engine.recover(full=True)
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
