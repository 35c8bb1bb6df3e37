"""dvc.yaml's source dependencies, derived from the code: for each stage, the package modules its
command runs, against the stage's ``deps``.

    python tools/dvc_deps.py            # list, per stage, every module missing from its deps; exit 1 if any
    python tools/dvc_deps.py --write    # rewrite the src/ deps of dvc.yaml to cover them (comments kept)

How a stage's modules are found: tools/stage_modules.py (its command's function, read with
``ast``, then every import from there, transitively).
A stage must list each of them in ``deps`` (a folder covers what is under it), except the modules of
EXEMPT, which cannot change a stage's outputs.

``--write`` keeps every dep outside src/ (data, artifacts, metrics) and every src/ folder that
still covers a needed module (such as ``src/deepfake_detection/models``, or the whole package for
register), drops src/ deps that no longer exist or cover nothing the stage runs, and adds the
modules still missing (a package folder when the stage runs most modules under it). It edits the
text of dvc.yaml, so comments, anchors and layout stay; run ``dvc commit`` after it (the stages'
outputs are unchanged; DVC only records the new dependencies).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import import_graph  # noqa: E402  (tools/ is not a package)
from stage_modules import click_path, command_modules  # noqa: E402

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
FOLDER_SHARE = 2 / 3
"""``--write`` lists a package folder, not its files, when the stage runs at least this share of the
modules under it: a shorter dvc.yaml, at the cost of a re-run when one of the others changes
(never a stale result)."""


def wanted_deps(stage: Stage, modules: dict[str, import_graph.Module], root: Path) -> list[str]:
    """The src/ deps the stage should list: the folders it lists that still cover a needed module,
    then what is still missing (a package folder where most modules under it are needed: FOLDER_SHARE)."""
    needed = sorted(module_path(modules[m], root) for m in stage.needed)
    keep = [d for d in stage.deps if d.startswith("src/") and (root / d).is_dir() and any(covers(d, p) for p in needed)]
    keep += [d for d in stage.deps if d.startswith("src/") and d in needed and not any(covers(k, d) for k in keep)]
    todo = [p for p in needed if not any(covers(k, p) for k in keep)]
    everything = sorted(module_path(m, root) for m in modules.values())
    folders = sorted({p.rpartition("/")[0] for p in todo}, key=len)
    for folder in folders:
        under = [p for p in everything if covers(folder, p)]
        share = len(set(under) & set(needed)) / max(len(under), 1)
        if any(covers(k, folder) for k in keep) or len(under) < 2 or share < FOLDER_SHARE:
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
