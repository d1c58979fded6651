"""`keyturn status`: every managed account at a glance, then where rotations wait and who runs them.

Accounts (`keyturn.accounts_view`): title, target, site, how the last rotation ended and when, when the
scheduler next rotates it, and flags that need a person (needs_attention, unverified, stale_trust,
schedule_invalid). Filters: `--filter` (as `keyturn rotate`), `--outcome` (`never`: not rotated yet),
`--site`, `--flagged`. Metadata only, three SQL statements whatever the size of the fleet.

Sites (`--sites` shows only these): per site, rotation requests queued and the oldest one's age,
running, live workers. A site whose requests wait with no live worker is called out (exit code 1), so a
stuck site is visible rather than silent. Without a broker (everything in-process) the table is empty
and says so.

`--json` has the keys ``broker``, ``sites``, ``workers``, ``stuck_sites`` and (unless `--sites`)
``accounts``: the objects of the API's ``GET /accounts``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from keyturn.cli.output import echo_json, handle_errors, open_vault, settings, table, warn

if TYPE_CHECKING:
    from keyturn.accounts_view import AccountList

STUCK_EXIT = 1


@handle_errors
def status(
    filter_: Annotated[str | None, typer.Option("--filter", help="Only accounts matching: type=pamUser, "
                                                "target=iosxe-ssh, title~sw00, resource=UID, uid=UID; "
                                                "comma = AND.", show_default=False)] = None,
    outcome: Annotated[str | None, typer.Option("--outcome", help="Only accounts whose last rotation "
                                                "ended so (rotated, failed, needs_attention, ..., running), "
                                                "or never rotated (never).", show_default=False)] = None,
    site: Annotated[str | None, typer.Option("--site", help="Only accounts of this site.",
                                             show_default=False)] = None,
    flagged: Annotated[bool, typer.Option("--flagged", help="Only accounts with a flag.")] = False,
    sites_only: Annotated[bool, typer.Option("--sites", help="Only the per-site queues and workers.")
                          ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every managed account (target, site, last outcome, next due, flags), then queues and workers per site.

    Exit code 1 when a site has rotations waiting and no live worker."""
    from keyturn.accounts_view import AccountQuery, dump, list_accounts
    from keyturn.dispatch.ledger import RequestLedger

    cfg = settings()
    query = AccountQuery(filter=filter_, outcome=outcome, site=site, flagged=flagged)
    query.check()
    with open_vault() as vault:
        accounts = None if sites_only else list_accounts(vault.engine, query)
        ledger = RequestLedger(vault.engine)
        stats = ledger.site_stats()
        live = ledger.live_workers()
    stuck = [s.site for s in stats if s.queued and not s.workers]
    if as_json:
        data: dict[str, Any] = {"broker": bool(cfg.broker_url)}
        if accounts is not None:
            data["accounts"] = [dump(a) for a in accounts.accounts]
        data.update({
            "sites": [{"site": s.site, "queued": s.queued, "oldest_queued_age": round(s.oldest_queued_age, 1),
                       "running": s.running, "workers": s.workers, "in_flight": s.in_flight} for s in stats],
            "workers": [{"name": w["name"], "site": w["site"], "host": w["host"], "pid": w["pid"],
                         "in_flight": w["in_flight"], "concurrency": w["concurrency"]} for w in live],
            "stuck_sites": stuck})
        echo_json(data)
    else:
        if accounts is not None:
            _accounts(accounts, filtered=query != AccountQuery())
        if not cfg.broker_url and not stats:
            typer.echo("no broker configured (KEYTURN_BROKER_URL): rotations run in the process that "
                       "asks for them")
        table(["site", "queued", "oldest", "running", "workers", "in flight"],
              [(s.site, s.queued, f"{s.oldest_queued_age:.0f}s" if s.queued else "-", s.running, s.workers,
                s.in_flight) for s in stats], title="sites")
        for name in stuck:
            warn(f"site {name}: rotations are waiting and no worker is alive — start "
                 f"`keyturn worker --site {name}` where its devices are reachable")
    if stuck:
        raise typer.Exit(STUCK_EXIT)


def _when(t: datetime | None) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if t is not None else "-"


def _accounts(found: AccountList, *, filtered: bool) -> None:
    if not found.accounts:
        typer.echo("no account matches" if filtered else
                   "no managed accounts yet; attach a rotation profile with `keyturn rotation set`")
        return
    table(["account", "target", "site", "last outcome", "at", "next due", "flags"],
          [(a.title, a.target, a.site, a.last_outcome or "never", _when(a.last_at), _when(a.next_due),
            ",".join(a.flags) or "-") for a in found.accounts], title="accounts")
    counts: dict[str, int] = {}
    for a in found.accounts:
        counts[a.last_outcome or "never"] = counts.get(a.last_outcome or "never", 0) + 1
    flagged = sum(1 for a in found.accounts if a.flags)
    typer.echo(f"{found.total} account{'' if found.total == 1 else 's'}: "
               + ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
               + (f"; {flagged} flagged (see --flagged)" if flagged else ""))
