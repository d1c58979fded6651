"""Real workers for the scale-out tests: `keyturn worker` subprocesses against the machine's Redis,
RabbitMQ and PostgreSQL, a simulator lab in the test's loop, and `keyturn rotate` as a user runs it.

Each test gets its own Redis database number / RabbitMQ queue names (a unique site), so leftovers of an
earlier run can never be consumed by this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
REDIS = "redis://127.0.0.1:6379"
RABBIT = "amqp://guest:guest@127.0.0.1:5672//"
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def unique_site() -> str:
    return "t" + uuid.uuid4().hex[:10]


def env_for(home: Path, *, broker: str, redis: str = REDIS, database_url: str | None = None,
            sites: Sequence[str] = (), **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env.update({"KEYTURN_HOME": str(home), "PYTHONPATH": str(ROOT / "src"), "KEYTURN_BROKER_URL": broker,
                "KEYTURN_REDIS_URL": redis, "KEYTURN_SITES": ",".join(sites)})
    if database_url:
        env["KEYTURN_DATABASE_URL"] = database_url
    env.update(extra)
    return env


async def keyturn(env: dict[str, str], *args: str, timeout: float = 240) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "keyturn.cli.main", *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    except (TimeoutError, asyncio.CancelledError):
        if proc.returncode is None:     # never leave a command (a worker that should have refused) behind
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        raise
    return proc.returncode or 0, out.decode(), err.decode()


class Worker:
    """One `keyturn worker` subprocess (its own process group, so a SIGKILL takes all of it)."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.env, self.log, self.args = env, log, args
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Worker:
        fh = self.log.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "keyturn.cli.main", "worker", *self.args, env=self.env, cwd=ROOT,
            stdout=fh, stderr=fh, start_new_session=True)
        fh.close()
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    async def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout=30)
            except TimeoutError:
                self.kill()
                await self.proc.wait()
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.asynccontextmanager
async def workers(env: dict[str, str], tmp: Path, count: int, *args: str) -> AsyncIterator[list[Worker]]:
    started = [await Worker(env, tmp / f"worker-{i}.log", *args).start() for i in range(count)]
    try:
        yield started
    finally:
        for w in started:
            await w.stop()


def results(out: str) -> list[dict[str, Any]]:
    return list(json.loads(out)["results"])


def redis_db(n: int) -> str:
    """A Redis database of its own for one test module (flushed first)."""
    import redis

    client = redis.Redis.from_url(f"{REDIS}/{n}")
    client.flushdb()
    client.close()
    return f"{REDIS}/{n}"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(check: Any, *, timeout: float = 60, poll: float = 0.2, what: str = "condition") -> Any:
    """Poll `check()` (sync or async) until it returns something truthy; that value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(poll)


class PrivateRedis:
    """A `redis-server` of the test's own on a free port, without persistence: a restart loses every
    key (the broker's queues and unacknowledged messages), as a Redis run without AOF/RDB does."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.dir = tmp
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> PrivateRedis:
        self.proc = await asyncio.create_subprocess_exec(
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.dir), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        await wait_until(self._answers, timeout=20, poll=0.05, what=f"redis-server on {self.port}")
        return self

    def _answers(self) -> bool:
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@contextlib.asynccontextmanager
async def private_redis(tmp: Path) -> AsyncIterator[PrivateRedis]:
    server = await PrivateRedis(tmp).start()
    try:
        yield server
    finally:
        await server.kill()


def rabbit_up() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


def delete_rabbit_queue(site: str) -> None:
    """Drop a test's durable queue (unique per test) so runs do not pile queues up on the broker."""
    import amqp

    from keyturn.dispatch.app import queue_name

    conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
    try:
        conn.connect()
        conn.channel().queue_delete(queue_name(site))
    finally:
        conn.close()
