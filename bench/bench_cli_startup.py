"""What a CLI command costs before it does anything (issue 14, the CLI rows): wall and CPU, median of N.

Each command runs N times as its own process through the console script's entry point, against a
small vault (SQLite, key file, `RECORDS` records imported once): `keyturn --help`, `keyturn reveal`
of one record, `keyturn record add` of a new login record (password on stdin), and a bare `import
keyturn.cli.main` for reference. Wall = process start to exit, CPU = user+sys of the process
(`os.wait4`). One untimed run of each command first (files cached). Bytecode is cached as in an
installed keyturn: the children get PYTHONPYCACHEPREFIX in the work dir and never PYTHONDONTWRITEBYTECODE
(with it, every run would compile keyturn's own modules again, ~30 ms of CPU per command here).

After the timed runs, `keyturn reveal` and `keyturn record add` run once more per tree under `python -X
importtime`: the modules' own import times, summed by where they come from (`BUCKETS`), as shares of
the command's import time (importtime's own overhead inflates the milliseconds; the shares are what
to read).

`before=REF` measures git revision REF too, in the same run: REF is checked out into a temporary git
worktree whose `src` goes first on PYTHONPATH (the bench stays this tree's), with a vault of its own
made by that revision; the runs of both trees alternate so a noisy neighbour hits both alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import REPO, Home, Usage, run_measured, user_record, worktree
from bench.report import Row, console

RECORDS = 20
REVEALED = "startup user 1"
# The console script's body (`keyturn = keyturn.cli.main:app`), the same for every tree measured.
_ENTRY = "import sys; from keyturn.cli.main import app; sys.argv[0] = 'keyturn'; sys.exit(app())"


@dataclass(frozen=True)
class Command:
    name: str
    args: tuple[str, ...]
    target: float | None       # wall seconds (issue 14), None: reference only
    stdin: bytes | None = None
    adds_record: bool = False  # needs a fresh title per run


COMMANDS = (
    Command("keyturn --help", ("--help",), 0.15),
    Command("keyturn reveal", ("reveal", REVEALED), 0.25),
    Command("keyturn record add", ("record", "add", "--type", "login", "--password", "-"), 0.30,
            stdin=b"startup-password\n", adds_record=True),
    Command("import keyturn.cli.main", (), None),
)


@dataclass
class Tree:
    label: str
    home: Home
    src: Path | None                         # None: the installed (this) tree
    runs: dict[str, list[Usage]] = field(default_factory=dict)

    def argv(self, cmd: Command, i: int) -> list[str]:
        if cmd.name.startswith("import "):
            return [sys.executable, "-c", "import keyturn.cli.main"]
        args = [*cmd.args, "--title", f"startup add {i}"] if cmd.adds_record else list(cmd.args)
        return [sys.executable, "-c", _ENTRY, *args]

    def run(self, cmd: Command, i: int) -> Usage:
        usage = run_measured(self.argv(cmd, i), env=self.home.env, stdin=cmd.stdin)
        if usage.returncode != 0:
            raise RuntimeError(f"{self.label}: {cmd.name} exited {usage.returncode}")
        return usage



# Where import time goes: the first matching prefix names the bucket (anything else: Python and stdlib).
BUCKETS = (
    ("sqlalchemy.orm", "SQLAlchemy ORM"), ("sqlalchemy.dialects", "SQLAlchemy dialects"),
    ("sqlalchemy", "SQLAlchemy Core"), ("pydantic", "pydantic"), ("pydantic_core", "pydantic"),
    ("pydantic_settings", "pydantic"), ("annotated_types", "pydantic"), ("typing_inspection", "pydantic"),
    ("typer", "Typer"), ("cryptography", "cryptography"), ("alembic", "Alembic"),
    ("keyturn.vault.storage", "keyturn.vault.storage (declarative models)"), ("keyturn", "keyturn (other)"),
)
OTHER = "Python start-up and stdlib"
BREAKDOWN = ("keyturn reveal", "keyturn record add")


def import_shares(stderr: str) -> dict[str, float]:
    """Milliseconds of own import time per bucket, from `python -X importtime` output."""
    shares: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, _cumulative, name = line.split("|")
        name = name.strip()
        label = next((lb for prefix, lb in BUCKETS if name == prefix or name.startswith(prefix + ".")), OTHER)
        shares[label] = shares.get(label, 0.0) + int(own.split(":")[1]) / 1000
    return shares


def breakdown(trees: Sequence[Tree]) -> list[str]:
    """One importtime run of each `BREAKDOWN` command per tree: a table of shares, and the notes."""
    from rich.table import Table

    notes = []
    for cmd in (c for c in COMMANDS if c.name in BREAKDOWN):
        table = Table(title=f"{cmd.name}: own import time by origin (one -X importtime run, % of total)")
        table.add_column("origin")
        got = []
        for t in trees:
            table.add_column(t.label)
            argv = t.argv(cmd, 10_000)
            proc = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], env=t.home.env, input=cmd.stdin,
                                  capture_output=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"{t.label}: {cmd.name} under -X importtime exited {proc.returncode}")
            got.append(import_shares(proc.stderr.decode(errors="replace")))
        labels = sorted({lb for g in got for lb in g}, key=lambda lb: -got[-1].get(lb, 0.0))
        for lb in labels:
            table.add_row(lb, *(f"{100 * g.get(lb, 0.0) / sum(g.values()):.1f} %" for g in got))
        console.print(table)
        for t, g in zip(trees, got, strict=True):
            total = sum(g.values())
            parts = ", ".join(f"{lb} {100 * g[lb] / total:.0f} %" for lb in labels
                              if g.get(lb, 0.0) >= total / 200)
            notes.append(f"{cmd.name} imports, {t.label} ({total:.0f} ms under importtime): {parts}")
    return notes


def small_vault(home: Home) -> None:
    """`keyturn init` and `RECORDS` login records through `keyturn record import` (that tree's CLI)."""
    home.keyturn("init")
    path = home.path / "startup-records.json"
    records = [user_record(f"startup user {n}", f"user{n}", f"pw-{n}-startup") for n in range(RECORDS)]
    path.write_text(json.dumps({"records": records}))
    os.chmod(path, 0o600)
    try:
        home.keyturn("record", "import", str(path), "--format", "keyturn")
    finally:
        path.unlink()


def measure(trees: Sequence[Tree], runs: int) -> None:
    for cmd in COMMANDS:
        for t in trees:
            t.run(cmd, -1)        # untimed: bytecode, page cache
            t.runs[cmd.name] = []
        for i in range(runs):
            for t in trees:       # alternate, so drift on the shared machine hits every tree alike
                t.runs[cmd.name].append(t.run(cmd, i))


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(trees: Sequence[Tree], runs: int) -> list[str]:
    from rich.table import Table

    table = Table(title=f"CLI start-up, median of {runs} runs (wall / CPU seconds)")
    for col in ("command", *(t.label for t in trees), "target (wall)", "status"):
        table.add_column(col)
    notes = []
    for cmd in COMMANDS:
        cells, parts = [], []
        for t in trees:
            wall = median([u.wall for u in t.runs[cmd.name]])
            cpu = median([u.cpu for u in t.runs[cmd.name]])
            cells.append(f"{wall:.3f} / {cpu:.3f}")
            parts.append(f"{t.label} wall {wall:.3f} s, CPU {cpu:.3f} s")
        last = median([u.wall for u in trees[-1].runs[cmd.name]])
        status = "" if cmd.target is None else ("met" if last <= cmd.target else "not met")
        target = "-" if cmd.target is None else f"<= {cmd.target:.2f} s"
        table.add_row(cmd.name, *cells, target, status)
        notes.append(f"{cmd.name}: {'; '.join(parts)}" + (f" (target {target}: {status})" if status else ""))
    console.print(table)
    return notes


def run(workdir: Path, *, runs: int = 10, before: str | None = None) -> tuple[list[Row], list[str]]:
    """Measure this tree (and `before`); rows are empty (these are not rotations), the notes hold it all."""
    trees: list[Tree] = []
    with contextlib.ExitStack() as stack:
        if before:
            rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", before], check=True,
                                 capture_output=True, text=True).stdout.strip()
            src = stack.enter_context(worktree(rev)) / "src"
            home = Home(workdir, "before")
            home.env["PYTHONPATH"] = str(src)
            trees.append(Tree(f"@{rev}", home, src))
        trees.append(Tree("this tree", Home(workdir, "after"), None))
        for t in trees:
            t.home.env.pop("PYTHONDONTWRITEBYTECODE", None)
            t.home.env["PYTHONPYCACHEPREFIX"] = str(workdir / f"pycache-{t.home.path.name}")
        for t in trees:   # `Home.keyturn` runs `python -m keyturn.cli.main`: PYTHONPATH picks the tree
            small_vault(t.home)
        measure(trees, runs)
        shares = breakdown(trees)
    notes = report(trees, runs) + shares
    notes.append(f"{RECORDS}-record SQLite vault per tree; every command through the console script's "
                 "entry point, bytecode cached; one untimed run first")
    return [], notes
