"""`keyturn status`: where rotations wait and who runs them — per site: queue depth and age, workers.

A site whose requests wait with no live worker is called out (exit code 1), so a stuck site is visible
rather than silent. Without a broker (everything in-process) the table is empty and says so.
"""

from __future__ import annotations

from typing import Annotated

import typer

from keyturn.cli.output import echo_json, handle_errors, open_vault, settings, table, warn

STUCK_EXIT = 1


@handle_errors
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Per site: rotation requests queued (and the oldest one's age), running, live workers, in flight."""
    from keyturn.dispatch.ledger import RequestLedger

    cfg = settings()
    with open_vault() as vault:
        ledger = RequestLedger(vault.engine)
        stats = ledger.site_stats()
        live = ledger.live_workers()
    stuck = [s.site for s in stats if s.queued and not s.workers]
    if as_json:
        echo_json({"broker": bool(cfg.broker_url),
                   "sites": [{"site": s.site, "queued": s.queued,
                              "oldest_queued_age": round(s.oldest_queued_age, 1), "running": s.running,
                              "workers": s.workers, "in_flight": s.in_flight} for s in stats],
                   "workers": [{"name": w["name"], "site": w["site"], "host": w["host"], "pid": w["pid"],
                                "in_flight": w["in_flight"], "concurrency": w["concurrency"]} for w in live],
                   "stuck_sites": stuck})
    else:
        if not cfg.broker_url and not stats:
            typer.echo("no broker configured (KEYTURN_BROKER_URL): rotations run in the process that "
                       "asks for them")
        table(["site", "queued", "oldest", "running", "workers", "in flight"],
              [(s.site, s.queued, f"{s.oldest_queued_age:.0f}s" if s.queued else "-", s.running, s.workers,
                s.in_flight) for s in stats], title="sites")
        for site in stuck:
            warn(f"site {site}: rotations are waiting and no worker is alive — start "
                 f"`keyturn worker --site {site}` where its devices are reachable")
    if stuck:
        raise typer.Exit(STUCK_EXIT)
