"""Static (ast) check of the rotation engine's imports (issue 14: engine/ without cycles). Every import
counts — at the top, under TYPE_CHECKING or inside a function — as in the simulator's check
(`test_sim_no_import_cycles`): a pair that imports each other, even lazily, is one concept split badly.

The last cycle (the state machine `rotate`, the `recovery` that settles its interrupted runs and the
`generated`-secret variant of both calling each other) is gone: `recovery` and `generated` depend on the
interfaces in `keyturn.engine.contracts`, which `rotate`'s classes satisfy. Any cycle fails this test.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.unit.test_sim_no_import_cycles import _cycles

PACKAGE = "keyturn.engine"
ROOT = Path(__file__).resolve().parents[2] / "src" / "keyturn" / "engine"
KNOWN: list[list[str]] = []


def _graph() -> dict[str, set[str]]:
    known = {f"{PACKAGE}.{p.stem}" for p in ROOT.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for path in sorted(ROOT.glob("*.py")):
        if path.stem == "__init__":
            continue
        here = f"{PACKAGE}.{path.stem}"
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:   # engine modules use absolute imports; a relative one is resolved anyway
                    base = f"{PACKAGE}.{base}" if base else PACKAGE
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            found.update(n for n in names if n in known and n != here)
        graph[here] = found
    return graph


def test_engine_has_no_import_cycle() -> None:
    cycles = _cycles(_graph())
    assert cycles == KNOWN, f"import cycles in {PACKAGE}: {cycles}"


def test_accounts_and_profile_do_not_import_each_other() -> None:
    graph = _graph()
    assert f"{PACKAGE}.profile" not in graph[f"{PACKAGE}.accounts"]
    assert f"{PACKAGE}.accounts" not in graph[f"{PACKAGE}.ab"]
    assert f"{PACKAGE}.accounts" not in graph[f"{PACKAGE}.profile_model"]

