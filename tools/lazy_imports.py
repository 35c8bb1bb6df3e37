"""Imports kept inside functions must earn their place: ``python tools/import_graph.py`` reports
every import of a package module inside a function that keeps nothing heavy out of the importing
module's import time.

The package imports its own modules at the top of each module. The one reason to import inside a
function is to keep a heavy outside package (TensorFlow, MLflow, mtcnn, pandas, matplotlib...)
out of a cheap path: ``deepfake-detect --help``, a stage that needs no network, the web page's
start. So an import inside a function is a problem when the imported module's own import (its
top-level imports, followed through the package) brings no outside package that the importing
module's top level does not already bring. *Light* outside packages (the standard library,
NumPy, pydantic, PyYAML, Pillow, click, tqdm) never count as a reason.

Tests import this file by path (tools/ is not a package): tests/tools_loader.py.
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from package_graph import PACKAGE, Edge, Module, short  # noqa: E402  (tools/ is not a package)

LIGHT = frozenset(sys.stdlib_module_names) | {"numpy", "pydantic", "yaml", "PIL", "click", "tqdm"}


def _outside_imports(module: Module, package: str) -> set[str]:
    """The top-level names of the outside packages ``module`` imports at import time (not inside a
    function, not under ``if TYPE_CHECKING:``)."""
    names = set()
    for node in module.tree.body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names - {package, "__future__"}


def needless_lazy_imports(modules: dict[str, Module], edges: list[Edge], package: str = PACKAGE) -> list[str]:
    """``module:line imports target inside a function, which keeps nothing heavy out`` for each
    import inside a function whose target brings no heavy outside package beyond what the
    importing module already brings at import time."""
    at_top: dict[str, set[str]] = {}
    for edge in edges:
        if not edge.in_function:
            at_top.setdefault(edge.source, set()).add(edge.target)

    @cache
    def heavy(name: str) -> frozenset[str]:
        found, seen, todo = set(), set(), [name]
        while todo:
            current = todo.pop()
            if current in seen or current not in modules:
                continue
            seen.add(current)
            found |= _outside_imports(modules[current], package) - LIGHT
            parts = current.split(".")
            todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a and a.b
            todo += at_top.get(current, ())
        return frozenset(found)

    problems = []
    for edge in edges:
        if edge.in_function and not heavy(edge.target) - heavy(edge.source):
            problems.append(
                f"{short(edge.source, package)}:{edge.line} imports {short(edge.target, package)} inside a function, "
                "which keeps nothing heavy out: import it at the top"
            )
    return problems
