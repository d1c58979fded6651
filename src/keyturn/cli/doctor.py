"""`keyturn doctor [--json]`: check the installation (`keyturn.doctor`); exit 0 when healthy, 1 otherwise."""

from __future__ import annotations

from typing import Annotated

import typer

from keyturn.cli.output import echo_json, handle_errors, settings


@handle_errors
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Check the installation and say what is wrong and how to fix it; exit 1 on a problem.

    Key file, database (latency, clock skew, schema), vault sealed or not, broker and workers, audit
    sinks and their spools, devices without pinned trust, flagged accounts, expiring certificates.
    Warnings do not change the exit code. Nothing is changed and no device is contacted."""
    from keyturn.doctor import render, run

    report = run(settings())
    if as_json:
        echo_json(report.to_json())
    else:
        render(report, typer.echo)
    if not report.healthy:
        raise typer.Exit(1)
