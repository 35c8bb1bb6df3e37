"""dvc.yaml's source dependencies, derived from the code: for each stage, the package modules its
command runs, against the stage's ``deps``.

    python tools/dvc_deps.py            # list, per stage, every module missing from its deps; exit 1 if any
    python tools/dvc_deps.py --write    # rewrite the src/ deps of dvc.yaml to cover them (comments kept)

How a stage's modules are found:
1. its ``cmd`` (``deepfake-detect train ${key}``) names a console script of pyproject.toml
   (``deepfake-detect = "deepfake_detection.cli:cli"``) and its subcommand; the click command is
   imported (``deepfake-detect --help`` imports no TensorFlow, so this is cheap);
2. the callbacks of that command and of the groups above it are read with ``ast`` in their module:
   the imports inside them, the package modules their names come from (``load_params`` ->
   ``config``), and, followed the same way, the functions of the same module they call, with constant
   arguments carried into ``importlib.import_module(f".stages.{module}", __package__)``;
3. from those modules, every import, transitively (tools/import_graph.py: those inside functions
   too, and the ``__init__`` of each package on the way).
A stage must list each of them in ``deps`` (a folder covers what is under it), except the modules of
EXEMPT, which cannot change a stage's outputs.

``--write`` keeps every dep outside src/ (data, artifacts, metrics) and every src/ folder that
still covers a needed module (such as ``src/deepfake_detection/models``, or the whole package for
register), drops src/ deps that no longer exist or cover nothing the stage runs, and adds the
modules still missing (a package folder when the stage runs every module under it). It edits the
text of dvc.yaml, so comments, anchors and layout stay; run ``dvc commit`` after it (the stages'
outputs are unchanged; DVC only records the new dependencies).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import click
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import import_graph  # noqa: E402  (tools/ is not a package)

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = import_graph.PACKAGE

# Modules (prefixes, relative to the package) a stage may run without listing them: none of them can
# change what a stage computes. Each with its reason.
EXEMPT = {
    "cli": "the command line: parses the arguments and calls the stage, whose modules are checked",
    "__main__": "`python -m deepfake_detection`: calls the command line",
    "tracking": "MLflow logging (runs, tags, parameters, metrics, artifacts in the tracking store) and write_json "
    "(the layout of a JSON file, not its figures)",
    "lineage": "the pipeline_run id tagged on the MLflow runs of one `dvc repro`",
    "signals": "SIGTERM handling: a terminated stage leaves no outputs",
    "paths": "where the stages read and write: those paths are dvc.yaml's own deps and outs",
    "tracking_server": "`deepfake-detect mlflow-server`: the team's tracking server",
}


INERT = "a module with nothing but a docstring (an empty package __init__) runs no code"


def inert(module: import_graph.Module) -> bool:
    """Nothing but a docstring and ``from __future__`` imports."""
    return all(
        (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
        or (isinstance(node, ast.ImportFrom) and node.module == "__future__")
        for node in module.tree.body
    )


def is_exempt(module: str, modules: dict[str, import_graph.Module] | None = None) -> bool:
    """In EXEMPT, or INERT."""
    relative = import_graph.short(module)
    if modules is not None and inert(modules[module]):
        return True
    return any(relative == prefix or relative.startswith(prefix + ".") for prefix in EXEMPT)


@dataclass
class Stage:
    name: str
    cmd: str
    deps: list[str]  # as written in dvc.yaml (a foreach/matrix stage: its `do` template)
    subcommand: list[str] = field(default_factory=list)
    needed: set[str] = field(default_factory=set)  # package modules its command runs, exempt ones excluded
    missing: list[str] = field(default_factory=list)  # needed modules no dep covers


# ----------------------------------------------------------------------------- dvc.yaml
def load_stages(dvc_yaml: Path) -> list[Stage]:
    """The stages of dvc.yaml; a foreach/matrix stage once, by its ``do`` template (its src/ deps and
    its subcommand are the same for every item)."""
    stages = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"]
    found = []
    for name, body in stages.items():
        body = body.get("do", body)
        deps = [next(iter(d)) if isinstance(d, dict) else d for d in body.get("deps", [])]
        found.append(Stage(name, body["cmd"], [str(d) for d in deps]))
    return found


def expanded_stages(root: Path = ROOT) -> list[tuple[str, str, list[str]]]:
    """DVC's own reading of dvc.yaml, foreach and matrix stages expanded (``train@<model>``):
    (name, cmd, deps) of each. The check reads the templates; a test checks they agree."""
    from dvc.repo import Repo  # DVC: only for this cross-check
    from dvc.stage import PipelineStage

    with Repo(str(root)) as repo:  # its stages include data.dvc's: only dvc.yaml's are pipeline stages
        stages = [s for s in repo.index.stages if isinstance(s, PipelineStage)]
        return [(s.addressing, s.cmd, [d.def_path for d in s.deps]) for s in stages]


def module_path(module: import_graph.Module, root: Path) -> str:
    """The module's file relative to the project root, as dvc.yaml writes it."""
    return module.path.relative_to(root).as_posix()


def covers(dep: str, path: str) -> bool:
    dep = dep.rstrip("/")
    return path == dep or path.startswith(dep + "/")


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


# ----------------------------------------------------------------------------- the check
def check(root: Path = ROOT, dvc_yaml: Path | None = None, src: Path | None = None) -> list[Stage]:
    """Every stage of ``dvc_yaml`` [root/dvc.yaml] with the modules it runs and those missing from its
    deps; the package is read under ``src`` [root/src]."""
    src = src or root / "src"
    modules = import_graph.load_modules(src)
    edges = import_graph.import_edges(modules)
    stages = load_stages(dvc_yaml or root / "dvc.yaml")
    for stage in stages:
        chain, stage.subcommand = click_path(stage.cmd, root)
        ran = command_modules(chain, modules, edges)
        stage.needed = {m for m in ran if not is_exempt(m, modules)}
        src_deps = [d for d in stage.deps if d.startswith("src/")]
        stage.missing = sorted(
            module_path(modules[m], src.parent)
            for m in stage.needed
            if not any(covers(d, module_path(modules[m], src.parent)) for d in src_deps)
        )
    return stages


def stale_deps(stages: list[Stage], root: Path = ROOT) -> dict[str, list[str]]:
    """Per stage, the src/ deps that do not exist."""
    return {
        s.name: bad for s in stages if (bad := [d for d in s.deps if d.startswith("src/") and not (root / d).exists()])
    }


# ----------------------------------------------------------------------------- --write
def wanted_deps(stage: Stage, modules: dict[str, import_graph.Module], root: Path) -> list[str]:
    """The src/ deps the stage should list: the folders it lists that still cover a needed module,
    then what is still missing (a package folder where every module under it is needed)."""
    needed = sorted(module_path(modules[m], root) for m in stage.needed)
    keep = [d for d in stage.deps if d.startswith("src/") and (root / d).is_dir() and any(covers(d, p) for p in needed)]
    keep += [d for d in stage.deps if d.startswith("src/") and d in needed and not any(covers(k, d) for k in keep)]
    todo = [p for p in needed if not any(covers(k, p) for k in keep)]
    everything = sorted(module_path(m, root) for m in modules.values())
    folders = sorted({p.rpartition("/")[0] for p in todo}, key=len)
    for folder in folders:
        under = [p for p in everything if covers(folder, p)]
        if any(covers(k, folder) for k in keep) or len(under) < 2 or not set(under) <= set(needed):
            continue
        keep.append(folder)
    keep += [p for p in todo if not any(covers(k, p) for k in keep)]
    return keep


_ITEM = re.compile(r"^(\s*)- (\S+?)(\s*#.*)?$")


def rewrite(text: str, stages: list[Stage], wanted: dict[str, list[str]]) -> str:
    """dvc.yaml's text with each stage's src/ deps replaced by ``wanted[stage]``: kept lines stay as
    they were (their comments too), dropped ones go, new ones follow the stage's last src/ dep."""
    lines = text.splitlines(keepends=True)
    out, stage, in_deps, indent, pending = [], None, False, None, []
    names = {s.name for s in stages}

    def flush():
        nonlocal pending
        out.extend(f"{indent}- {dep}\n" for dep in pending)
        pending = []

    for line in lines:
        if (m := re.match(r"^  ([\w@-]+):", line)) and m.group(1) in names:
            stage = m.group(1)
        stripped = line.strip()
        if stage and re.match(r"^\s+deps:\s*$", line):
            in_deps, indent = True, None
            pending = [d for d in wanted[stage] if d not in _listed(text, stage, stages)]
            out.append(line)
            continue
        if in_deps:
            item = _ITEM.match(line.rstrip("\n"))
            if item and (indent is None or item.group(1) == indent):
                indent = item.group(1)
                dep = item.group(2)
                if dep.startswith("src/") and dep not in wanted[stage]:
                    continue
                out.append(line)
                continue
            if stripped.startswith("#") and stripped:
                out.append(line)
                continue
            flush()
            in_deps = False
        out.append(line)
    if in_deps:
        flush()
    return "".join(out)


def _listed(text: str, stage: str, stages: list[Stage]) -> list[str]:
    return next(s.deps for s in stages if s.name == stage)


def write(root: Path = ROOT, dvc_yaml: Path | None = None) -> list[Stage]:
    """Rewrite the src/ deps of ``dvc_yaml`` so that the check passes; return the stages as checked
    before."""
    dvc_yaml = dvc_yaml or root / "dvc.yaml"
    stages = check(root, dvc_yaml)
    modules = import_graph.load_modules(root / "src")
    wanted = {s.name: wanted_deps(s, modules, root) for s in stages}
    text = dvc_yaml.read_text(encoding="utf-8")
    new = rewrite(text, stages, wanted)
    before, after = yaml.safe_load(text), yaml.safe_load(new)
    for name in before["stages"]:  # the edit touched src/ deps and nothing else
        b, a = before["stages"][name], after["stages"][name]
        b, a = b.get("do", b), a.get("do", a)
        assert {k: v for k, v in b.items() if k != "deps"} == {k: v for k, v in a.items() if k != "deps"}, name
        assert [d for d in b.get("deps", []) if not str(d).startswith("src/")] == [
            d for d in a.get("deps", []) if not str(d).startswith("src/")
        ], name
    dvc_yaml.write_text(new, encoding="utf-8")
    return stages


# ----------------------------------------------------------------------------- the report
def format_report(stages: list[Stage], root: Path = ROOT) -> str:
    out = []
    for stage in stages:
        out.append(
            f"{stage.name} ({' '.join(stage.subcommand)}): runs {len(stage.needed)} modules, "
            f"{len(stage.missing)} missing from its deps"
        )
        out += [f"  missing: {path}" for path in stage.missing]
    for name, bad in stale_deps(stages, root).items():
        out += [f"{name}: dep {d} does not exist" for d in bad]
    total = sum(len(s.missing) for s in stages)
    out.append(f"\n{total} missing dependencies in {sum(bool(s.missing) for s in stages)} stages")
    out.append("exempt: " + "; ".join(f"{k}: {v}" for k, v in EXEMPT.items()) + f"; and {INERT}")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the src/ deps of dvc.yaml")
    parser.add_argument("--root", type=Path, default=ROOT, help="the project [this checkout]")
    args = parser.parse_args(argv)
    if args.write:
        before = write(args.root)
        print(f"dvc.yaml: {sum(len(s.missing) for s in before)} missing dependencies added; now:\n")
    stages = check(args.root)
    print(format_report(stages, args.root))
    return 1 if any(s.missing for s in stages) or stale_deps(stages, args.root) else 0


if __name__ == "__main__":
    sys.exit(main())
