# SPDX-License-Identifier: Apache-2.0
"""The import graph of odimo's packages: no cycle and no upward import, including the imports
written inside functions (which hide a cycle from Python but not from a reader)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "odimo"

#: odimo's packages from the bottom up: a package may import from its own layer's modules only
#: within itself, and from any layer below it. Infrastructure at the bottom, entry points on top.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("ste", "io"),
    ("hw", "data"),
    ("quant",),
    ("nn",),
    ("spaces", "convert"),
    ("models",),
    ("lit", "analysis"),
    ("callbacks",),
    ("characterization", "calibration", "cascade", "export"),
    ("pipeline",),
    ("tasks", "cli"),
)
RANK = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def import_edges(root: Path = ROOT) -> list[tuple[str, str, str]]:
    """(importing package, imported package, where) for every import of odimo inside odimo."""
    edges = []
    for path in sorted(root.rglob("*.py")):
        parts = ("odimo",) + path.relative_to(root).with_suffix("").parts
        me = parts[1] if len(parts) > 1 else ""
        if me == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = list(parts[: -node.level])
                    targets = [".".join(base + ([node.module] if node.module else []))]
                else:
                    targets = [node.module or ""]
                if targets[0] == "odimo":  # `from odimo import x`: x is the package
                    targets = [f"odimo.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                other = _package(target)
                if target.startswith("odimo.") and other and other != me:
                    edges.append((me, other, f"{path.relative_to(root.parent)}:{node.lineno}"))
    return edges


def violations(edges) -> list[str]:
    """Imports that go up (or sideways within a layer) or name an unknown package."""
    out = []
    for me, other, where in edges:
        if me not in RANK or other not in RANK:
            out.append(f"{where}: package {me if me not in RANK else other} is in no layer")
        elif RANK[other] >= RANK[me]:
            out.append(f"{where}: odimo.{me} imports odimo.{other} (not below it)")
    return out


def cycles(edges) -> list[list[str]]:
    """Cycles of the package graph (depth-first search)."""
    graph: dict[str, set[str]] = {}
    for me, other, _ in edges:
        graph.setdefault(me, set()).add(other)
    found, state = [], {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_every_package_is_in_a_layer():
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    assert packages | modules == set(RANK)


def test_no_upward_import_and_no_cycle():
    edges = import_edges()
    assert violations(edges) == []
    assert cycles(edges) == []


@pytest.mark.parametrize(
    "source",
    [
        "from odimo.tasks.train import run\n",  # module level, upward
        "def f():\n    from odimo.models import build_model\n",  # hidden in a function
        "from ..export import export_run\n",  # relative, upward
    ],
)
def test_the_scan_finds_an_upward_import(tmp_path, source):
    """The checker itself: an upward import planted in a copy of `odimo/hw` is found."""
    pkg = tmp_path / "odimo" / "hw"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "bad.py").write_text(source)
    found = violations(import_edges(tmp_path / "odimo"))
    assert len(found) == 1 and "odimo.hw imports" in found[0]


def test_the_scan_finds_a_cycle():
    edges = [("a", "b", "x"), ("b", "c", "y"), ("c", "a", "z")]
    assert cycles(edges) == [["a", "b", "c", "a"]]
