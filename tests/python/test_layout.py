"""The Python tools' layout rules: no import cycles among the sam3tools modules, no file over 500
lines. Reads the sources with ``ast`` only (no torch), so it runs in well under a second.

Run from the repository root: ``.venv/bin/python -m unittest discover -s tests/python -t .``
"""
from __future__ import annotations

import ast
import unittest
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
PACKAGE = "sam3tools"
MAX_LINES = 500


def imported_modules(source: str, package: str = PACKAGE) -> set[str]:
    """The ``package`` modules a file imports, lazy imports inside functions included:
    ``from .x import y``, ``from . import x``, ``from package.x import y``, ``import package.x``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".") if node.module else []
            if node.level == 1:
                found.update([parts[0]] if parts else [a.name for a in node.names])
            elif node.level == 0 and parts and parts[0] == package:
                found.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == package and len(parts) > 1:
                    found.add(parts[1])
    return found


def import_graph(folder: Path = SCRIPTS / PACKAGE) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports."""
    sources = {path.stem: path.read_text(encoding="utf-8") for path in sorted(folder.glob("*.py"))}
    return {name: imported_modules(source) & set(sources) for name, source in sources.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a module importing itself
    (Tarjan's algorithm), each sorted; [] for an acyclic graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in sorted(graph.get(node, ())):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


class LayoutTest(unittest.TestCase):
    def test_cycle_finder(self):
        self.assertEqual(cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}), [["a", "b", "c"]])
        self.assertEqual(cycles({"a": {"a"}}), [["a"]])
        self.assertEqual(cycles({"a": {"b"}, "b": set()}), [])
        self.assertEqual(imported_modules("from . import x\nfrom .y import z\ndef f():\n    import sam3tools.w\n    from sam3tools.v import u\n"), {"x", "y", "w", "v"})

    def test_no_import_cycles(self):
        graph = import_graph()
        self.assertIn("export", graph)
        self.assertIn("tracker_export", graph["export"])
        self.assertEqual(cycles(graph), [], f"import cycles in scripts/{PACKAGE}")

    def test_no_file_over_500_lines(self):
        long = {str(path.relative_to(SCRIPTS)): n for path in SCRIPTS.rglob("*.py") if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
        self.assertEqual(long, {}, f"files in scripts/ over {MAX_LINES} lines")


if __name__ == "__main__":
    unittest.main()
