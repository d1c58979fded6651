"""Prometheus metrics for `keyturn serve` (served at ``/metrics``, text exposition format).

    keyturn_rotations_total{outcome,target}          every finished rotation in the journal (all
                                                     processes: API, scheduler, CLI) — read at scrape
    keyturn_rotation_duration_seconds{target}        histogram of rotations run by this process
    keyturn_rotation_queue_depth{source}             rotations waiting: api (accepted, not started),
                                                     scheduler (due, not dispatched)
    keyturn_rotations_in_flight                      rotations running in this process
    keyturn_schedule_next_due_timestamp_seconds      earliest next due time (absent without schedules)
    keyturn_rate_limited_total                       HTTP 429 answers received from device APIs
    keyturn_api_denied_total{status}                 401 / 403 answers given
    keyturn_api_requests_total{method,route,status}  API requests served
    keyturn_site_queue_depth{site}                   rotation requests waiting for a worker (scale-out)
    keyturn_site_queue_age_seconds{site}             age of the oldest waiting request
    keyturn_site_running{site}                       requests a worker has claimed
    keyturn_site_workers{site}                       live `keyturn worker` processes
    keyturn_site_in_flight{site}                     rotations the site's workers run now

Each app gets its own `CollectorRegistry` (several apps in one test process must not collide). Nothing
here carries a record title, a token or a secret: labels are target kinds, outcomes and route templates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

log = logging.getLogger("keyturn.api.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class _JournalCollector(Collector):
    """Reads rotation counts and live gauges at scrape time (the journal is the source of truth)."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        m = self._m
        total = CounterMetricFamily("keyturn_rotations", "Finished rotations by outcome and target kind.",
                                    labels=["outcome", "target"])
        if m.engine is not None:
            from keyturn.engine.journal import rotations
            try:
                with m.engine.connect() as conn:
                    rows = conn.execute(
                        sa.select(rotations.c.outcome, rotations.c.target, sa.func.count())
                        .where(rotations.c.outcome.is_not(None))
                        .group_by(rotations.c.outcome, rotations.c.target)
                    ).all()
            except sa.exc.SQLAlchemyError as exc:  # a scrape must not fail because the DB blinked
                log.warning("metrics: rotation counts unavailable (%s)", type(exc).__name__)
                rows = []
            for outcome, target, count in rows:
                total.add_metric([str(outcome), str(target)], float(count))
        yield total
        depth = GaugeMetricFamily("keyturn_rotation_queue_depth", "Rotations waiting to start.",
                                  labels=["source"])
        depth.add_metric(["api"], float(m.api_queue_depth()))
        if m.scheduler_queue_depth is not None:
            depth.add_metric(["scheduler"], float(m.scheduler_queue_depth()))
        yield depth
        yield GaugeMetricFamily("keyturn_rotations_in_flight", "Rotations running in this process.",
                                value=float(m.in_flight()))
        if m.next_due is not None:
            due = m.next_due()
            if due is not None:
                yield GaugeMetricFamily("keyturn_schedule_next_due_timestamp_seconds",
                                        "Earliest next scheduled rotation (Unix time).",
                                        value=due.timestamp())
        yield from _site_gauges(m.engine)
        limited = CounterMetricFamily("keyturn_rate_limited", "HTTP 429 answers received from device APIs.")
        limited.add_metric([], float(m.rate_limited()))
        yield limited


_SITE_GAUGES = (
    ("keyturn_site_queue_depth", "Rotation requests waiting for a worker of the site.", "queued"),
    ("keyturn_site_queue_age_seconds", "Age of the site's oldest waiting request.", "oldest_queued_age"),
    ("keyturn_site_running", "Requests the site's workers have claimed.", "running"),
    ("keyturn_site_workers", "Live keyturn workers of the site.", "workers"),
    ("keyturn_site_in_flight", "Rotations the site's workers run now.", "in_flight"),
)


def _site_gauges(engine: Engine | None) -> Iterable[GaugeMetricFamily]:
    """Per-site queue and worker gauges from the request ledger (empty without workers)."""
    if engine is None:
        return
    from keyturn.dispatch.ledger import RequestLedger
    from keyturn.errors import KeyturnError

    try:
        stats = RequestLedger(engine).site_stats()
    except (sa.exc.SQLAlchemyError, KeyturnError) as exc:
        log.warning("metrics: site queues unavailable (%s)", type(exc).__name__)
        return
    for name, doc, attr in _SITE_GAUGES:
        family = GaugeMetricFamily(name, doc, labels=["site"])
        for st in stats:
            family.add_metric([st.site], float(getattr(st, attr)))
        yield family


class Metrics:
    """The app's metrics. Sources are callables so the runner/scheduler can be wired after creation."""

    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine
        self.registry = CollectorRegistry(auto_describe=True)
        self.api_queue_depth: Callable[[], int] = lambda: 0
        self.in_flight: Callable[[], int] = lambda: 0
        self.scheduler_queue_depth: Callable[[], int] | None = None
        self.next_due: Callable[[], datetime | None] | None = None
        self.rate_limited: Callable[[], int] = lambda: 0
        self.durations = Histogram("keyturn_rotation_duration_seconds", "Rotation duration by target kind.",
                                   ["target"], buckets=DURATION_BUCKETS, registry=self.registry)
        self._denied = Counter("keyturn_api_denied", "401/403 answers given.", ["status"],
                               registry=self.registry)
        self._requests = Counter("keyturn_api_requests", "API requests served.",
                                 ["method", "route", "status"], registry=self.registry)
        self.registry.register(_JournalCollector(self))

    def observe_rotation(self, target: str, seconds: float) -> None:
        self.durations.labels(target=target or "?").observe(max(0.0, seconds))

    def denied(self, status: int) -> None:
        self._denied.labels(status=str(status)).inc()

    def request(self, method: str, route: str, status: int) -> None:
        self._requests.labels(method=method, route=route, status=str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "Metrics"]
