"""What a ``deepfake-detect`` command runs: the package modules, read with ``ast`` from the click
command's function (tools/dvc_deps.py checks them against dvc.yaml's deps).

1. the command line (``deepfake-detect train ${key}``) names a console script of pyproject.toml
   (``deepfake-detect = "deepfake_detection.cli:cli"``) and its subcommand; the click command is
   imported (``deepfake-detect --help`` imports no TensorFlow, so this is cheap);
2. the callbacks of that command and of the groups above it are read in their module: the imports
   inside them, the package modules their names come from (``load_params`` -> ``config``), and,
   followed the same way, the command-line functions they call (of their module or another
   command-line module), with the constant strings they pass carried into
   ``importlib.import_module(f".stages.{module}", __package__)``; command-line modules are followed
   function by function, never whole (the top-level imports of one reached count);
3. from the modules found, every import, transitively (package_graph.closure: imports inside
   functions too, and the ``__init__`` of each package on the way).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import shlex
import sys
import tomllib
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))
import import_graph  # noqa: E402  (tools/ is not a package)

PACKAGE = import_graph.PACKAGE


# ----------------------------------------------------------------------------- the command
def console_scripts(root: Path) -> dict[str, str]:
    with (root / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["project"]["scripts"]


def click_path(cmd: str, root: Path):
    """The click commands ``cmd`` goes through, the group first, its subcommand last, and the words
    naming the subcommand."""
    words = shlex.split(cmd)
    scripts = console_scripts(root)
    if words[0] in scripts:
        target, words = scripts[words[0]], words[1:]
    elif words[:3] == ["python", "-m", PACKAGE]:
        target, words = next(iter(scripts.values())), words[3:]
    else:
        raise ValueError(f"{cmd!r}: not a command of this package ({', '.join(scripts)})")
    module, _, attr = target.partition(":")
    command = getattr(importlib.import_module(module), attr)
    chain, names = [command], []
    while isinstance(command, click.Group) and words:  # get_command: lazily loaded subcommands too
        sub = command.get_command(click.Context(command), words[0])
        if sub is None:
            break
        names.append(words.pop(0))
        command = sub
        chain.append(command)
    if len(chain) == 1:
        raise ValueError(f"{cmd!r}: no subcommand of {target}")
    return chain, names


def _function(module: import_graph.Module, code) -> ast.FunctionDef:
    """The definition of the function whose code object is ``code`` (found by name and first line,
    so a command made inside a function is found too)."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == code.co_name:
            if code.co_firstlineno in (node.lineno, *(d.lineno for d in node.decorator_list)):
                return node
    raise LookupError(f"{module.name}: no function {code.co_name} at line {code.co_firstlineno}")


def _constants(function) -> dict[str, str]:
    """The strings a function closes over (``name`` of a command made by a factory)."""
    return {k: v for k, v in inspect.getclosurevars(function).nonlocals.items() if isinstance(v, str)}


def _bindings(module: import_graph.Module, modules) -> dict[str, tuple[str, str | None]]:
    """Module-level names bound by imports of the package: name -> (the module it comes from, the
    name imported from it, None for a module)."""
    bound = {}
    for node in module.tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                targets = import_graph.import_targets(module, _single(node, alias), modules)
                if not targets:
                    continue
                is_module = isinstance(node, ast.Import) or targets[0].endswith("." + alias.name)
                bound[alias.asname or alias.name.partition(".")[0]] = (targets[0], None if is_module else alias.name)
    return bound


def _single(node, alias):
    if isinstance(node, ast.Import):
        return ast.Import(names=[alias], lineno=node.lineno)
    return ast.ImportFrom(module=node.module, names=[alias], level=node.level, lineno=node.lineno)


def _evaluate(node, values: dict[str, object]):
    """A constant string, or an f-string of known names; else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return values.get(node.id)
    if isinstance(node, ast.JoinedStr):
        parts = [_evaluate(v.value if isinstance(v, ast.FormattedValue) else v, values) for v in node.values]
        return None if None in parts else "".join(parts)
    return None


def _dynamic_import(module, call: ast.Call, values, modules) -> str | None:
    if not (call.args and import_graph._is_import_call(call)):
        return None
    name = _evaluate(call.args[0], values)
    if name is None:
        return None
    if name.startswith("."):
        level = len(name) - len(name.lstrip("."))
        base = module.package.split(".")
        name = ".".join(base[: len(base) - level + 1] + [name.lstrip(".")])
    return name if name in modules else None


def _is_entry(name: str) -> bool:
    return import_graph.layer_of(name) == "entry"


def _top_level_imports(module, modules) -> set[str]:
    return {t for node in module.tree.body for t in import_graph.import_targets(module, node, modules)}


def _callee(func: ast.expr, local, bound, modules):
    """(module, definition) of a called command-line function: ``f(...)`` of this module or imported
    from another command-line module, or ``other.f(...)`` of a command-line module ``other``."""
    if isinstance(func, ast.Name):
        return local.get(func.id)
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in bound:
        target, attr = bound[func.value.id]
        if attr is None and _is_entry(target):
            other = modules[target]
            found = [n for n in other.tree.body if isinstance(n, ast.FunctionDef) and n.name == func.attr]
            return (other, found[0]) if found else None
    return None


def function_roots(module, func, modules, values=None, seen=None) -> set[str]:
    """The package modules a function of the command line runs: what it imports, the modules of the
    package names it uses, and the same for the command-line functions it calls (their module's
    top-level imports too), with the constant strings it passes them. Command-line modules are
    followed function by function, never whole: a command runs its own code, not its neighbours'."""
    values, seen = values or {}, seen if seen is not None else set()
    key = (module.name, func.name, tuple(sorted(values.items())))
    if key in seen:
        return set()
    seen.add(key)
    bound = _bindings(module, modules)
    local = {n.name: (module, n) for n in module.tree.body if isinstance(n, ast.FunctionDef)}
    for name, (target, attr) in bound.items():
        if attr and _is_entry(target):
            other = modules[target]
            found = [n for n in other.tree.body if isinstance(n, ast.FunctionDef) and n.name == attr]
            if found:
                local[name] = (other, found[0])
    roots = set()
    for node in ast.walk(func):
        roots.update(import_graph.import_targets(module, node, modules))
        if isinstance(node, ast.Name) and node.id in bound:
            roots.add(bound[node.id][0])
        if not isinstance(node, ast.Call):
            continue
        if (target := _dynamic_import(module, node, values, modules)) is not None:
            roots.add(target)
        callee = _callee(node.func, local, bound, modules)
        if callee is not None:
            where, callee = callee
            params = [a.arg for a in callee.args.args]
            passed = [*zip(params, node.args), *((k.arg, k.value) for k in node.keywords if k.arg)]
            constants = {p: _evaluate(a, values) for p, a in passed}
            constants = {p: v for p, v in constants.items() if v is not None}
            roots |= function_roots(where, callee, modules, constants, seen)
    for entry in [r for r in roots if _is_entry(r)]:  # another command-line module: its top-level imports ran
        roots |= {t for t in _top_level_imports(modules[entry], modules) if not _is_entry(t)}
    return {r for r in roots if not _is_entry(r)}


def command_modules(chain, modules, edges) -> set[str]:
    """The package modules a click command runs (the callbacks of its groups included), transitively."""
    roots = set()
    for command in chain:
        if command.callback is None:
            continue
        callback = inspect.unwrap(command.callback)
        module = modules[callback.__module__]
        roots |= function_roots(module, _function(module, callback.__code__), modules, _constants(callback))
    return import_graph.closure(edges, roots, modules)
