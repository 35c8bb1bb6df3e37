"""Stages `robustness@<model>`, `robustness-ensemble` and `robustness-report`: how much a model's
test AUC and accuracy drop when the test images are JPEG re-compressed, blurred, down-scaled or
all of these (params.yaml ``robustness.perturbations``, data/perturb.py).

Each test image is read once per chunk, perturbed in memory (encoded bytes in, encoded bytes
out) and scored through the path every prediction takes: ``data/decode.py``'s ``decode_checked``
(the training pipeline's decode and resize), or under ``data.view: patches`` the image's grid of
crops (``views.score_image``). Accuracy is at the threshold tuned on validation
(``metrics/threshold/<model>.json``). The ensembles combine their members' perturbed scores with
the weights, thresholds or stacker the ensemble stage stored (``artifacts/ensembles/``): no model
is run again.
"""

from __future__ import annotations

import logging

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import paths, tracking
from ..config import Params
from ..data.manifest import load_manifest
from ..evaluation.ensemble import KINDS, Ensemble
from ..evaluation.report import read_json
from ..evaluation.robustness import (
    CLEAN,
    metrics_json,
    perturbation_columns,
    plot_robustness,
    robustness_table,
    write_report,
)
from .scoring import load_final_model, perturbed_scores

logger = logging.getLogger(__name__)


def _settings(params: Params) -> dict[str, object]:
    return {"robustness.seed": params.robustness.seed} | {
        f"robustness.{name}": ",".join(f"{k}={v}" for k, v in spec.model_dump().items() if v is not None)
        for name, spec in params.robustness.perturbations.items()
    }


def report(name: str, kind: str, scores: pd.DataFrame, threshold: float, params: Params) -> dict:
    """Table, metrics JSON, DVC plot CSV and figure of one model or ensemble; logged to its own
    MLflow run (``robustness-<name>``)."""
    columns = perturbation_columns(scores)
    table = robustness_table(scores.y.to_numpy(), {c: scores[c].to_numpy() for c in columns}, threshold)
    result = metrics_json(threshold, table, len(scores))
    tracking.write_json(result, paths.stage_metrics("robustness", name))
    plot = paths.robustness_plot(name)
    plot.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(plot, index=False)
    fig = plot_robustness(table, f"{name}: test AUC under perturbations")
    log = {"threshold": threshold, "kind": kind, **_settings(params)}
    with tracking.stage_run("robustness", params, model=name, log=log):
        for row in table.itertuples():
            values = {"auc": row.auc, "accuracy": row.accuracy}
            if row.perturbation != CLEAN:
                values |= {"auc_drop": row.auc_drop, "accuracy_drop": row.accuracy_drop}
            tracking.log_metrics(values, prefix=f"robustness/{row.perturbation}/")
        tracking.log_figure(fig, "robustness/auc.png")
        tracking.log_artifact(plot, "robustness")
        tracking.log_dict(result, "robustness/metrics.json")
    plt.close(fig)
    worst = table.iloc[1:].sort_values("auc").iloc[0]
    logger.info(
        "robustness %s: clean AUC %.4f; worst %s %.4f (drop %.4f)",
        name,
        table.auc.iloc[0],
        worst.perturbation,
        worst.auc,
        worst.auc_drop,
    )
    return result


def run(model_name: str, params: Params) -> dict:
    """``robustness@<model>``: the model's test split under every perturbation."""
    chosen = read_json(paths.stage_metrics("threshold", model_name))
    model = load_final_model(model_name)
    manifest = load_manifest(paths.MANIFEST)
    rows = manifest[manifest.split == "test"]
    if rows.empty:
        raise ValueError("the manifest has no test images: re-run prepare")
    outputs = (
        paths.robustness_scores(model_name),
        paths.stage_metrics("robustness", model_name),
        paths.robustness_plot(model_name),
    )
    with paths.replaced_on_success(*outputs):  # a failure keeps the previous outputs
        scores = perturbed_scores(model, rows, params)
        paths.robustness_scores(model_name).parent.mkdir(parents=True, exist_ok=True)
        scores.to_csv(paths.robustness_scores(model_name), index=False)
        return report(model_name, "single", scores, float(chosen["threshold"]), params)


def ensemble_scores() -> dict[str, tuple[Ensemble, pd.DataFrame]]:
    """Every ensemble the ensemble stage fit (``ensemble_<kind>``) with its perturbed test scores:
    its members' (``artifacts/robustness/<member>.csv``) combined with its stored weights,
    thresholds or stacker, one column per perturbation."""
    ensembles = [Ensemble.from_dict(read_json(paths.ensemble_file(f"ensemble_{kind}"))) for kind in KINDS]
    members = list(dict.fromkeys(m for e in ensembles for m in e.members))
    frames = {}
    for m in members:
        path = paths.robustness_scores(m)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run `dvc repro robustness@{m}` first")
        frames[m] = pd.read_csv(path, dtype={"subgroup": str}, keep_default_na=False)
    first = frames[members[0]]
    for m, df in frames.items():
        if list(df.path) != list(first.path) or perturbation_columns(df) != perturbation_columns(first):
            raise ValueError(
                f"robustness scores of {m} and {members[0]} cover different images or perturbations: "
                "re-run their robustness stages with the same manifest and params"
            )
    out = {}
    for kind, ens in zip(KINDS, ensembles):
        scores = first[["path", "label", "y", "subgroup"]].copy()
        for c in perturbation_columns(first):
            scores[c] = ens.predict(np.column_stack([frames[m][c].to_numpy() for m in ens.members]))
        out[f"ensemble_{kind}"] = (ens, scores)
    return out


def run_ensembles(params: Params) -> list[dict]:
    """``robustness-ensemble``: every ensemble the ensemble stage fit, on its members' perturbed
    scores (:func:`ensemble_scores`), at its own tuned threshold."""
    combined = ensemble_scores()
    outputs = [p for n in combined for p in (paths.stage_metrics("robustness", n), paths.robustness_plot(n))]
    results = []
    with paths.replaced_on_success(*outputs):
        for name, (ens, scores) in combined.items():
            if ens.threshold is None:
                raise ValueError(f"{paths.ensemble_file(name)} holds no threshold: re-run the ensemble stage")
            results.append(report(name, "ensemble", scores, ens.threshold, params))
    return results


def run_report(params: Params) -> pd.DataFrame:
    """``robustness-report``: every model's and ensemble's table in reports/robustness.md (and .csv)."""
    names = [*params.models.names(), *(f"ensemble_{k}" for k in KINDS)]
    results = {n: read_json(paths.stage_metrics("robustness", n)) for n in names}
    with paths.replaced_on_success(paths.ROBUSTNESS_CSV, paths.ROBUSTNESS_MD):
        table = write_report(
            results, paths.ROBUSTNESS_CSV, paths.ROBUSTNESS_MD, order=list(params.robustness.perturbations)
        )
        with tracking.stage_run("robustness-report", params, log=_settings(params)):
            tracking.log_artifact(paths.ROBUSTNESS_CSV)
            tracking.log_artifact(paths.ROBUSTNESS_MD)
    logger.info("%s", paths.ROBUSTNESS_MD.read_text())
    return table
