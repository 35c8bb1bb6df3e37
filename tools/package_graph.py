"""The modules of src/deepfake_detection and the imports between them, read with ``ast``: what
tools/import_graph.py checks and tools/dvc_deps.py follows.

Every import counts: those at the top of a module, those inside functions and those under ``if
TYPE_CHECKING:``. ``from pkg import name`` is an edge to ``pkg.name`` when that is a module of the
package, else to ``pkg`` (its ``__init__``). Relative imports are resolved against the importing
module.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "deepfake_detection"


@dataclass
class Module:
    name: str  # dotted, e.g. deepfake_detection.data.views
    path: Path
    is_package: bool
    tree: ast.Module
    lines: int

    @property
    def package(self) -> str:
        """The package relative imports start from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    in_function: bool


# ----------------------------------------------------------------------------- reading
def load_modules(src: Path = SRC, package: str = PACKAGE) -> dict[str, Module]:
    """Every module of ``package`` under ``src``, parsed."""
    modules = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        text = path.read_text(encoding="utf-8")
        name = ".".join(parts)
        modules[name] = Module(name, path, is_package, ast.parse(text, str(path)), len(text.splitlines()))
    return modules


def short(name: str, package: str = PACKAGE) -> str:
    """``deepfake_detection.data.views`` -> ``data.views``; the package itself stays whole."""
    return name[len(package) + 1 :] if name.startswith(package + ".") else name


def _resolve_from(module: Module, node: ast.ImportFrom) -> str | None:
    if not node.level:
        return node.module
    base = module.package.split(".")
    if node.level > 1:
        base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _walk_with_function(tree: ast.AST):
    """(node, inside a function?) for every node of ``tree``."""
    stack = [(tree, False)]
    while stack:
        node, in_function = stack.pop()
        yield node, in_function
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        stack.extend((child, inner) for child in ast.iter_child_nodes(node))


def import_targets(module: Module, node: ast.AST, modules: dict[str, Module]) -> list[str]:
    """The package modules an ``import`` / ``from ... import`` statement names."""
    targets = []
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = _resolve_from(module, node)
        if base is None:
            return []
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            targets.append(sub if sub in modules else base)
    return [t for t in dict.fromkeys(targets) if t in modules and t != module.name]


def import_edges(modules: dict[str, Module]) -> list[Edge]:
    """Every import between the package's own modules, those inside functions included."""
    edges = []
    for module in modules.values():
        for node, in_function in _walk_with_function(module.tree):
            for target in import_targets(module, node, modules):
                edges.append(Edge(module.name, target, node.lineno, in_function))
    return sorted(edges, key=lambda e: (e.source, e.line, e.target))


def graph_of(edges: list[Edge]) -> dict[str, set[str]]:
    graph = defaultdict(set)
    for edge in edges:
        graph[edge.source].add(edge.target)
    return graph


# ----------------------------------------------------------------------------- closure (dvc_deps.py)
def closure(edges: list[Edge], roots, modules: dict[str, Module] | None = None) -> set[str]:
    """The modules ``roots`` import, transitively (every import, those inside functions too), with
    the ``__init__`` of each package on the way (importing ``a.b.c`` runs ``a`` and ``a.b``)."""
    graph = graph_of(edges)
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(graph.get(name, ()))
        if modules is not None:
            parts = name.split(".")
            todo.extend(p for p in (".".join(parts[:i]) for i in range(1, len(parts))) if p in modules)
    return seen
