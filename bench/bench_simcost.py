"""What the simulator costs per RESTCONF rotation (issue 14): so benchmarks measure keyturn, not the lab.

One lab of N RESTCONF devices (one user each) in its own process, rotated once by `keyturn rotate
--all`. Measured around that one command: the lab process's user+sys CPU (`/proc/<pid>/stat`, before
and after; its idle rate is measured first and reported, not subtracted), keyturn's CPU (`wait4`), and
from the lab's `/stats` the RESTCONF requests, accepted connections (each one a TLS handshake) and
resumed TLS sessions. Every account is verified afterwards through the lab's login check.

`before=REF` runs the same measurement first against the simulator of git revision REF: REF is checked
out into a temporary git worktree whose `src` goes first on the lab process's PYTHONPATH (keyturn and
the bench stay this tree's), and the worktree is removed afterwards; `before_keyturn` runs REF's keyturn
too in that row (setup and rotation: PYTHONPATH of the child processes), for a change that moves work
between keyturn and the device (requests per rotation). `profile=DIR` records each lab
process with py-spy during the rotation (collapsed stacks, `DIR/simcost-<label>.txt`) and prints the
functions where it spent most.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import REPO, Home, Lab, rotate_json, verify_all, worktree
from bench.report import Row

_TICKS = os.sysconf("SC_CLK_TCK")
_IDLE_SECONDS = 2.0


def process_cpu(pid: int) -> float:
    """User+sys CPU seconds of one live process so far (its threads included, children not)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()    # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS


@dataclass
class SimCost:
    label: str
    rotations: int
    verified: int
    sim_cpu: float          # seconds, during the rotation run
    idle_rate: float        # lab CPU seconds per second while nothing happens
    keyturn_cpu: float
    wall: float
    requests: int
    connections: int | None   # None: that simulator has no counter
    resumed: int | None

    def per_rotation(self, value: float | int | None, scale: float = 1.0) -> str:
        if value is None or not self.rotations:
            return "n/a"
        return f"{value * scale / self.rotations:.2f}"

    def summary(self) -> str:
        return (f"{self.label}: simulator {self.per_rotation(self.sim_cpu, 1000)} CPU-ms/rotation, "
                f"keyturn {self.per_rotation(self.keyturn_cpu, 1000)} CPU-ms/rotation; "
                f"{self.per_rotation(self.requests)} requests, {self.per_rotation(self.connections)} "
                f"TLS handshakes ({self.per_rotation(self.resumed)} resumed) per rotation; "
                f"lab idle {self.idle_rate * 1000:.1f} CPU-ms/s")


@contextmanager
def _lab_pythonpath(src: Path | None) -> Iterator[None]:
    """Let a lab process started inside this block import keyturn from `src` (the child inherits it)."""
    if src is None:
        yield
        return
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(src) + (os.pathsep + old if old else "")
    try:
        yield
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old



def py_spy() -> str | None:
    """The py-spy binary next to this interpreter, else on PATH (None: not installed)."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


@contextmanager
def _profiled(pid: int, out: Path | None) -> Iterator[None]:
    spy = py_spy() if out is not None else None
    if out is None or spy is None:
        yield
        return
    proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
                             "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)    # py-spy attaches before the first request
    try:
        yield
    finally:
        proc.send_signal(2)   # SIGINT: py-spy writes its file and exits
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _frame(frame: str) -> str:
    """`fn (dir/file.py:123)` → `fn (file.py)`: one entry per function, not per line."""
    name, sep, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1].split(':')[0]})" if sep else frame


def top_frames(raw: Path, n: int = 12) -> list[str]:
    """The functions with the most samples in a py-spy raw (collapsed) profile: self, and inclusive."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_frame(f) for f in stack.split(";")]
        total += int(count)
        own[frames[-1]] += int(count)
        for f in set(frames):
            inclusive[f] += int(count)
    if not total:
        return []
    lines = [f"py-spy {raw.name}: {total} samples"]
    lines += [f"  self {c / total:5.1%}  {f}" for f, c in own.most_common(n)]
    # Frames on (nearly) every stack (the event loop, the CLI) say nothing: leave them out.
    lines += [f"  incl {c / total:5.1%}  {f}" for f, c in inclusive.most_common()
              if c < 0.9 * total][:n]
    return lines


def _sum(stats: dict[str, Any], key: str) -> int | None:
    devices = stats.get("iosxe", {}).values()
    if any(key not in d for d in devices):
        return None
    return sum(int(d[key]) for d in devices)


def measure(workdir: Path, label: str, *, devices: int, concurrency: int, seed: int,
            src: Path | None = None, profile: Path | None = None,
            keyturn_src: Path | None = None) -> tuple[SimCost, Row, list[str]]:
    lab = Lab(workdir, iosxe=devices, users_per_device=1, ssh=False, seed=seed, timeout=1800)
    with _lab_pythonpath(src):
        lab.start()
    try:
        assert lab.state is not None
        with _lab_pythonpath(keyturn_src):   # Home copies the environment its children get
            home = Home(workdir, f"home-{label}")
        accts = home.setup(lab.state, iosxe_targets=("iosxe-restconf",))
        idle0 = process_cpu(lab.pid)
        time.sleep(_IDLE_SECONDS)
        idle_rate = (process_cpu(lab.pid) - idle0) / _IDLE_SECONDS
        raw = profile / f"simcost-{label}.txt" if profile is not None else None
        with _profiled(lab.pid, raw):
            before, cpu0 = lab.stats(), process_cpu(lab.pid)
            usage, counts = rotate_json(home, workdir, concurrency=concurrency, per_device=1)
            cpu1, after = process_cpu(lab.pid), lab.stats()
        bad = verify_all(lab, accts, home.current_secrets(accts))
    finally:
        lab.stop()

    def delta(key: str) -> int | None:
        a, b = _sum(after, key), _sum(before, key)
        return None if a is None or b is None else a - b

    cost = SimCost(label=label, rotations=len(accts), verified=len(accts) - len(bad), sim_cpu=cpu1 - cpu0,
                   idle_rate=idle_rate, keyturn_cpu=usage.cpu, wall=usage.wall,
                   requests=delta("restconf_requests") or 0, connections=delta("restconf_connections"),
                   resumed=delta("restconf_tls_resumed"))
    notes = [cost.summary() + "; " + ", ".join(f"{v} {k}" for k, v in counts.items())]
    if raw is not None:
        notes += top_frames(raw) if raw.exists() else [f"py-spy: no profile for {label} (not installed?)"]
    row = Row(f"simcost {devices} dev", label, len(accts), usage, cost.verified,
              note=f"simulator {cost.per_rotation(cost.sim_cpu, 1000)} CPU-ms/rot; "
                   f"{cost.per_rotation(cost.requests)} req, {cost.per_rotation(cost.connections)} "
                   f"handshakes/rot")
    return cost, row, notes


def run(workdir: Path, *, devices: int, concurrency: int, seed: int, before: str | None = None,
        profile: Path | None = None, before_keyturn: bool = False) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    notes: list[str] = []
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
    results: list[SimCost] = []
    if before:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", before], check=True,
                             capture_output=True, text=True).stdout.strip()
        sub = workdir / "before"
        sub.mkdir()
        with worktree(rev) as tree:
            label = f"{'sim+keyturn' if before_keyturn else 'sim'}@{rev}"
            cost, row, got = measure(sub, label, devices=devices, concurrency=concurrency, seed=seed,
                                     src=tree / "src", profile=profile,
                                     keyturn_src=tree / "src" if before_keyturn else None)
        results.append(cost)
        rows.append(row)
        notes += got
    sub = workdir / "after"
    sub.mkdir()
    cost, row, got = measure(sub, "sim (this tree)", devices=devices, concurrency=concurrency, seed=seed,
                             profile=profile)
    results.append(cost)
    rows.append(row)
    notes += got
    if len(results) == 2 and results[1].sim_cpu > 0:
        notes.append(f"simulator CPU per rotation: {results[0].sim_cpu / results[1].sim_cpu:.1f}x less "
                     "than before")
    return rows, notes
