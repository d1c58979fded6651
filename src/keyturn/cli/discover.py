"""Discovery commands: `keyturn discover meraki|iosxe` (logic in `keyturn.discovery`).

Both read through the admin credential, print a plan (a table, or `--json`) and change the vault only
with `--apply`: every proposed record and rotation profile in one transaction, each profile validated
as `keyturn rotation set` validates it. Requests are paced by the rotation engine's budgets (the
Meraki per-organisation budget). A network or device that cannot be read is a row saying why.
Exit codes: 0 plan printed (or applied), 1 when something could not be read, plus the usual ones
(2 usage, 4 unknown record).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from keyturn.cli.output import EXIT_GENERIC, actor, echo_json, handle_errors, open_vault, table

if TYPE_CHECKING:
    from keyturn.discovery import Plan
    from keyturn.vault import Vault

app = typer.Typer(help="Find the accounts on Meraki networks and IOS XE devices; propose records to rotate "
                  "them.", no_args_is_help=True, rich_markup_mode=None)

ApplyOpt = Annotated[bool, typer.Option("--apply", help="Create the proposed records and profiles (one "
                                        "transaction). Without it nothing changes.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")]


@contextlib.asynccontextmanager
async def _paced(vault: Vault) -> AsyncIterator[tuple[Any, Any]]:
    """(target pool, per-device slot holder or None), paced like a rotation: with Redis configured
    (`KEYTURN_REDIS_URL`, or a redis:// broker) the Meraki budget and the device slots are the ones
    every worker shares, else the in-process per-organisation budget of `keyturn rotate`."""
    from keyturn.engine.hostkeys import HostKeyPins
    from keyturn.engine.rotate import TargetPool

    cfg = vault.settings
    redis_url = cfg.effective_redis_url
    budgets = slots = None
    if redis_url:
        from keyturn.engine.shared_budgets import RedisOrgBudgets
        from keyturn.engine.shared_limits import DeviceSlots
        budgets = RedisOrgBudgets(redis_url, headroom=cfg.meraki_api_share)
        slots = DeviceSlots(redis_url, per_device=cfg.per_device_concurrency, ttl=cfg.worker_slot_ttl)
    pool = TargetPool(meraki_share=cfg.meraki_api_share, budgets=budgets)
    pool.host_keys = HostKeyPins(vault, asyncio.to_thread)
    try:
        yield pool, slots.hold if slots is not None else None
    finally:
        await pool.aclose()
        for shared in (budgets, slots):
            if shared is not None:
                await shared.aclose()


def _finish(vault: Vault, plan: Plan, apply: bool, as_json: bool) -> None:
    from keyturn.discovery import CREATE, UNREADABLE, apply_plan

    created: list[str] = []
    if apply and plan.count(CREATE):
        created = apply_plan(vault, plan, actor=actor())
    if as_json:
        echo_json({**plan.to_json(), "applied": apply, "created": created})
    else:
        rows = [(r.source, r.account, "" if r.privilege is None else r.privilege, r.credential, r.action,
                 r.title or r.note) for r in plan.rows]
        table(["source", "account", "priv", "credential", "action", "record / note"], rows)
        counts = ", ".join(f"{plan.count(a)} {a}" for a in ("create", "managed", "admin", "skip", UNREADABLE)
                           if plan.count(a))
        typer.echo(counts or "no accounts found")
        if plan.networks:
            typer.echo(f"{len(plan.networks)} new network record(s): "
                       + ", ".join(n.title for n in plan.networks[:5])
                       + (" ..." if len(plan.networks) > 5 else ""))
        if apply:
            typer.echo(f"applied: {len(created)} record(s) with rotation profiles created; their secrets are "
                       "set by the first rotation (`keyturn rotate --all`)")
        elif plan.count(CREATE):
            typer.echo("nothing changed; run again with --apply to create the proposed records")
    if plan.count(UNREADABLE):
        raise typer.Exit(EXIT_GENERIC)


@app.command("meraki")
@handle_errors
def meraki(
    admin: Annotated[str, typer.Option(
        "--admin", metavar="RECORD", envvar="KEYTURN_MERAKI_ADMIN",
        help="Record whose password is the Dashboard API key (uid or unique title).")],
    org: Annotated[str | None, typer.Option("--org", metavar="ID", help="Only this organisation (id).")]
        = None,
    network_filter: Annotated[str | None, typer.Option(
        "--network-filter", metavar="TEXT", help="Only networks whose name or id contains this text.")]
        = None,
    base_url: Annotated[str | None, typer.Option(
        "--base-url", metavar="URL", help="API base URL (default: the admin record's base_url, else "
        "Meraki's).")] = None,
    verify_url: Annotated[str | None, typer.Option(
        "--verify-url", metavar="URL", help="Login verifier URL written on new network records (see the "
        "Meraki target).")] = None,
    api_key: Annotated[bool, typer.Option(
        "--api-key", help="Also propose rotating the API key itself: a meraki-api-key profile on the "
        "ADMIN record.")] = False,
    wireless: Annotated[bool, typer.Option(
        "--wireless", help="Also propose each PSK SSID (meraki-ssid-psk) and identity PSK family "
        "(meraki-ipsk) of the networks.")] = False,
    apply: ApplyOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Walk organisations, networks and their Meraki auth users; propose network and user records."""
    from keyturn.discovery import WIRELESS_KINDS, meraki_endpoint, plan_meraki, scan_meraki, scan_wireless
    from keyturn.engine.accounts import build_admin
    from keyturn.targets.meraki import check_url

    vault = open_vault()
    try:
        record = vault.get(admin)
        credential = build_admin(vault, record)
        endpoint = meraki_endpoint(record, base_url)
        check_url(endpoint.base_url or "https://api.meraki.com/api/v1", "base_url")
        if verify_url:
            check_url(verify_url, "verify_url")

        async def scan() -> Any:
            async with _paced(vault) as (pool, _hold):
                found = await scan_meraki(pool.get("meraki-auth-user"), endpoint, credential, org=org,
                                          network_filter=network_filter,
                                          concurrency=vault.settings.concurrency)
                more = await scan_wireless({k: pool.get(k) for k in WIRELESS_KINDS}, endpoint, credential,
                                           found, concurrency=vault.settings.concurrency) if wireless else []
                return found, more

        scans, radio = asyncio.run(scan())
        plan = plan_meraki(vault, scans, record, endpoint, verify_url, api_key=api_key, wireless=radio)
        _finish(vault, plan, apply, as_json)
    finally:
        vault.close()


@app.command("iosxe")
@handle_errors
def iosxe(
    records: Annotated[list[str] | None, typer.Argument(
        help="Device records (uid or unique title).", metavar="RECORD", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every IOS XE device record in the vault.")] = False,
    admin: Annotated[str | None, typer.Option(
        "--admin", metavar="RECORD", help="Admin record to log in with (default: the admin the device's "
        "profiles use).")] = None,
    target: Annotated[str | None, typer.Option(
        "--target", metavar="KIND", help="iosxe-restconf or iosxe-ssh (default: what the device's profiles "
        "use, else iosxe-restconf).")] = None,
    apply: ApplyOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """List each device's local users through its admin credential; propose records for unmanaged ones."""
    from keyturn.discovery import iosxe_devices, plan_iosxe, scan_iosxe

    vault = open_vault()
    try:
        devices = iosxe_devices(vault, records or [], all_, admin=admin, target=target)

        async def scan() -> Any:
            async with _paced(vault) as (pool, hold):
                return await scan_iosxe(pool.get, vault, devices, hold=hold,
                                        concurrency=vault.settings.concurrency)

        scans = asyncio.run(scan())
        plan = plan_iosxe(vault, scans)
        _finish(vault, plan, apply, as_json)
    finally:
        vault.close()
