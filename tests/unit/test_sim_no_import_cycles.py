"""Static (ast) check that the simulator package has no import cycle: every import counts — at the top,
under TYPE_CHECKING or inside a function — since a pair that imports each other, even lazily, is one
concept split badly (STYLE.md, "What to leave behind")."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "keyturn.sim"
ROOT = Path(__file__).resolve().parents[2] / "src" / "keyturn" / "sim"


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([PACKAGE, *parts])


def _imports(path: Path, known: set[str]) -> set[str]:
    """The package's modules that `path` imports (`import a.b`, `from a import b`, `from . import b`)."""
    found: set[str] = set()
    here = _module(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        found.update(n for n in names if n in known and n != here)
    return found


def _graph() -> dict[str, set[str]]:
    files = sorted(ROOT.rglob("*.py"))
    known = {_module(f) for f in files}
    return {_module(f): _imports(f, known) for f in files}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_simulator_package_has_no_import_cycle() -> None:
    graph = _graph()
    assert "keyturn.sim.lab" in graph and "keyturn.sim.control" in graph["keyturn.sim.lab"]
    assert _cycles(graph) == []
