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
    out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout)
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
