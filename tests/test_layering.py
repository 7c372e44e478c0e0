"""The dependency direction of docs/architecture.md: kernels import only numpy, numba, scipy,
the standard library and other kernels."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

KERNELS = Path(__file__).resolve().parents[1] / "kernels"
ALLOWED = {"numpy", "numba", "scipy"} | set(sys.stdlib_module_names)


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module


def test_kernels_import_only_numerical_libraries():
    bad = []
    for path in sorted(KERNELS.rglob("*.py")):
        for name in _imports(path):
            root = name.split(".")[0]
            if root == "kinebridge":
                if not name.startswith("kinebridge.kernels"):
                    bad.append(f"{path.name}: {name}")
            elif root not in ALLOWED:
                bad.append(f"{path.name}: {name}")
    assert not bad, "kernels must not depend on: " + ", ".join(bad)
