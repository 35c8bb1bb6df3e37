"""The evaluation's files: predictions per split (``artifacts/predictions/``), the stages' JSON
reports and their headline numbers. Plain files, no model and no MLflow run (``stages/scoring.py``
predicts, chooses thresholds and writes the reports)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import paths
from ..config import Params

PREDICTION_COLUMNS = ["path", "label", "y", "subgroup", "probability"]


def save_predictions(df: pd.DataFrame, name: str, split: str, ensemble: bool = False) -> Path:
    out = paths.predictions(name, split, ensemble)
    out.parent.mkdir(parents=True, exist_ok=True)
    df[PREDICTION_COLUMNS].to_csv(out, index=False)
    return out


def load_predictions(name: str, split: str, ensemble: bool = False) -> pd.DataFrame:
    path = paths.predictions(name, split, ensemble)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the threshold/evaluate stages of {name} first")
    return pd.read_csv(path, dtype={"subgroup": str}, keep_default_na=False)


def read_json(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the stage that writes it (`dvc repro`)")
    return json.loads(path.read_text())


def headline(result: dict) -> dict:
    """The numbers `dvc metrics show` lists by default: val AUC, test AUC at the tuned threshold
    with its 95% interval, and the threshold."""
    ci = result["test_auc_ci95"]
    return {
        "val_auc": result["val"]["auc"],
        "test_auc": result["test"]["tuned"]["auc"],
        "test_auc_low": ci["low"],
        "test_auc_high": ci["high"],
        "threshold": result["threshold"],
    }


def load_results(params: Params) -> list[dict]:
    """The evaluation of every configured model and ensemble (files left behind by a model no
    longer in params are not picked up); a missing one is an error naming the stage to run."""
    from .ensemble import KINDS

    files = [paths.stage_metrics("evaluate", m) for m in params.models.names()]
    files += [paths.stage_metrics("ensemble", f"ensemble_{k}") for k in KINDS]
    return [read_json(f) for f in files]


def assert_aligned(frames: dict[str, pd.DataFrame]) -> None:
    """Members' predictions must cover the same images in the same order."""
    first_name, first = next(iter(frames.items()))
    for name, df in frames.items():
        if len(df) != len(first) or not np.array_equal(df.path.to_numpy(), first.path.to_numpy()):
            raise ValueError(
                f"predictions of {name} and {first_name} cover different images: "
                "re-run their threshold/evaluate stages on the same manifest"
            )
