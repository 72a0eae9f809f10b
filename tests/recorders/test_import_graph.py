"""Imports between gracefail's modules point one way: no recorder module is part of a cycle.

Every ``import`` statement counts, wherever it is (inside functions, under
``TYPE_CHECKING``), and so do the lazy names of ``gracefail.recorders.__init__``:
a cycle held together by deferred imports is still a cycle. The implicit import
of a package by its submodules is left out (every submodule has it).
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

from tests.conftest import ROOT

SRC = ROOT / "src"
PACKAGE = SRC / "gracefail"
RECORDERS = "gracefail.recorders"


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _package(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _targets(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The gracefail modules ``name`` imports."""
    package = _package(name, path)
    tree = ast.parse(path.read_text(), str(path))
    wanted: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            wanted |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            wanted.add(base)
            # `from . import sqlite` imports a module, not a name of the package.
            wanted |= {f"{base}.{alias.name}" for alias in node.names}
        elif (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            # gracefail.recorders' lazy attributes: importlib.import_module(".x", package)
            for value in node.value.values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    wanted.add(package + value.value)
    return {m for m in wanted if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    """Every gracefail module and the gracefail modules it imports."""
    modules = _modules()
    return {name: _targets(name, path, modules) for name, path in modules.items()}


def _cycle_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A path start -> ... -> start, if there is one."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in graph.get(node, ()):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_the_graph_sees_imports() -> None:
    graph = import_graph()
    assert {"gracefail.recorders.schema", "gracefail.recorders.connected"} <= graph[
        "gracefail.recorders.sqlite"
    ]
    assert "gracefail.recorders.postgres" in graph["gracefail.recorders.store"]
    assert "gracefail.recorders.store" in graph["gracefail.recorders"]


@pytest.mark.parametrize(
    "module", sorted(m for m in import_graph() if m == RECORDERS or m.startswith(RECORDERS + "."))
)
def test_no_cycle_through(module: str) -> None:
    cycle = _cycle_through(import_graph(), module)
    assert cycle is None, " -> ".join(cycle or ())


def test_recorders_import_in_one_direction() -> None:
    graph = import_graph()
    inside = {
        name: {t for t in targets if t.startswith(RECORDERS + ".")}
        for name, targets in graph.items()
        if name.startswith(RECORDERS + ".")
    }
    order = list(graphlib.TopologicalSorter(inside).static_order())
    # The parts come before what is built from them; the factory comes last of the store.
    assert order.index("gracefail.recorders.target") < order.index("gracefail.recorders.schema")
    assert order.index("gracefail.recorders.schema") < order.index("gracefail.recorders.connected")
    assert order.index("gracefail.recorders.sqlite") < order.index("gracefail.recorders.store")
