"""`keyturn worker`: run rotations handed out through the broker (see `keyturn.dispatch.worker`)."""

from __future__ import annotations

from typing import Annotated

import typer

from keyturn.cli.output import handle_errors, settings


@handle_errors
def worker(
    site: Annotated[str, typer.Option("--site", envvar="KEYTURN_WORKER_SITE",
                                      help="Consume this site's queue only (env KEYTURN_WORKER_SITE).")
                    ] = "default",
    concurrency: Annotated[int, typer.Option(
        "--concurrency", min=1, max=1000,
        help="Rotations in flight per worker process (threads handing tasks to its event loop).")] = 32,
    processes: Annotated[int, typer.Option(
        "--processes", min=1, max=64, help="Worker processes to fork (one core's worth of Python each).")
                         ] = 1,
    loglevel: Annotated[str, typer.Option("--loglevel", help="Celery's log level.")] = "WARNING",
) -> None:
    """Run rotations for a site from the broker (KEYTURN_BROKER_URL) until SIGTERM.

    Every worker needs: the broker URL, the database URL (PostgreSQL when workers run on more than one
    host), the master key (same sources as every command) and Redis for the shared limits
    (KEYTURN_REDIS_URL, or the broker when it is Redis)."""
    from keyturn.dispatch.worker import WorkerOptions, run

    raise typer.Exit(run(settings(), WorkerOptions(site=site.strip(), concurrency=concurrency,
                                                   processes=processes, loglevel=loglevel.upper())))
