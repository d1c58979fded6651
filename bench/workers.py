"""`keyturn worker` processes for the scale-out benchmarks and the chaos run, and what they cost.

    env = broker_env(home.env, db=14, site=site)      # a Redis database and a site of this run alone
    group = WorkerGroup(env, workdir / "w0", "--site", site, "--processes", "2").start()
    group.wait_ready(2)                                # every forked worker process consumes
    before = group.cpu()
    ...                                                # keyturn rotate --all (enqueues, follows)
    spent = group.cpu() - before                       # CPU-s of the worker processes, children included
    group.stop()

A group is one `keyturn worker` command in a session of its own, so the parent and the processes it
forks are found (and SIGKILLed) together. CPU and peak RSS come from `/proc/<pid>/stat` and
`/proc/<pid>/status` of every process of the session: the kernel's accounting, read while they run.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import KEYTURN, Home

REDIS = "redis://127.0.0.1:6379"
_TICK = os.sysconf("SC_CLK_TCK")
_LIVE: set[WorkerGroup] = set()      # groups started and not stopped: stopped at exit, whatever happens


def _stop_all() -> None:
    for group in list(_LIVE):
        group.stop(timeout=10)


def _exit_on_sigterm() -> None:
    """A SIGTERM ends this process through `sys.exit`, so `_stop_all` runs (workers live in sessions of
    their own: nothing else would stop them, and an orphan would consume the next run's queue)."""
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(128 + signal.SIGTERM))


def broker_env(env: Mapping[str, str], *, db: int, site: str, **extra: str) -> dict[str, str]:
    """`env` plus a Redis broker (database `db`, also the shared limits) and `site` as the only site."""
    out = {k: v for k, v in env.items() if k not in ("KEYTURN_BROKER_URL", "KEYTURN_REDIS_URL")}
    out.update({"KEYTURN_BROKER_URL": f"{REDIS}/{db}", "KEYTURN_SITES": site, **extra})
    return out


def flush_redis(db: int) -> None:
    import redis

    client = redis.Redis.from_url(f"{REDIS}/{db}")
    try:
        client.flushdb()
    finally:
        client.close()


def set_site(home: Home, site: str) -> int:
    """Put every resource record that a rotation profile names on `site` (its rotations go to that
    site's queue); returns how many."""
    vault = home.open_vault()
    try:
        resources = {str(r.meta["rotation"]["resource"]) for r in vault.find()
                     if isinstance(r.meta.get("rotation"), dict) and r.meta["rotation"].get("resource")}
        with vault.unit():
            for uid in sorted(resources):
                vault.set_meta(uid, "site", site)
        return len(resources)
    finally:
        vault.close()


# ---- /proc ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    session: int
    cpu: float          # user + system seconds of the process itself (threads included)


def _stat(pid: int) -> Proc | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: fields start after the last ')'
    fields = raw[raw.rindex(")") + 2:].split()
    return Proc(pid=pid, ppid=int(fields[1]), session=int(fields[3]),
                cpu=(int(fields[11]) + int(fields[12])) / _TICK)


def session_procs(session: int) -> list[Proc]:
    """Every live process of a session (a command started with `start_new_session`)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            p = _stat(int(entry))
            if p is not None and p.session == session:
                out.append(p)
    return out


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the process's peak resident set so far."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds per pid at one moment; `b - a` is what each process spent in between (a process
    that appeared in between counts from zero, one that ended before `b` is not seen after `a`)."""

    per_pid: Mapping[int, float]

    @property
    def total(self) -> float:
        return sum(self.per_pid.values())

    def __sub__(self, earlier: CpuSample) -> float:
        return sum(max(0.0, cpu - earlier.per_pid.get(pid, 0.0)) for pid, cpu in self.per_pid.items())


def cpu_of(sessions: Iterable[int]) -> CpuSample:
    wanted = set(sessions)
    per: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            p = _stat(int(entry))
            if p is not None and p.session in wanted:
                per[p.pid] = p.cpu
    return CpuSample(per)


# ---- a worker command ----------------------------------------------------------------------------------


class WorkerGroup:
    """One `keyturn worker ARGS` command (its own session). Readiness is asked through the broker
    (Celery's `ping` control command): a worker that answers consumes. Logging stays at WARNING, so
    no log line per request or HTTP call is measured as keyturn's cost."""

    def __init__(self, env: Mapping[str, str], log: Path, *args: str) -> None:
        self.env = dict(env)
        self.log = log
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._app: Any = None

    def start(self) -> WorkerGroup:
        if not _LIVE:
            atexit.unregister(_stop_all)
            atexit.register(_stop_all)
            _exit_on_sigterm()
        _LIVE.add(self)
        self.starts += 1
        with self.log.open("ab") as fh:
            fh.write(f"---- start {self.starts}\n".encode())
            fh.flush()
            self.proc = subprocess.Popen([*KEYTURN, "worker", *self.args], env=self.env, stdout=fh,
                                         stderr=fh, stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready_count(self) -> int:
        """Worker processes of this group that answer a ping through the broker."""
        if self._app is None:
            from keyturn.dispatch.app import make_app

            self._app = make_app(self.env["KEYTURN_BROKER_URL"])
        pids = {p.pid for p in self.procs()}
        replies = self._app.control.ping(timeout=0.5) or []
        names = [name for reply in replies for name in reply]
        # worker names are keyturn-<site>-<pid>@<host>
        return sum(1 for name in names if _pid_of(name) in pids)

    def wait_ready(self, processes: int = 1, timeout: float = 120.0) -> float:
        """Block until `processes` worker processes consume; returns the seconds it took."""
        began = time.monotonic()
        while self.ready_count() < processes:
            if not self.alive:
                raise RuntimeError(f"keyturn worker exited ({self.proc.returncode if self.proc else '?'}); "
                                   f"see {self.log}")
            if time.monotonic() - began > timeout:
                raise RuntimeError(f"keyturn worker not ready within {timeout:g} s; see {self.log}")
            time.sleep(0.1)
        return time.monotonic() - began

    def procs(self) -> list[Proc]:
        return session_procs(self.pid) if self.alive else []

    def cpu(self) -> CpuSample:
        return cpu_of([self.pid]) if self.alive else CpuSample({})

    def peak_rss_mib(self) -> list[float]:
        """Peak RSS of each process of the group that runs rotations (the forked children when there
        are any, else the command's own process)."""
        procs = self.procs()
        children = [p for p in procs if p.pid != self.pid]
        return [peak_rss_mib(p.pid) for p in (children or procs)]

    def kill(self) -> None:
        """SIGKILL the whole group (kill -9 of a worker host's processes) and reap it."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (Celery's warm shutdown: running rotations finish), SIGKILL after `timeout`."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if session_procs(self.pid):     # a forked child outlived its parent: nothing stays behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        self.close()
        _LIVE.discard(self)
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None


def _pid_of(name: str) -> int:
    try:
        return int(name.split("@", 1)[0].rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


__all__ = ["REDIS", "CpuSample", "Proc", "WorkerGroup", "broker_env", "cpu_of", "flush_redis",
           "peak_rss_mib", "session_procs", "set_site"]
