"""The project's own files agree with each other: pins, stages, entry points, CLI."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from click.testing import CliRunner

from deepfake_detection.cli import cli
from deepfake_detection.models import MODEL_NAMES, TRANSFER_MODELS

ROOT = Path(__file__).resolve().parents[2]


def _pins(lines):
    out = {}
    for line in lines:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)==([^\s;]+)\s*", line)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_conda_yaml_pins_the_same_versions_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    py_pins = _pins(project["dependencies"])
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert py_pins and _pins(pip_section) == py_pins
    assert all("==" in d for d in project["dependencies"]), "every dependency is pinned exactly"


def _normalized(pins):
    return {re.sub(r"[-_.]+", "-", name): version for name, version in pins.items()}


def test_the_lock_has_every_pin_of_pyproject_at_its_version():
    """`make venv` installs with requirements.lock as constraints: a pin changed in pyproject.toml
    without `make lock` would make the install fail (or, worse, the lock go stale)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _normalized(_pins(project["dependencies"] + project["optional-dependencies"]["dev"]))
    locked = _normalized(_pins((ROOT / "requirements.lock").read_text().splitlines()))
    stale = {name: (version, locked.get(name)) for name, version in wanted.items() if locked.get(name) != version}
    assert not stale, f"pyproject.toml pin vs requirements.lock: {stale}; run `make lock`"
    assert len(locked) > len(wanted)  # and what they pull in


def test_top_level_layout():
    for name in (
        "MLproject",
        "dvc.yaml",
        "params.yaml",
        "src",
        "tests",
        "conda.yaml",
        "data.dvc",
        "pyproject.toml",
        "Makefile",
        "README.md",
        ".ci/run",
    ):
        assert (ROOT / name).exists(), name


def test_telemetry_and_analytics_are_off_in_the_repo():
    assert re.search(r"analytics\s*=\s*false", (ROOT / ".dvc" / "config").read_text())
    makefile = (ROOT / "Makefile").read_text()
    assert "MLFLOW_DISABLE_TELEMETRY := true" in makefile and "DVC_NO_ANALYTICS := 1" in makefile


def test_dvc_stages_cover_every_model_and_only_transfer_models_finetune():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    stages = dvc["stages"]
    # the per-model stages loop over params.yaml, which config/ checks against the registered networks
    assert {stages[s]["foreach"] for s in ("train", "threshold", "evaluate", "robustness")} == {"${models}"}
    assert stages["finetune"]["foreach"] == "${finetune.models}"
    for params_file in ("params.yaml", "params-real.yaml"):
        params = yaml.safe_load((ROOT / params_file).read_text())
        assert tuple(params["models"]) == MODEL_NAMES, params_file
        assert tuple(params["finetune"]["models"]) == TRANSFER_MODELS, params_file
    listed = subprocess.run(
        [sys.executable, "-m", "dvc", "stage", "list", "--name-only"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    expected = {f"{stage}@{m}" for stage in ("train", "threshold", "evaluate", "robustness") for m in MODEL_NAMES}
    expected |= {f"finetune@{m}" for m in TRANSFER_MODELS}
    assert {s for s in listed if "@" in s} == expected


def test_mlproject_has_an_entry_point_per_stage_command():
    mlproject = yaml.safe_load((ROOT / "MLproject").read_text())
    assert mlproject["conda_env"] == "conda.yaml"
    entry = mlproject["entry_points"]
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    for stage in dvc["stages"]:
        assert stage in entry, f"MLproject lacks an entry point for stage {stage}"
        assert f"deepfake-detect {stage}" in entry[stage]["command"].replace("_", "-")


def test_cli_help_lists_every_stage():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    for stage in [*dvc["stages"], "sample-data", "ingest"]:
        assert re.search(rf"^\s+{stage}\s", result.output, re.M), stage


def test_cli_reports_a_bad_params_file_by_key(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train:\n  epochz: 3\n")
    result = CliRunner().invoke(cli, ["prepare", "--params", str(bad)])
    assert result.exit_code != 0
    assert "train.epochz: unknown key" in result.output
