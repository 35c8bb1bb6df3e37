"""Stage `ensemble`: soft voting, weighted averaging, majority vote and stacking of the models'
predictions. Weights and the stacker are fit on VALIDATION predictions; each ensemble is then
thresholded on validation and evaluated on test exactly like a single model. The validation
scores of the weighted and stacking ensembles are cross-fitted (out of fold), so that their
threshold and their validation metrics, which `register` compares, are not fit on themselves."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .. import paths, tracking
from ..config import Params
from ..evaluation.ensemble import FITTED_KINDS, KINDS, cross_fitted_scores, fit_ensemble
from ..evaluation.report import assert_aligned, load_predictions, read_json, save_predictions
from ..reporting import choose_threshold, evaluate_scores

logger = logging.getLogger(__name__)


def _member_matrix(members: list[str], split: str) -> tuple[pd.DataFrame, np.ndarray]:
    frames = {m: load_predictions(m, split) for m in members}
    assert_aligned(frames)
    base = next(iter(frames.values())).drop(columns="probability")
    return base, np.column_stack([frames[m].probability.to_numpy() for m in members])


def run(params: Params) -> list[dict]:
    members = list(params.ensemble.members)
    val, P_val = _member_matrix(members, "valid")
    test, P_test = _member_matrix(members, "test")
    member_thresholds = [read_json(paths.stage_metrics("threshold", m))["threshold"] for m in members]
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
                ens.threshold = chosen["threshold"]
                tracking.write_json(ens.to_dict(), paths.ensemble_file(name))
                tracking.log_artifact(paths.ensemble_file(name))
                for split, df in (("valid", val_scored), ("test", test_scored)):
                    save_predictions(df, name, split, ensemble=True)
                result = evaluate_scores(name, "ensemble", "ensemble", test_scored, chosen, params)
            logger.info("%s: val AUC %.4f, test AUC %.4f", name, chosen["val"]["auc"], result["test"]["tuned"]["auc"])
            results.append(result)
    return results
