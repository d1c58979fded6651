"""`keyturn demo`: the whole product in one command, against a throw-away lab (see `keyturn.demo`)."""

from __future__ import annotations

from typing import Annotated

import typer


def demo(
    keep: Annotated[bool, typer.Option("--keep", help="Keep the demo's temporary directory.")] = False,
) -> None:
    """Start a simulator lab, rotate every device and user in a fresh vault, prove it, stop the lab."""
    from keyturn.demo import run_demo

    raise typer.Exit(run_demo(keep=keep))
