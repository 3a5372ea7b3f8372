# SPDX-License-Identifier: Apache-2.0
"""Every third-party module odimo imports is a declared dependency of pyproject.toml.

The imports are read with `ast` (also those inside functions), so a new `import scipy` fails
here until `scipy` is declared. Optional extras (W&B, ONNX) may only be imported inside
functions, so `import odimo` works without them.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

#: Python 3.11's TOML reader (odimo supports 3.10, where this check is reported as skipped).
tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]

#: Import name -> distribution name where they differ (or where it is worth saying).
DISTRIBUTION = {
    "PIL": "pillow",
    "yaml": "pyyaml",
    "sklearn": "scikit-learn",
    "hydra": "hydra-core",
    "hydra_plugins": "hydra-core",
}


def _requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].strip().lower()


def declared() -> tuple[set[str], set[str]]:
    """(core, optional) distribution names of pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_requirement_name(s) for s in project["dependencies"]}
    optional = {
        _requirement_name(s)
        for extra, specs in project.get("optional-dependencies", {}).items()
        if extra != "test"
        for s in specs
    }
    return core, optional - core


def third_party_imports() -> dict[str, list[tuple[str, bool]]]:
    """Top-level third-party module -> [(file:line, imported at module level)]."""
    found: dict[str, list[tuple[str, bool]]] = {}
    for path in sorted((ROOT / "odimo").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        top_level = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "odimo" or top in sys.stdlib_module_names or top == "__future__":
                    continue
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                found.setdefault(top, []).append((where, id(node) in top_level))
    return found


def test_every_import_is_a_declared_dependency() -> None:
    core, optional = declared()
    imports = third_party_imports()
    assert {"torch", "scipy", "yaml", "PIL"} <= set(imports)  # the scan sees real imports
    undeclared = {
        top: sites[0][0]
        for top, sites in imports.items()
        if DISTRIBUTION.get(top, top).lower() not in core | optional
    }
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_optional_dependencies_are_imported_inside_functions() -> None:
    _, optional = declared()
    imports = third_party_imports()
    at_module_level = {
        top: [where for where, top_level in sites if top_level]
        for top, sites in imports.items()
        if DISTRIBUTION.get(top, top).lower() in optional
    }
    assert "wandb" in at_module_level  # the scan sees the optional imports
    assert not any(at_module_level.values()), at_module_level


def test_the_table_maps_to_declared_names() -> None:
    """A stale entry (a dependency renamed or dropped) fails here."""
    core, optional = declared()
    assert {v for k, v in DISTRIBUTION.items()} <= core | optional
