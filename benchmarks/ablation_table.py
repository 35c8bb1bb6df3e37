"""The ablation table of a sweep: one row per DVC experiment, read from the MLflow store where
its runs landed (grouped by their `dvc_exp` tag). Usage:
    python benchmarks/ablation_table.py WORK [--model light_se_cnn]

WORK is a project folder whose mlflow.db holds the runs (benchmarks/ablation.sh makes one).
Columns: val AUC (threshold stage; the evaluate run's copy when the threshold came from DVC's run
cache), test AUC with its 95% interval (evaluate stage, stratified bootstrap), test accuracy at the
tuned threshold, the test AUC under each perturbation when the experiment ran `robustness@MODEL`
(`--robustness jpeg_75 blur_1 downscale_50`), minutes (the experiment's runs, end to end, added
up: stages restored from the run cache count nothing), and the settings it changed (MLflow params
that differ from the `base` experiment's)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow  # noqa: E402
import pandas as pd  # noqa: E402

from deepfake_detection.tracking import use_store  # noqa: E402

DERIVED = ("lr", "total_params", "trainable_params")  # follow from other settings: not changes of their own


def table(
    work: Path, model: str = "light_se_cnn", experiment: str = "deepfake-detection", robustness: tuple = ()
) -> pd.DataFrame:
    use_store(work)  # the project's store, created under its lock if a run has not made it yet
    runs = mlflow.search_runs(experiment_names=[experiment], filter_string="tags.dvc_exp != ''")
    if runs.empty:
        raise SystemExit(f"no run with a dvc_exp tag in {work / 'mlflow.db'}: run benchmarks/ablation.sh first")
    runs = runs[runs["tags.model"] == model]
    rows, settings = [], {}
    for name, group in runs.groupby("tags.dvc_exp", sort=False):
        by_stage = {s: g.sort_values("start_time").iloc[-1] for s, g in group.groupby("tags.stage")}
        if "evaluate" not in by_stage:
            continue
        ev, th = by_stage["evaluate"], by_stage.get("threshold")
        minutes = sum((r.end_time - r.start_time).total_seconds() for r in by_stage.values()) / 60
        train = by_stage.get("train")
        settings[name] = {
            k.removeprefix("params."): v
            for k, v in (train if train is not None else ev).items()
            if k.startswith("params.") and isinstance(v, str)
        }  # NaN: another stage's param
        rows.append(
            {
                "experiment": name,
                "val AUC": (th if th is not None else ev)["metrics.val_auc"],
                "test AUC": ev["metrics.test_auc"],
                "95% interval": f"[{ev['metrics.test_auc_ci95_low']:.3f}, {ev['metrics.test_auc_ci95_high']:.3f}]",
                "test accuracy": ev["metrics.test_accuracy"],
                **{p: _perturbed_auc(by_stage.get("robustness"), p) for p in robustness},
                "minutes": round(minutes, 1),
                "epochs": _epochs(train),
            }
        )
    if not rows:
        raise SystemExit(f"no experiment in {work / 'mlflow.db'} has evaluated {model} yet")
    out = pd.DataFrame(rows)
    base = settings.get("base", {})
    out["changed"] = [
        ", ".join(f"{k}={v}" for k, v in sorted(settings[n].items()) if k in base and base[k] != v and k not in DERIVED)
        or "-"
        for n in out.experiment
    ]
    return out


def _perturbed_auc(run, perturbation: str) -> float:
    if run is None:
        return float("nan")
    return run.get(f"metrics.robustness/{perturbation}/auc", float("nan"))


def _epochs(train) -> int | None:
    if train is None or pd.isna(train.get("metrics.best_epochs_run", float("nan"))):
        return None  # restored from the run cache, or a closed-form head
    return int(train["metrics.best_epochs_run"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--model", default="light_se_cnn")
    parser.add_argument("--robustness", nargs="*", default=[], help="perturbations to show, e.g. jpeg_75 blur_1")
    args = parser.parse_args()
    print(table(args.work, args.model, robustness=tuple(args.robustness)).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
