"""`keyturn serve`: run the API, the scheduler and the rotation workers (see `keyturn.serve`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from keyturn.cli.output import EXIT_USAGE, fail, handle_errors, open_vault, settings


@handle_errors
def serve(
    host: Annotated[str, typer.Option("--host", envvar="KEYTURN_SERVE_HOST",
                                      help="Address to bind (env KEYTURN_SERVE_HOST).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", envvar="KEYTURN_SERVE_PORT", min=0, max=65535,
                                      help="TCP port; 0 picks a free one (env KEYTURN_SERVE_PORT).")] = 8443,
    cert: Annotated[Path | None, typer.Option(
        "--cert", envvar="KEYTURN_SERVE_CERT", show_default=False,
        help="TLS certificate chain, PEM (env KEYTURN_SERVE_CERT).")] = None,
    key: Annotated[Path | None, typer.Option("--key", envvar="KEYTURN_SERVE_KEY", show_default=False,
                                             help="TLS private key, PEM (env KEYTURN_SERVE_KEY).")] = None,
    concurrency: Annotated[int | None, typer.Option(
        "--concurrency", min=1, max=10_000, show_default=False,
        help="Rotations in flight at most (env KEYTURN_CONCURRENCY; default 16).")] = None,
    grace: Annotated[float, typer.Option(
        "--grace", min=0,
        help="Seconds in-flight rotations get on SIGTERM before they are parked for recovery.")] = 30.0,
    no_scheduler: Annotated[bool, typer.Option("--no-scheduler", help="Serve the API only.")] = False,
) -> None:
    """Serve the REST API with scheduled rotation. Logs are JSON lines on stderr; stop with SIGTERM."""
    from keyturn.api.logging import configure_logging
    from keyturn.serve import ServeOptions
    from keyturn.serve import serve as run

    if (cert is None) != (key is None):
        fail("--cert and --key go together", EXIT_USAGE)
    for path in (cert, key):
        if path is not None and not path.is_file():
            fail(f"no such file: {path}", EXIT_USAGE)
    conf = settings()
    configure_logging("INFO" if conf.log_level.upper() == "WARNING" else conf.log_level, debug=conf.debug)
    options = ServeOptions(host=host, port=port, cert=cert, key=key,
                           concurrency=concurrency or min(conf.concurrency, 16),
                           per_device=conf.per_device_concurrency, grace=grace, scheduler=not no_scheduler)
    with open_vault() as vault:
        code = asyncio.run(run(vault, options))
    raise typer.Exit(code)
