"""dvc.yaml's src/ dependencies against the code (tools/dvc_deps.py): every package module a
stage's command runs, transitively, is in the stage's deps (a folder covers what is under it),
except the modules of EXEMPT, which cannot change a stage's outputs. A copy of dvc.yaml with one
dependency removed must fail with exactly that dependency; ``--write`` must repair a copy."""

from __future__ import annotations

import shutil

import pytest
import yaml
from tools_loader import load_tool

deps = load_tool("dvc_deps")
follow = load_tool("stage_modules")
ROOT = deps.ROOT


@pytest.fixture(scope="module")
def stages():
    return deps.check(ROOT)


def test_every_stage_runs_a_command_of_the_package(stages):
    assert stages
    for stage in stages:
        assert stage.subcommand, stage.name
        assert any(m.startswith("deepfake_detection.stages.") for m in stage.needed), stage.name


def test_every_stage_lists_the_modules_it_runs(stages):
    gaps = [f"{s.name}: {path}" for s in stages for path in s.missing]
    assert not gaps, f"{len(gaps)} modules missing from dvc.yaml deps (python tools/dvc_deps.py --write):\n" + (
        "\n".join(gaps)
    )


def test_every_src_dep_exists(stages):
    assert not deps.stale_deps(stages, ROOT)


def test_every_exemption_names_a_module_and_a_reason():
    modules = {deps.import_graph.short(m) for m in deps.import_graph.load_modules()}
    for prefix, reason in deps.EXEMPT.items():
        assert any(m == prefix or m.startswith(prefix + ".") for m in modules), f"EXEMPT {prefix}: no such module"
        assert len(reason) > 20, prefix


def test_dvc_expands_each_stage_as_its_template():
    """The check reads each foreach stage once, by its template; DVC's expansion (train@<model>...)
    runs the same subcommand with the same src/ deps for every item."""
    templates = {s.name: s for s in deps.load_stages(ROOT / "dvc.yaml")}
    expanded = deps.expanded_stages(ROOT)
    assert {name.partition("@")[0] for name, _, _ in expanded} == set(templates)
    for name, cmd, stage_deps in expanded:
        template = templates[name.partition("@")[0]]
        assert follow.click_path(cmd, ROOT)[1] == follow.click_path(template.cmd, ROOT)[1], name
        assert [d for d in stage_deps if d.startswith("src/")] == [d for d in template.deps if d.startswith("src/")]


# ----------------------------------------------------------------------------- negative tests
@pytest.fixture
def project(tmp_path):
    """A copy of what the check reads: dvc.yaml, pyproject.toml (the console script), src/."""
    for name in ("dvc.yaml", "pyproject.toml", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return tmp_path


def _gaps(root):
    return {(s.name, path) for s in deps.check(root) for path in s.missing}


def _remove_dep(dvc_yaml, stage: str, dep: str) -> None:
    lines = dvc_yaml.read_text().splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if line.strip().partition("#")[0].strip() == f"- {dep}"]
    owner = [i for i in hits if _stage_at(lines, i) == stage]
    assert len(owner) == 1, (stage, dep)
    del lines[owner[0]]
    dvc_yaml.write_text("".join(lines))


def _stage_at(lines, index):
    for line in reversed(lines[:index]):
        if line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":"):
            return line.strip().rstrip(":")
    return None


def test_a_removed_dependency_is_reported_exactly(project):
    before = _gaps(project)
    _remove_dep(project / "dvc.yaml", "train", "src/deepfake_detection/stages/train.py")
    assert _gaps(project) - before == {("train", "src/deepfake_detection/stages/train.py")}
    assert before <= _gaps(project)


def test_a_removed_folder_dependency_reports_each_module_under_it(project):
    before = _gaps(project)
    _remove_dep(project / "dvc.yaml", "threshold", "src/deepfake_detection/evaluation")
    new = _gaps(project) - before
    assert new and all(stage == "threshold" and "/evaluation/" in path for stage, path in new)


def test_a_dependency_on_a_module_no_stage_runs_is_not_needed(project):
    """The stage module of another stage is not what train runs."""
    stage = next(s for s in deps.check(project) if s.name == "train")
    assert "deepfake_detection.stages.train" in stage.needed
    assert "deepfake_detection.stages.evaluate" not in stage.needed
    assert not any(deps.is_exempt(m) for m in stage.needed)


def test_write_repairs_dvc_yaml_and_keeps_the_rest(project):
    _remove_dep(project / "dvc.yaml", "train", "src/deepfake_detection/stages/train.py")
    before = yaml.safe_load((project / "dvc.yaml").read_text())
    comments = [line for line in (project / "dvc.yaml").read_text().splitlines() if line.lstrip().startswith("#")]
    assert deps.main(["--write", "--root", str(project)]) == 0
    text = (project / "dvc.yaml").read_text()
    after = yaml.safe_load(text)
    assert _gaps(project) == set()
    assert [line for line in text.splitlines() if line.lstrip().startswith("#")] == comments
    assert "src/deepfake_detection/stages/train.py" in after["stages"]["train"]["do"]["deps"]
    for name, stage in before["stages"].items():
        old, new = stage.get("do", stage), after["stages"][name].get("do", after["stages"][name])
        assert {k: v for k, v in old.items() if k != "deps"} == {k: v for k, v in new.items() if k != "deps"}
        assert [d for d in old["deps"] if not d.startswith("src/")] == [
            d for d in new["deps"] if not d.startswith("src/")
        ]
    assert deps.main(["--write", "--root", str(project)]) == 0
    assert (project / "dvc.yaml").read_text() == text  # a second run changes nothing


def test_write_drops_a_dependency_that_no_longer_exists(project):
    dvc_yaml = project / "dvc.yaml"
    dvc_yaml.write_text(
        dvc_yaml.read_text().replace(
            "        - src/deepfake_detection/stages/train.py\n",
            "        - src/deepfake_detection/stages/train.py\n        - src/deepfake_detection/gone.py  # moved\n",
        )
    )
    assert deps.stale_deps(deps.check(project), project) == {"train": ["src/deepfake_detection/gone.py"]}
    deps.write(project)
    assert "gone.py" not in dvc_yaml.read_text()


def test_a_command_is_followed_through_the_command_line_to_its_stage(tmp_path):
    """What a command runs, read on a small command line: an import inside the command, a helper of
    another command-line module called with the stage's name (importlib with an f-string), and a
    name imported at the top; the command-line modules themselves are not followed whole."""
    files = {
        "__init__.py": "",
        "config.py": "def load(): ...\n",
        "cli/__init__.py": "from .common import run_stage\nfrom ..config import load\n",
        "cli/common.py": (
            "import importlib\n"
            "from .. import paths\n\n"
            "def run_stage(module, function='run'):\n"
            "    return getattr(importlib.import_module(f'..stages.{module}', __package__), function)()\n\n"
            "def unrelated():\n"
            "    from ..stages import other\n"
        ),
        "cli/commands.py": (
            "from . import common\n"
            "from ..config import load\n\n"
            "def train():\n"
            "    from ..models import zoo\n"
            "    load()\n"
            "    common.run_stage('train', function='run')\n\n"
            "def make(name):\n"
            "    def command():\n"
            "        common.run_stage(name)\n"
            "    return command\n"
        ),
        "paths.py": "",
        "models/__init__.py": "",
        "models/zoo.py": "",
        "stages/__init__.py": "",
        "stages/train.py": "from ..models import zoo\n",
        "stages/other.py": "",
        "stages/summary.py": "",
    }
    for name, text in files.items():
        path = tmp_path / "src" / "deepfake_detection" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    modules = deps.import_graph.load_modules(tmp_path / "src")
    commands = modules["deepfake_detection.cli.commands"]
    train = next(n for n in commands.tree.body if getattr(n, "name", "") == "train")
    roots = follow.function_roots(commands, train, modules)
    assert roots == {f"deepfake_detection.{m}" for m in ("models.zoo", "config", "stages.train", "paths")}
    command = next(n for n in follow.ast.walk(commands.tree) if getattr(n, "name", "") == "command")
    roots = follow.function_roots(commands, command, modules, {"name": "summary"})
    assert roots == {"deepfake_detection.stages.summary", "deepfake_detection.paths"}
