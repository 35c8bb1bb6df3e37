"""Stage `ensemble`: soft voting, weighted averaging, majority vote and stacking of the models'
predictions. Weights and the stacker are fit on VALIDATION predictions; each ensemble is then
thresholded on validation and evaluated on test exactly like a single model. The validation
scores of the weighted and stacking ensembles are cross-fitted (out of fold), so that their
threshold and their validation metrics, which `register` compares, are not fit on themselves.
Each ensemble's ``val.robust_auc`` combines its members' perturbed validation scores (written by
their threshold stages) with the fitted ensemble, as `robustness-ensemble` does on test."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .. import paths, tracking
from ..config import Params
from ..evaluation.ensemble import FITTED_KINDS, KINDS, cross_fitted_scores, fit_ensemble
from ..evaluation.report import assert_aligned, load_predictions, read_json, save_predictions
from ..evaluation.robustness import CLEAN, perturbation_columns
from .scoring import choose_threshold, evaluate_scores, robust_auc

logger = logging.getLogger(__name__)


def _member_matrix(members: list[str], split: str) -> tuple[pd.DataFrame, np.ndarray]:
    frames = {m: load_predictions(m, split) for m in members}
    assert_aligned(frames)
    base = next(iter(frames.values())).drop(columns="probability")
    return base, np.column_stack([frames[m].probability.to_numpy() for m in members])


def _perturbed_val(members: list[str]) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The members' perturbed validation scores: the rows, and per perturbation an ``(n, k)`` matrix."""
    frames = {m: pd.read_csv(paths.predictions(m, "valid_perturbed"), keep_default_na=False) for m in members}
    first = next(iter(frames.values()))
    columns = [c for c in perturbation_columns(first) if c != CLEAN]
    return first, {c: np.column_stack([frames[m][c].to_numpy(float) for m in members]) for c in columns}


def run(params: Params) -> list[dict]:
    members = list(params.ensemble.members)
    val, P_val = _member_matrix(members, "valid")
    test, P_test = _member_matrix(members, "test")
    member_thresholds = [read_json(paths.stage_metrics("threshold", m))["threshold"] for m in members]
    perturbed_rows, P_perturbed = _perturbed_val(members)
    outputs = (paths.ARTIFACTS / "ensembles", paths.PLOTS / "ensemble", paths.METRICS / "ensemble")
    with paths.replaced_on_success(*outputs):  # a failure keeps the previous outputs
        results = []
        for kind in KINDS:
            name = f"ensemble_{kind}"
            y_val = val.y.to_numpy()
            ens = fit_ensemble(kind, members, P_val, y_val, member_thresholds, seed=params.seed)
            val_scored = val.assign(
                probability=cross_fitted_scores(kind, members, P_val, y_val, member_thresholds, seed=params.seed)
            )
            test_scored = test.assign(probability=ens.predict(P_test))
            log = {
                "ensemble.kind": kind,
                "ensemble.members": ",".join(members),
                "validation_scores": "cross-fitted" if kind in FITTED_KINDS else "direct",
            }
            with tracking.stage_run("ensemble", params, model=name, log=log):
                chosen = choose_threshold(name, val_scored, params)
                perturbed = perturbed_rows[["path", "y"]].assign(**{c: ens.predict(P) for c, P in P_perturbed.items()})
                chosen["val"]["robust_auc"] = robust_auc(val_scored, perturbed.assign(clean=val_scored.probability))
                tracking.log_metrics({"val_robust_auc": chosen["val"]["robust_auc"]})
                ens.threshold = chosen["threshold"]
                tracking.write_json(ens.to_dict(), paths.ensemble_file(name))
                tracking.log_artifact(paths.ensemble_file(name))
                for split, df in (("valid", val_scored), ("test", test_scored)):
                    save_predictions(df, name, split, ensemble=True)
                result = evaluate_scores(name, "ensemble", "ensemble", test_scored, chosen, params)
            logger.info("%s: val AUC %.4f, test AUC %.4f", name, chosen["val"]["auc"], result["test"]["tuned"]["auc"])
            results.append(result)
    return results
