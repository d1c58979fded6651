"""`keyturn serve`: the API, the scheduler and the rotation workers in one process, on one event loop.

    exit = asyncio.run(serve(vault, ServeOptions(port=8443, cert=..., key=...)))

Start: JSON logging → shared targets (one Meraki per-org budget, whose 429 count feeds `/metrics`) →
the API app → the scheduler (engine recovery runs first inside it) → the audit sinks and the
notification rules (`keyturn.notify`), each reading the audit table with its own cursor → uvicorn on
`host:port` (TLS when `cert`/`key` are given; 127.0.0.1 by default).

SIGTERM / SIGINT: uvicorn stops accepting connections and finishes open requests; the scheduler stops
dispatching; rotations in flight get `grace` seconds to finish; any still running are cancelled and
left *parked* — their journal row stays open and their candidate pending, so recovery on the next start
probes the device and finishes them forward or backward. A second signal cancels at once. Exit 0 after
a clean shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keyturn.engine.ratelimit import Budgets
    from keyturn.engine.rotate import RotationEngine, TargetPool
    from keyturn.vault import Vault

log = logging.getLogger("keyturn.serve")


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8443
    cert: Path | None = None
    key: Path | None = None
    concurrency: int = 16
    per_device: int = 1
    grace: float = 30.0
    scheduler: bool = True
    log_level: str = "INFO"


def shared_targets(meraki_share: float = 0.9) -> tuple[TargetPool, Budgets]:
    """One target per kind for every engine in the process, and the Meraki budget they share."""
    from keyturn.engine.rotate import TargetPool

    pool = TargetPool(meraki_share=meraki_share)
    return pool, pool.budgets


def rate_limited(budgets: Budgets) -> Callable[[], int]:
    """HTTP 429s received so far: every 429 penalises its organisation's budget once."""
    return budgets.penalties


class _Server:
    """uvicorn's Server with our signal handling: no re-raise of the signal after shutdown (so the
    process can drain rotations and exit 0), and a hook to stop the scheduler at the same moment."""

    def __init__(self, config: Any, on_signal: Callable[[int], None]) -> None:
        import uvicorn

        outer = self

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, outer.signal, sig)
                try:
                    yield
                finally:
                    pass  # handlers stay until `serve` returns: a second signal means "now"

        self.server = Server(config)
        self.on_signal = on_signal
        self.signals = 0

    def signal(self, sig: int) -> None:
        self.signals += 1
        self.server.should_exit = True
        if self.signals > 1:
            self.server.force_exit = True
        self.on_signal(sig)


async def serve(vault: Vault, options: ServeOptions, *, sock: socket.socket | None = None,
                started: Callable[[int], None] | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code. `sock` (tests) is an already bound socket;
    `started(port)` is called once the server listens."""
    import uvicorn

    from keyturn.api.app import attach_scheduler, create_app
    from keyturn.engine.rotate import RotationEngine
    from keyturn.hardening import harden_process

    # Idempotent after the CLI entry's; the script policy it sets lives in this run's context only.
    harden_process(script_user=vault.settings.script_user)
    pool, budgets = shared_targets(vault.settings.meraki_api_share)
    engine_factory: Callable[[str], Any]
    concurrency = options.concurrency
    follower = None
    if vault.settings.broker_url:
        # Workers rotate; this process enqueues (API, scheduler) and waits on the ledger, so the number
        # in flight is the workers' business, not a local semaphore's.
        from keyturn.dispatch.client import Dispatcher as RotationDispatcher
        from keyturn.dispatch.client import Follower, RemoteEngine

        to_workers = RotationDispatcher(vault, vault.settings.broker_url)
        follower = Follower(to_workers.ledger)
        concurrency = 10_000

        def engine_factory(actor: str) -> RemoteEngine:
            return RemoteEngine(to_workers, follower, actor)
        log.info("rotations go to workers through the broker %s", _broker_display(vault))
    else:
        def engine_factory(actor: str) -> RotationEngine:
            return RotationEngine(vault, targets=pool, actor=actor)

    app = create_app(vault, engine_factory=engine_factory, concurrency=concurrency,
                     per_device=options.per_device, rate_limited=rate_limited(budgets))
    runner = app.state.ctx.runner
    stop = asyncio.Event()
    sched_task: asyncio.Task[None] | None = None
    grace_task: asyncio.Task[None] | None = None
    if options.scheduler:
        from keyturn.scheduler.service import Scheduler

        recover_engine = runner.engine("scheduler")

        async def rotate(uid: str) -> Any:
            return await runner.rotate(uid, actor="scheduler")

        # refresh_every: schedules set and manual rotations done from other processes (the CLI)
        # are picked up within a minute, not only after an API call.
        scheduler = Scheduler(vault, rotate, concurrency=concurrency,
                              recover=recover_engine.recover, refresh_every=60.0)
        sched_task = asyncio.create_task(scheduler.run(stop), name="keyturn-scheduler")
        attach_scheduler(app, scheduler, alive=lambda: sched_task is not None and not sched_task.done())
        # Replaced identity PSKs whose grace is over (`keyturn.engine.grace`): swept here, in-process
        # even when workers rotate (it needs only the vault, the account locks and the targets).
        from keyturn.engine.grace import sweep_forever

        grace_engine = (recover_engine if isinstance(recover_engine, RotationEngine)
                        else RotationEngine(vault, targets=pool, actor="grace"))
        grace_task = asyncio.create_task(sweep_forever(grace_engine, stop), name="keyturn-ipsk-grace")

    # Audit sinks (`[[keyturn.audit_sinks]]`): shipped from the durable audit table, spooled on outage.
    dispatcher = None
    sinks_task: asyncio.Task[None] | None = None
    if vault.settings.audit_sinks:
        from keyturn.audit.sinks.dispatcher import Dispatcher

        dispatcher = Dispatcher.from_settings(vault.settings, vault)
        sinks_task = asyncio.create_task(dispatcher.run(stop), name="keyturn-audit-sinks")
    # Notifications (`[[keyturn.notify]]`): rotation outcomes from the same table, a cursor per rule.
    notifier = None
    notify_task: asyncio.Task[None] | None = None
    if vault.settings.notify:
        from keyturn.notify.dispatcher import Notifier

        notifier = Notifier.from_settings(vault.settings, vault)
        notify_task = asyncio.create_task(notifier.run(stop), name="keyturn-notify")

    config = uvicorn.Config(
        app, host=options.host, port=options.port, log_config=None, access_log=False, lifespan="off",
        ssl_certfile=str(options.cert) if options.cert else None,
        ssl_keyfile=str(options.key) if options.key else None, server_header=False,
    )
    cancelled_now = False

    def on_signal(sig: int) -> None:
        nonlocal cancelled_now
        log.info("signal %s: shutting down", signal.Signals(sig).name)
        stop.set()
        if server.signals > 1:
            cancelled_now = True

    server = _Server(config, on_signal)
    if sock is None:
        try:
            sock = socket.create_server((options.host, options.port), reuse_port=False)
        except OSError as exc:
            log.error("cannot listen on %s:%d (%s)", options.host, options.port, exc.strerror or exc)
            await _stop_scheduler(sched_task, stop, 0.0)
            await runner.aclose()
            for d, t in ((dispatcher, sinks_task), (notifier, notify_task)):
                if d is not None:
                    await _stop_sinks(d, t, stop)
            return 1
    port = sock.getsockname()[1]
    log.info("keyturn serve listening on %s://%s:%d", "https" if options.cert else "http", options.host, port)
    if started is not None:
        started(port)
    code = 0
    try:
        await server.server.serve(sockets=[sock])
        if not server.server.started:
            log.error("the API server did not start (see the previous message)")
            code = 1
    finally:
        grace = 0.0 if cancelled_now else options.grace
        await _stop_scheduler(sched_task, stop, grace)
        await _stop_scheduler(grace_task, stop, grace)
        finished, parked = await runner.drain(grace)
        await runner.aclose()
        if follower is not None:
            await follower.aclose()
        if dispatcher is not None:
            await _stop_sinks(dispatcher, sinks_task, stop)
        if notifier is not None:
            await _stop_sinks(notifier, notify_task, stop)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(sig)
        log.info("stopped: %d rotation(s) finished during shutdown, %d parked for recovery", finished, parked)
    return code


def _broker_display(vault: Vault) -> str:
    from keyturn.dispatch.client import display_url

    return display_url(str(vault.settings.broker_url))


async def _stop_sinks(dispatcher: Any, task: asyncio.Task[None] | None, stop: asyncio.Event) -> None:
    """Stop the delivery loop, then one last pass so the shutdown's own audit entries go out too
    (what a sink does not take stays spooled for the next start)."""
    stop.set()
    if task is not None:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, timeout=10)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(dispatcher.deliver_once(), timeout=10)
    await dispatcher.aclose()


async def _stop_scheduler(task: asyncio.Task[None] | None, stop: asyncio.Event, grace: float) -> None:
    stop.set()
    if task is None:
        return
    _done, pending = await asyncio.wait({task}, timeout=grace)
    if pending:
        task.cancel()  # its rotations in flight are parked for recovery
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


__all__ = ["ServeOptions", "rate_limited", "serve", "shared_targets"]
