"""Result rows and the table every benchmark prints (Rich), plus a Markdown rendering for RESULTS.md."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from bench.harness import Usage

console = Console(highlight=False, width=200)


@dataclass
class Row:
    bench: str
    contender: str
    rotations: int
    usage: Usage
    verified: int                  # accounts whose expected secret logs in afterwards
    note: str = ""
    baseline_of: str | None = None  # for keyturn rows: the contender name to compare against
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.rotations / self.usage.wall if self.usage.wall > 0 else 0.0


def ratio(rows: list[Row], row: Row, baseline: str) -> str:
    base = next((r for r in rows if r.bench == row.bench and r.contender == baseline), None)
    if base is None or base.rate == 0:
        return "-"
    return f"{row.rate / base.rate:.1f}x vs {baseline}"


COLUMNS = ("benchmark", "contender", "rotations", "verified", "wall s", "rot/s", "CPU s", "peak RSS MiB",
           "keyturn/baseline (rot/s)", "note")


def cells(rows: list[Row], r: Row) -> list[str]:
    ratios = "; ".join(ratio(rows, r, b) for b in (r.baseline_of or "").split(",") if b) or ""
    return [r.bench, r.contender, str(r.rotations), f"{r.verified}/{r.rotations}", f"{r.usage.wall:.1f}",
            f"{r.rate:.1f}", f"{r.usage.cpu:.1f}", f"{r.usage.maxrss_mib:.0f}", ratios, r.note]


def print_table(title: str, rows: list[Row]) -> None:
    table = Table(title=title)
    for col in COLUMNS:
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(*cells(rows, r))
    console.print(table)


def markdown(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells(rows, r)) + " |")
    return "\n".join(lines)
