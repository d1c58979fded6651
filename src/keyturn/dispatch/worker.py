"""`keyturn worker`: a Celery worker process that runs rotations with the same engine as everything else.

    keyturn worker --site dc-east --concurrency 32 --processes 2

Inside a worker process the engine stays asyncio: one event loop in its own thread runs every rotation
of the process (connections and TLS sessions are shared per device, many devices in flight), and
Celery's thread pool (`--concurrency` threads) hands each task's request id to that loop and waits.
`--processes P` forks P such processes (the way past one core's worth of Python), each a worker of its
own with its own heartbeat.

Before it consumes anything a worker checks, and refuses with `WorkerRefused` naming the problem:
a broker is configured; the site is known; the database's schema revision is the one this code needs
(no silent migration from a worker); the master key opens the vault (`VaultSealed` otherwise); a
SQLite vault is not shared with a worker on another host; the limits workers share have a Redis.

While it runs: a heartbeat every `KEYTURN_WORKER_HEARTBEAT` s (10) registers the worker (`keyturn
status`, `/metrics`), renews its request claims and, every third beat, re-publishes the requests of its
site stranded for `KEYTURN_WORKER_STRANDED_AFTER` s (30) since their last publish: queued while the
site's queue is empty (a Redis broker restarted without persistence lost it), or claimed by a worker
that died. Duplicates are harmless, the ledger decides. On Redis it also sweeps the broker for the
unacknowledged messages of dead workers every KEYTURN_BROKER_VISIBILITY_TIMEOUT / 5 s (1 to 10 s), so
one is handed out again soon after its visibility timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from keyturn.dispatch.app import TASK_ROTATE, make_app, queue_name
from keyturn.errors import WorkerRefused
from keyturn.holders import HOST, set_site

if TYPE_CHECKING:
    from celery import Celery

    from keyturn.config import Settings
    from keyturn.dispatch.client import Dispatcher
    from keyturn.dispatch.runtime import WorkerRuntime
    from keyturn.vault import Vault

log = logging.getLogger("keyturn.worker")
T = TypeVar("T")


@dataclass(frozen=True)
class WorkerOptions:
    site: str = "default"
    concurrency: int = 32
    processes: int = 1
    loglevel: str = "WARNING"


def schema_revisions(url: str) -> tuple[str | None, str]:
    """(the database's Alembic revision or None, the revision this code needs)."""
    import sqlalchemy as sa
    from alembic.script import ScriptDirectory

    from keyturn.vault.storage import _MIGRATIONS_DIR

    head = ScriptDirectory(str(_MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None, head
            current = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    except sa.exc.SQLAlchemyError as exc:
        raise WorkerRefused(f"keyturn worker: the database is unreachable "
                            f"({type(getattr(exc, 'orig', exc)).__name__})") from exc
    finally:
        engine.dispose()
    return (str(current) if current else None), head


def preflight(settings: Settings, options: WorkerOptions) -> None:
    """The checks that need no vault (see the module docstring)."""
    from keyturn.sites import check_site

    if not settings.broker_url:
        raise WorkerRefused("keyturn worker needs a broker: set KEYTURN_BROKER_URL (redis://… or amqp://…)")
    check_site(options.site, settings)
    if settings.effective_redis_url is None:
        raise WorkerRefused("workers share the Meraki budgets and per-device limits in Redis: set "
                            "KEYTURN_REDIS_URL (the broker is not Redis)")
    current, head = schema_revisions(settings.effective_database_url)
    if current != head:
        raise WorkerRefused(f"keyturn worker: the database schema is at {current or 'nothing'} but this "
                            f"keyturn needs {head}; upgrade every keyturn to one version, run `keyturn db "
                            "upgrade` with it, then start the workers")


def check_storage(vault: Vault, ledger_hosts: Sequence[str]) -> None:
    """SQLite only when every worker is on this host (a file database cannot be shared safely)."""
    if vault.engine.dialect.name != "sqlite":
        return
    others = sorted({h for h in ledger_hosts if h != HOST})
    if others:
        raise WorkerRefused(f"a SQLite vault cannot serve workers on several hosts (live workers on "
                            f"{', '.join(others)}); use PostgreSQL (KEYTURN_DATABASE_URL=postgresql://…)")


class _Loop:
    """An asyncio loop in a daemon thread; `run(coro)` from any thread waits for its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="keyturn-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def run(settings: Settings, options: WorkerOptions) -> int:
    """Run the worker(s) until stopped; returns the exit code."""
    preflight(settings, options)
    if options.processes <= 1:
        return _run_one(settings, options)
    import multiprocessing
    import signal

    # Fork before anything opens a connection or a thread: each child is a whole worker.
    ctx = multiprocessing.get_context("fork")
    children = [ctx.Process(target=_child, args=(settings, options), name=f"keyturn-worker-{i}")
                for i in range(options.processes)]
    for child in children:
        child.start()

    def forward(sig: int, _frame: Any) -> None:
        for child in children:
            if child.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()
    return max((child.exitcode or 0) for child in children)


def _child(settings: Settings, options: WorkerOptions) -> None:
    raise SystemExit(_run_one(settings, options))


def _run_one(settings: Settings, options: WorkerOptions) -> int:
    from keyturn.dispatch.ledger import RequestLedger
    from keyturn.vault import Vault

    set_site(options.site)
    name = f"keyturn-{options.site}-{os.getpid()}@{HOST}"
    vault = Vault.open(settings)           # VaultSealed before anything is consumed when the key is wrong
    loop: _Loop | None = None
    try:
        ledger = RequestLedger(vault.engine)
        check_storage(vault, [w["host"] for w in ledger.live_workers()])
        loop = _Loop()
        runtime = loop.run(_runtime(vault, settings, name))
        app = make_app(str(settings.broker_url), visibility_timeout=settings.broker_visibility_timeout)
        _register(app, runtime, loop)
        from keyturn.dispatch.client import Dispatcher

        dispatcher = Dispatcher(vault, str(settings.broker_url), app=app)
        beat = asyncio.run_coroutine_threadsafe(
            _heartbeat(runtime, dispatcher, name, options), loop.loop)
        log.warning("keyturn worker %s: site %s, %d thread(s), broker %s", name, options.site,
                    options.concurrency, _display(str(settings.broker_url)))
        try:
            app.worker_main(["worker", "-P", "threads", "-c", str(options.concurrency),
                             "-Q", queue_name(options.site), "-n", name, "--without-gossip",
                             "--without-mingle", "-l", options.loglevel])
        finally:
            beat.cancel()
            with contextlib.suppress(Exception):
                ledger.leave(name)
            with contextlib.suppress(Exception):
                loop.run(runtime.engine.aclose())
        return 0
    finally:
        if loop is not None:
            loop.stop()
        vault.close()


async def _runtime(vault: Vault, settings: Settings, name: str) -> WorkerRuntime:
    """Built on the worker's loop (the Redis clients bind to it)."""
    from keyturn.dispatch.runtime import WorkerRuntime
    from keyturn.engine.rotate import RotationEngine, TargetPool
    from keyturn.engine.shared_budgets import RedisOrgBudgets
    from keyturn.engine.shared_limits import DeviceSlots

    redis_url = settings.effective_redis_url
    assert redis_url is not None
    budgets = RedisOrgBudgets(redis_url, headroom=settings.meraki_api_share)
    slots = DeviceSlots(redis_url, per_device=settings.per_device_concurrency, ttl=settings.worker_slot_ttl)
    pool = TargetPool(meraki_share=settings.meraki_api_share, budgets=budgets)
    engine = RotationEngine(vault, targets=pool, actor=f"worker:{name}")
    return WorkerRuntime(engine, settings, slots=slots)


def _register(app: Celery, runtime: WorkerRuntime, loop: _Loop) -> None:
    @app.task(name=TASK_ROTATE, ignore_result=True)  # type: ignore[untyped-decorator]
    def rotate(request_id: str) -> str:
        status = loop.run(runtime.run(request_id))
        log.info("request %s: %s", request_id[:12], status)
        return status


async def _heartbeat(runtime: WorkerRuntime, dispatcher: Dispatcher, name: str,
                     options: WorkerOptions) -> None:
    e = runtime.engine
    settings = runtime.settings
    beats = 0
    while True:
        try:
            await e.db(runtime.ledger.heartbeat, name, site=options.site, concurrency=options.concurrency,
                       in_flight=runtime.in_flight)
            await e.db(runtime.ledger.renew_claims)
            if beats % 3 == 0:
                await asyncio.to_thread(_republish, dispatcher, options.site,
                                        settings.worker_stranded_after)
        except Exception:  # the heartbeat must outlive a database or broker blip
            log.warning("worker heartbeat failed", exc_info=True)
        beats += 1
        await asyncio.sleep(settings.worker_heartbeat)


def _republish(dispatcher: Dispatcher, site: str, older_than: float) -> None:
    queued, dead = dispatcher.ledger.stranded([site], older_than=older_than)
    again = list(dead)
    if queued and queue_depth(dispatcher.app, site) == 0:
        again.extend(queued)
    if again:
        log.warning("re-publishing %d request(s) of site %s whose message was lost", len(again), site)
        dispatcher.publish(again, refuse=False)


def queue_depth(app: Celery, site: str) -> int | None:
    """Messages waiting in a site's queue (None when the broker cannot say). A queue the broker does not
    know holds none: Redis keeps a queue as a list and drops it when it is empty (or lost in a restart)."""
    try:
        with app.connection_for_read() as conn:
            try:
                ok = conn.default_channel.queue_declare(queue=queue_name(site), passive=True)
            except conn.channel_errors as exc:
                if getattr(exc, "code", None) == 404 or "NOT_FOUND" in str(exc):
                    return 0
                raise
            return int(ok.message_count)
    except Exception:  # a broker blip: unknown, not zero
        return None


def _display(url: str) -> str:
    from keyturn.dispatch.client import display_url

    return display_url(url)


__all__ = ["WorkerOptions", "check_storage", "preflight", "queue_depth", "run", "schema_revisions"]
