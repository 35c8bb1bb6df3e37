"""The robustness report with 95% intervals: each model's and ensemble's test AUC under every
perturbation, with the stratified bootstrap interval the evaluate stage gives the clean test AUC
(``evaluation.metrics.auc_interval``, seeded with the project's ``seed``).
Usage: python benchmarks/robustness_intervals.py PROJECT_DIR

PROJECT_DIR is a project where the robustness stages ran (e.g. the folder benchmarks/real_data.sh
ran in): the single models' perturbed scores are ``artifacts/robustness/<model>.csv``, the
ensembles' are combined from them exactly as the robustness-ensemble stage does. Prints one
Markdown table, best clean AUC first."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score

from deepfake_detection import paths
from deepfake_detection.config import load_params
from deepfake_detection.evaluation.metrics import auc_interval
from deepfake_detection.evaluation.robustness import perturbation_columns
from deepfake_detection.stages.robustness import ensemble_scores


def interval_table(scores: dict[str, pd.DataFrame], seed: int) -> pd.DataFrame:
    """One row per model, one ``AUC [low, high]`` cell per perturbation (``clean`` first)."""
    rows = []
    for name, df in scores.items():
        row, aucs = {"model": name}, {}
        for column in perturbation_columns(df):
            y, p = df.y.to_numpy(), df[column].to_numpy()
            low, high = auc_interval(y, p, seed=seed)
            aucs[column] = roc_auc_score(y, p)
            row[column] = f"{aucs[column]:.3f} [{low:.3f}, {high:.3f}]"
        rows.append((aucs["clean"], row))
    return pd.DataFrame([row for _, row in sorted(rows, key=lambda r: -r[0])])


def main(project: Path) -> None:
    os.chdir(project)  # the project's relative paths (artifacts/, params.yaml)
    params = load_params()
    folder = paths.robustness_scores("any").parent
    singles = sorted(folder.glob("*.csv"))
    if not singles:
        raise SystemExit(f"no {folder}/*.csv in {project}: run `dvc repro robustness@<model>` there first")
    scores = {f.stem: pd.read_csv(f, dtype={"subgroup": str}, keep_default_na=False) for f in singles}
    if paths.ensemble_file("ensemble_stacking").is_file():
        scores |= {name: df for name, (_, df) in ensemble_scores().items()}
    print(interval_table(scores, params.seed).to_markdown(index=False))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]).resolve())
