"""`keyturn notify status|test`: the `[[keyturn.notify]]` rules (see `keyturn.notify`).

`status` shows each rule's cursor, spool and last error (`--deliver` runs one delivery pass without
`keyturn serve`); `test NAME` sends one made-up notification through the rule now, outside the spool,
so a wrong webhook URL, SMTP password or CA shows up before a rotation fails.
"""

from __future__ import annotations

from typing import Annotated

import typer

from keyturn.cli.output import echo_json, handle_errors, open_vault, table

app = typer.Typer(help="Notification rules: rotation outcomes to a Slack webhook or e-mail.",
                  no_args_is_help=True, rich_markup_mode=None)

_NONE = "no notification rules configured (add [[keyturn.notify]] tables to keyturn.toml)"


@app.command("status")
@handle_errors
def status(
    deliver: Annotated[bool, typer.Option("--deliver", help="Run one delivery pass first (standalone, "
                                                            "without `keyturn serve`).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
) -> None:
    """Configured notification rules: cursor, spool, backlog and last error. With --deliver, exit 1
    when a rule's target could not take everything."""
    import asyncio
    import dataclasses

    from keyturn.audit.sinks.dispatcher import SinkStatus
    from keyturn.notify.dispatcher import Notifier

    with open_vault() as vault:
        if not vault.settings.notify:
            if as_json:
                echo_json([])
            else:
                typer.echo(_NONE)
            return
        notifier = Notifier.from_settings(vault.settings, vault)

        async def go() -> tuple[int | None, list[SinkStatus]]:
            try:
                delivered = await notifier.deliver_once() if deliver else None
                return delivered, await asyncio.to_thread(notifier.status)
            finally:
                await notifier.aclose()

        delivered, rows = asyncio.run(go())
    if as_json:
        echo_json([{**dataclasses.asdict(r), "backlog": r.backlog} for r in rows])
    else:
        if delivered is not None:
            typer.echo(f"delivered {delivered} notifications")
        table(["NAME", "TYPE", "DESTINATION", "CURSOR", "SPOOLED", "DELIVERED", "FAILURES", "LAST ERROR"],
              [(r.name, r.kind, r.destination, r.cursor, r.spooled, r.delivered, r.failures,
                r.last_error or "") for r in rows])
    if deliver and any(r.failures for r in rows):
        raise typer.Exit(1)


@app.command("test")
@handle_errors
def test(
    name: Annotated[str, typer.Argument(help="The rule's name (`name` in its [[keyturn.notify]] table).")],
) -> None:
    """Send one test notification through rule NAME now (not spooled); exit 1 if it does not arrive."""
    import asyncio
    from datetime import UTC, datetime

    from keyturn.notify.dispatcher import Notifier
    from keyturn.notify.message import Notification

    with open_vault() as vault:
        notifier = Notifier.from_settings(vault.settings, vault)
        route = notifier.route(name)  # an unknown name: ConfigError, exit 2
        sample = Notification(audit_id=0, time=datetime.now(UTC), outcome="failed",
                              reason=f"test notification (keyturn notify test {name}); nothing failed",
                              rotation_id=None, target=None, record_uid=None, title="keyturn test")

        async def go() -> None:
            try:
                await notifier.send_test(name, sample)
            finally:
                await notifier.aclose()

        asyncio.run(go())
    typer.echo(f"sent a test notification through {name} ({route.channel.destination})")
