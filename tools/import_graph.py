"""The shape of src/deepfake_detection, read with ``ast``: import cycles, layer violations, hidden
imports, modules over 400 lines and functions over 60 lines.

    python tools/import_graph.py            # the report; exit status 1 when there is a problem
    python tools/import_graph.py --edges    # also every import edge (module -> module, line)

Every import counts: those at the top of a module, those inside functions (kept there to keep
TensorFlow and MLflow out of ``--help``) and those under ``if TYPE_CHECKING:``. ``from pkg import
name`` is an edge to ``pkg.name`` when that is a module of the package, else to ``pkg`` (its
``__init__``). Relative imports are resolved against the importing module.

The layers (docs: /ARCH.md of issue 17, README "The shape of the code, checked"), lowest first; a
module may import its own layer or a lower one, never a higher one. A module the table does not
place is a problem too, so that a new module is given a layer on purpose.

Function size: the lines from the ``def`` line to the function's last line, without its docstring
(decorators not counted; blank lines and comments counted: they are read too). A nested function
counts in its parent's lines and on its own.

Imports inside functions must keep a heavy outside package out of the importing module's import
time (tools/lazy_imports.py); one that does not is reported.

Hidden imports: ``importlib.import_module(...)``, ``import_module(...)`` or ``__import__(...)`` of a
package module (a name that is relative, starts with ``deepfake_detection`` or is built from such
a string, or is given ``package=``): the graph cannot see them, so they are problems.

Tests import this file by path (tools/ is not a package): tests/tools_loader.py.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lazy_imports import needless_lazy_imports  # noqa: E402
from package_graph import (  # noqa: E402  (tools/ is not a package)
    PACKAGE,
    SRC,
    Edge,
    Module,
    closure,
    graph_of,
    import_edges,
    import_targets,
    load_modules,
    short,
)

__all__ = ["PACKAGE", "SRC", "Edge", "Module", "closure", "import_edges", "import_targets", "load_modules", "short"]

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

LAYER_NAMES = ("base", "models", "config", "domain", "services", "stages", "entry")
# Module (or package) name relative to the package -> layer; the longest matching prefix wins.
# "" is the package's own __init__.
LAYERS = {
    "": "base",  # deepfake_detection/__init__: LABELS, SPLITS
    "paths": "base",
    "signals": "base",
    "lineage": "base",
    "compare": "base",
    "relocate": "base",
    "tracking_server": "base",
    "models": "models",  # Keras networks; they take plain values, not config
    "config": "config",  # params.yaml -> typed settings
    "data": "domain",
    "evaluation": "domain",
    "tracking": "services",
    "champion": "services",
    "training": "services",
    "linear_fit": "services",
    "inference": "services",
    "serving": "services",
    "explain": "services",
    "stages": "stages",
    "cli": "entry",
    "__main__": "entry",
}

# Outside packages a part of the package must not import (ARCH.md: the domain has no MLflow, evaluation
# no TensorFlow; config is read by `deepfake-detect --help`, so it stays light).
FORBIDDEN = {
    "config": ("tensorflow", "keras", "mlflow"),
    "models": ("mlflow",),
    "data": ("mlflow",),
    "evaluation": ("tensorflow", "keras", "mlflow"),
}


@dataclass
class Report:
    modules: dict[str, Module]
    edges: list[Edge]
    cycles: list[list[str]] = field(default_factory=list)
    layer_problems: list[str] = field(default_factory=list)
    hidden_imports: list[str] = field(default_factory=list)
    forbidden_imports: list[str] = field(default_factory=list)
    long_modules: list[tuple[str, int]] = field(default_factory=list)
    long_functions: list[tuple[str, str, int, int]] = field(default_factory=list)  # module, function, line, lines
    needless_lazy_imports: list[str] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return sum(
            map(
                len,
                (
                    self.cycles,
                    self.layer_problems,
                    self.hidden_imports,
                    self.forbidden_imports,
                    self.long_modules,
                    self.long_functions,
                    self.needless_lazy_imports,
                ),
            )
        )


# ----------------------------------------------------------------------------- cycles
def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative), those with more than one module."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    nodes = sorted(set(graph) | {t for targets in graph.values() for t in targets})
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def _shortest_cycle(graph: dict[str, set[str]], start: str, members: set[str]) -> list[str] | None:
    previous, queue = {start: None}, [start]
    for node in queue:
        for child in sorted(graph.get(node, ())):
            if child == start:
                path = [node]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, node, start]
            if child in members and child not in previous:
                previous[child] = node
                queue.append(child)
    return None


def find_cycles(edges: list[Edge]) -> list[list[str]]:
    """One shortest cycle through each module of each strongly connected component (rotations of
    the same cycle listed once): each is a path a -> b -> ... -> a."""
    graph = graph_of(edges)
    cycles, seen = [], set()
    for component in strongly_connected(graph):
        for start in component:
            cycle = _shortest_cycle(graph, start, set(component))
            if cycle is None:
                continue
            key = frozenset(zip(cycle, cycle[1:]))
            if key not in seen:
                seen.add(key)
                cycles.append(cycle)
    return cycles


# ----------------------------------------------------------------------------- layers
def layer_of(name: str, layers: dict[str, str] = LAYERS, package: str = PACKAGE) -> str | None:
    relative = "" if name == package else short(name, package)
    best = None
    for prefix, layer in layers.items():
        if relative == prefix or (prefix and relative.startswith(prefix + ".")):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, layer)
    return best[1] if best else None


def layer_problems(
    modules: dict[str, Module], edges: list[Edge], layers: dict[str, str] = LAYERS, package: str = PACKAGE
) -> list[str]:
    """Modules with no layer, and imports from a layer to a higher one."""
    problems = [f"{short(m, package)}: no layer in LAYERS" for m in modules if layer_of(m, layers, package) is None]
    for edge in edges:
        source, target = layer_of(edge.source, layers, package), layer_of(edge.target, layers, package)
        if source and target and LAYER_NAMES.index(target) > LAYER_NAMES.index(source):
            where = " (inside a function)" if edge.in_function else ""
            problems.append(
                f"{short(edge.source, package)} ({source}) imports {short(edge.target, package)} ({target}), "
                f"line {edge.line}{where}"
            )
    return problems


def forbidden_imports(
    modules: dict[str, Module], forbidden: dict[str, tuple[str, ...]] = FORBIDDEN, package: str = PACKAGE
) -> list[str]:
    """Imports of outside packages that FORBIDDEN keeps out of a part of the package."""
    found = []
    for module in modules.values():
        relative = short(module.name, package)
        banned = {b for prefix, names in forbidden.items() if relative == prefix or relative.startswith(prefix + ".")
                  for b in names}  # fmt: skip
        for node in ast.walk(module.tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            found += [f"{relative} imports {n}, line {node.lineno}" for n in names if n.split(".")[0] in banned]
    return found


# ----------------------------------------------------------------------------- hidden imports
def _is_import_call(node: ast.Call) -> bool:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def _names_package_module(node: ast.Call, package: str) -> bool:
    is_builtin = isinstance(node.func, ast.Name) and node.func.id == "__import__"
    if not is_builtin and (len(node.args) > 1 or any(k.arg == "package" for k in node.keywords)):
        return True  # import_module(name, package): relative to a package, one of ours
    if not node.args:
        return False
    arg = node.args[0]
    if isinstance(arg, ast.JoinedStr):
        arg = arg.values[0] if arg.values else arg
    if isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Add):
        arg = arg.left
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value.startswith((".", package))
    return False


def hidden_imports(modules: dict[str, Module], package: str = PACKAGE) -> list[str]:
    """``importlib.import_module`` / ``__import__`` calls that load a module of the package."""
    found = []
    for module in modules.values():
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Call) and _is_import_call(node) and _names_package_module(node, package):
                found.append(f"{short(module.name, package)}, line {node.lineno}: {ast.unparse(node)}")
    return found


# ----------------------------------------------------------------------------- sizes
def long_modules(modules: dict[str, Module], limit: int = MAX_MODULE_LINES) -> list[tuple[str, int]]:
    return sorted(((m.name, m.lines) for m in modules.values() if m.lines > limit), key=lambda x: -x[1])


def function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the ``def`` to the function's end, without the docstring."""
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def long_functions(modules: dict[str, Module], limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, str, int, int]]:
    """(module, qualified function name, line, lines) for each function over ``limit`` lines."""
    found = []

    def visit(node: ast.AST, module: str, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                if function_lines(child) > limit:
                    found.append((module, name, child.lineno, function_lines(child)))
                visit(child, module, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, module, f"{prefix}{child.name}.")
            else:
                visit(child, module, prefix)

    for module in modules.values():
        visit(module.tree, module.name, "")
    return sorted(found, key=lambda x: -x[3])


# ----------------------------------------------------------------------------- the report
def analyse(src: Path = SRC, package: str = PACKAGE, layers: dict[str, str] = LAYERS) -> Report:
    modules = load_modules(src, package)
    edges = import_edges(modules)
    return Report(
        modules=modules,
        edges=edges,
        cycles=find_cycles(edges),
        layer_problems=layer_problems(modules, edges, layers, package),
        hidden_imports=hidden_imports(modules, package),
        forbidden_imports=forbidden_imports(modules, package=package),
        long_modules=long_modules(modules),
        long_functions=long_functions(modules),
        needless_lazy_imports=needless_lazy_imports(modules, edges, package),
    )


def format_report(report: Report, package: str = PACKAGE, with_edges: bool = False) -> str:
    s = lambda name: short(name, package)  # noqa: E731
    inside = sum(e.in_function for e in report.edges)
    out = [f"{len(report.modules)} modules, {len(report.edges)} imports between them ({inside} inside functions)"]
    if with_edges:
        out += [f"  {s(e.source)} -> {s(e.target)} (line {e.line}{', in a function' if e.in_function else ''})"
                for e in report.edges]  # fmt: skip
    sections = [
        ("import cycles", [" -> ".join(map(s, c)) for c in report.cycles]),
        ("imports up a layer (or modules with no layer)", report.layer_problems),
        ("hidden imports (importlib / __import__ of package modules)", report.hidden_imports),
        ("imports FORBIDDEN in a part of the package", report.forbidden_imports),
        (f"modules over {MAX_MODULE_LINES} lines", [f"{s(m)}: {n} lines" for m, n in report.long_modules]),
        (
            f"functions over {MAX_FUNCTION_LINES} lines (def to end, docstring excluded)",
            [f"{s(m)}.{f} (line {line}): {n} lines" for m, f, line, n in report.long_functions],
        ),
        ("imports inside functions that keep nothing heavy out (tools/lazy_imports.py)", report.needless_lazy_imports),
    ]
    for title, items in sections:
        out.append(f"\n{title}: {len(items)}")
        out += [f"  {item}" for item in items]
    out.append(f"\n{report.problems} problem(s)" if report.problems else "\nno problems")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=SRC, help="the folder holding the package [src/]")
    parser.add_argument("--package", default=PACKAGE, help=f"the package to read [{PACKAGE}]")
    parser.add_argument("--edges", action="store_true", help="also list every import edge")
    args = parser.parse_args(argv)
    report = analyse(args.src, args.package)
    print(format_report(report, args.package, with_edges=args.edges))
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
