"""Where each stage reads and writes, relative to the project root. dvc.yaml names the same
paths (tests/code/test_dvc_yaml.py checks that they agree)."""

from __future__ import annotations

from pathlib import Path

ARTIFACTS = Path("artifacts")
METRICS = Path("metrics")
PLOTS = Path("plots")
REPORTS = Path("reports")

MANIFEST = ARTIFACTS / "manifest.csv"
DATA_METRICS = METRICS / "data.json"


def model_file(model: str, stage: str) -> Path:
    """The saved ``.keras`` model of a training stage (``train`` or ``finetune``)."""
    return ARTIFACTS / "models" / model / f"{stage}.keras"


def stage_metrics(stage: str, model: str) -> Path:
    return METRICS / stage / f"{model}.json"


def history_csv(stage: str, model: str) -> Path:
    """Per-epoch training log, a DVC plot."""
    return PLOTS / stage / f"{model}.csv"


def predictions(model: str, split: str) -> Path:
    """``path,label,probability`` for every image of a split."""
    return ARTIFACTS / "predictions" / model / f"{split}.csv"


def eval_plots(model: str) -> Path:
    return PLOTS / "evaluate" / model
