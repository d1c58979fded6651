"""The dashboard: the fleet at a glance for anyone who may read rotations.

Counts by last outcome and the flags that need a person (`keyturn.accounts_view`, the view behind
`keyturn status` and ``GET /accounts``), rotations due in the next 24 h, failed rotations in the last
24 h, per-site queues and workers when a broker is configured (the request ledger `keyturn status` and
``/metrics`` read), and rotations per day for 30 days as an inline SVG bar chart drawn here (no script).
A consumer, who may read none of this, sees what it may do instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.engine import Engine

from keyturn.accounts_view import FLAGS, NEVER, Account, list_accounts
from keyturn.api.auth import Permission, context
from keyturn.console.render import render
from keyturn.console.session import ConsoleSession, require_session
from keyturn.engine.journal import read_tx, rotations
from keyturn.engine.outcome import Outcome

router = APIRouter()

DAYS = 30
SHOWN = 10
# Outcomes that count as a failure on the dashboard: the new secret is not in use, or nobody knows.
FAILURES = (Outcome.FAILED.value, Outcome.NEEDS_ATTENTION.value, Outcome.ROLLED_BACK.value,
            Outcome.UNVERIFIED.value)
CHART_W, CHART_H, CHART_PAD = 600, 160, 20


@dataclass
class Bar:
    day: date
    ok: int
    failed: int
    x: float = 0.0
    w: float = 0.0
    ok_y: float = 0.0
    ok_h: float = 0.0
    failed_y: float = 0.0
    failed_h: float = 0.0


@dataclass
class Overview:
    total: int
    by_outcome: list[tuple[str, int]]
    flags: dict[str, int]
    attention: list[Account]
    due: list[Account]
    due_count: int
    failures: list[dict[str, Any]]
    failure_count: int
    bars: list[Bar]
    peak: int
    sites: list[Any] = field(default_factory=list)
    workers: list[dict[str, Any]] = field(default_factory=list)
    broker: bool = False


def _day_expr(engine: Engine) -> Any:
    """The UTC calendar day of `started_at` as ``YYYY-MM-DD`` text, per backend."""
    if engine.dialect.name == "sqlite":   # stored as ISO text in UTC
        return sa.func.substr(rotations.c.started_at, 1, 10)
    return sa.func.to_char(sa.func.timezone("UTC", rotations.c.started_at), "YYYY-MM-DD")


def daily(engine: Engine, now: datetime, days: int = DAYS) -> list[Bar]:
    """Finished rotations per UTC day for the last `days` days (today included): one grouped query."""
    first = (now.astimezone(UTC) - timedelta(days=days - 1)).date()
    since = datetime(first.year, first.month, first.day, tzinfo=UTC)
    day = _day_expr(engine)
    q = (sa.select(day.label("day"), rotations.c.outcome, sa.func.count())
         .where(rotations.c.started_at >= since, rotations.c.outcome.is_not(None))
         .group_by(day, rotations.c.outcome))
    with read_tx(engine) as conn:
        rows = conn.execute(q).all()
    bars = {first + timedelta(days=i): Bar(first + timedelta(days=i), 0, 0) for i in range(days)}
    for text, outcome, count in rows:
        try:
            bar = bars[date.fromisoformat(str(text))]
        except (ValueError, KeyError):
            continue
        if outcome in FAILURES:
            bar.failed += int(count)
        else:
            bar.ok += int(count)
    return list(bars.values())


def _layout(bars: list[Bar]) -> int:
    """Place the bars in the chart's coordinates; returns the tallest day's count."""
    peak = max((b.ok + b.failed for b in bars), default=0)
    scale = (CHART_H - CHART_PAD) / peak if peak else 0.0
    step = CHART_W / max(1, len(bars))
    for i, b in enumerate(bars):
        b.x, b.w = round(i * step + 1, 1), round(step - 2, 1)
        b.ok_h = round(b.ok * scale, 1)
        b.failed_h = round(b.failed * scale, 1)
        b.ok_y = round(CHART_H - b.ok_h, 1)
        b.failed_y = round(b.ok_y - b.failed_h, 1)
    return peak


def _failures(engine: Engine, since: datetime) -> tuple[list[dict[str, Any]], int]:
    cond = sa.and_(rotations.c.started_at >= since, rotations.c.outcome.in_(FAILURES))
    with read_tx(engine) as conn:
        rows = conn.execute(sa.select(rotations.c.id, rotations.c.record_uid, rotations.c.title,
                                      rotations.c.outcome, rotations.c.reason, rotations.c.started_at)
                            .where(cond).order_by(rotations.c.started_at.desc()).limit(SHOWN)).mappings()
        shown = [dict(r) for r in rows]
        count = int(conn.execute(sa.select(sa.func.count()).select_from(rotations).where(cond)).scalar_one())
    return shown, count


def overview(engine: Engine, *, broker: bool, now: datetime | None = None) -> Overview:
    """Everything the dashboard shows (metadata only, nothing decrypted)."""
    from keyturn.dispatch.ledger import RequestLedger

    now = now or datetime.now(UTC)
    accounts = list_accounts(engine, now=now).accounts
    counts: dict[str, int] = {}
    flags = dict.fromkeys(FLAGS, 0)
    for a in accounts:
        counts[a.last_outcome or NEVER] = counts.get(a.last_outcome or NEVER, 0) + 1
        for f in a.flags:
            flags[f] = flags.get(f, 0) + 1
    horizon = now + timedelta(hours=24)
    due = sorted((a for a in accounts if a.next_due is not None and a.next_due <= horizon),
                 key=lambda a: (a.next_due or horizon, a.title))
    failures, failure_count = _failures(engine, now - timedelta(hours=24))
    bars = daily(engine, now)
    ledger = RequestLedger(engine)
    sites = ledger.site_stats()
    workers = ledger.live_workers() if broker or sites else []
    return Overview(
        total=len(accounts), by_outcome=sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])), flags=flags,
        attention=[a for a in accounts if a.flags][:SHOWN], due=due[:SHOWN], due_count=len(due),
        failures=failures, failure_count=failure_count, bars=bars, peak=_layout(bars), sites=sites,
        workers=workers, broker=broker)


@router.get("/", include_in_schema=False)
async def dashboard(request: Request, session: Annotated[ConsoleSession, Depends(require_session())]
                    ) -> Response:
    ctx = context(request)
    data = None
    if session.principal.can(Permission.ROTATION_READ):
        data = await ctx.db(overview, ctx.vault.engine, broker=bool(ctx.vault.settings.broker_url))
    return render(request, "dashboard.html", {"o": data, "chart_w": CHART_W, "chart_h": CHART_H})


__all__ = ["Overview", "daily", "overview", "router"]
