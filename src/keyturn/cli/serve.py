"""`keyturn serve`: run the API, the scheduler and the rotation workers (see `keyturn.serve`).

Plain HTTP is served on loopback addresses only: bearer tokens, revealed secrets and script output
would cross the network in clear. `--host` on any other address needs `--cert`/`--key`, or
`--insecure-http` (an explicit, loudly warned choice: e.g. TLS terminated by a proxy on the same host
reached over a private link).
"""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from keyturn.cli.output import EXIT_USAGE, fail, handle_errors, open_vault, settings, warn

# Names that always mean this host's loopback interface (no lookup: a name that resolves elsewhere
# tomorrow must not be trusted today).
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `LOOPBACK_NAMES`; every other address or name (0.0.0.0, ::, a
    LAN address, a DNS name) is reachable from elsewhere."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@handle_errors
def serve(
    host: Annotated[str | None, typer.Option(
        "--host", show_default=False,
        help="Address to bind (env KEYTURN_SERVE_HOST, serve_host in keyturn.toml; default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(
        "--port", min=0, max=65535, show_default=False,
        help="TCP port; 0 picks a free one (env KEYTURN_SERVE_PORT, serve_port; default 8443).")] = None,
    cert: Annotated[Path | None, typer.Option(
        "--cert", show_default=False,
        help="TLS certificate chain, PEM (env KEYTURN_SERVE_CERT, serve_cert).")] = None,
    key: Annotated[Path | None, typer.Option(
        "--key", show_default=False, help="TLS private key, PEM (env KEYTURN_SERVE_KEY, serve_key).")] = None,
    concurrency: Annotated[int | None, typer.Option(
        "--concurrency", min=1, max=10_000, show_default=False,
        help="Rotations in flight at most (env KEYTURN_CONCURRENCY; default 16).")] = None,
    grace: Annotated[float | None, typer.Option(
        "--grace", min=0, show_default=False,
        help="Seconds in-flight rotations get on SIGTERM before they are parked for recovery "
             "(env KEYTURN_SERVE_GRACE, serve_grace; default 30).")] = None,
    no_scheduler: Annotated[bool, typer.Option("--no-scheduler", help="Serve the API only.")] = False,
    insecure_http: Annotated[bool, typer.Option(
        "--insecure-http", envvar="KEYTURN_SERVE_INSECURE_HTTP",
        help="Allow plain HTTP on a non-loopback --host: tokens and secrets cross the network in clear "
             "(env KEYTURN_SERVE_INSECURE_HTTP).")] = False,
) -> None:
    """Serve the REST API with scheduled rotation. Logs are JSON lines on stderr; stop with SIGTERM."""
    from keyturn.api.logging import configure_logging
    from keyturn.serve import ServeOptions
    from keyturn.serve import serve as run

    conf = settings()
    # A flag wins over KEYTURN_SERVE_* and keyturn.toml; cert and key come as a pair from one place.
    host = host if host is not None else conf.serve_host
    port = port if port is not None else conf.serve_port
    grace = grace if grace is not None else conf.serve_grace
    if cert is None and key is None:
        cert, key = conf.serve_cert, conf.serve_key
    if (cert is None) != (key is None):
        fail("--cert and --key go together", EXIT_USAGE)
    if cert is None and not is_loopback(host):
        if not insecure_http:
            fail(f"--host {host} is reachable from other machines, and without --cert/--key the API would "
                 "be plain HTTP: bearer tokens and revealed secrets in clear on the network. Pass --cert "
                 "and --key, bind 127.0.0.1, or --insecure-http to accept that", EXIT_USAGE)
        warn(f"INSECURE: serving plain HTTP on {host}: every bearer token, revealed secret and script "
             "output crosses the network in clear, and anyone on the path can read it and act with it "
             "(--insecure-http)")
    for path in (cert, key):
        if path is not None and not path.is_file():
            fail(f"no such file: {path}", EXIT_USAGE)
    configure_logging("INFO" if conf.log_level.upper() == "WARNING" else conf.log_level, debug=conf.debug)
    options = ServeOptions(host=host, port=port, cert=cert, key=key,
                           concurrency=concurrency or min(conf.concurrency, 16),
                           per_device=conf.per_device_concurrency, grace=grace, scheduler=not no_scheduler)
    with open_vault() as vault:
        code = asyncio.run(run(vault, options))
    raise typer.Exit(code)
