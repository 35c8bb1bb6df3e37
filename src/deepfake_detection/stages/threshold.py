"""Stage `threshold@<model>`: choose the decision threshold on the VALIDATION split.

Youden's J on the ROC by default (``threshold.method``: youden | max_f1 | target_recall |
target_fpr). The validation images are also scored under every ``robustness.perturbations``
(``artifacts/predictions/<model>/valid_perturbed.csv``): ``val.robust_auc``, the mean of the clean
and perturbed validation AUCs, is what ``register.metric: val_robust_auc`` ranks by. The test split
is never read here.

A refitted linear-head network (``train.refit``) has seen the validation images: each train and
validation image is scored by the weights of the k-fold head that held it out (the train stage's
``paths.folds``); those out-of-fold scores stand for its validation scores (the file the
ensembles read) and its perturbed ones, and the threshold is chosen on the out-of-fold scores of
train+valid, a larger sample than validation alone.
"""

from __future__ import annotations

import logging

from .. import paths, tracking
from ..config import Params, flatten
from ..data.manifest import load_manifest
from ..evaluation.report import save_predictions
from ..linear_fit import Folds
from .scoring import (
    choose_threshold,
    load_final_model,
    out_of_fold_scores,
    perturbed_scores,
    predict_split,
    robust_auc,
)

logger = logging.getLogger(__name__)


def run(model_name: str, params: Params) -> dict:
    perturbed_csv = paths.predictions(model_name, "valid_perturbed")
    outputs = (paths.predictions(model_name, "valid"), perturbed_csv, paths.stage_metrics("threshold", model_name))
    with paths.replaced_on_success(*outputs):  # a failure keeps the previous outputs
        model, manifest = load_final_model(model_name), load_manifest(paths.MANIFEST)
        folds = Folds.load(paths.folds(model_name)) if paths.folds(model_name).is_file() else None
        oof = None
        if folds is None or not folds.weights:
            val = predict_split(model_name, "valid", params, model=model)
            perturbed = perturbed_scores(model, manifest[manifest.split == "valid"], params)
        else:  # a refitted head has seen the validation images: its out-of-fold scores stand for them
            oof, perturbed = out_of_fold_scores(model, folds, manifest, params)
            val = oof[oof.split == "valid"].reset_index(drop=True)
            save_predictions(val, model_name, "valid")
        perturbed.to_csv(perturbed_csv, index=False)
        settings = {**flatten(params.threshold, "threshold."), "out_of_fold": oof is not None}
        with tracking.stage_run("threshold", params, model=model_name, log=settings):
            info = choose_threshold(model_name, val if oof is None else oof, params)
            if oof is not None:
                info["out_of_fold"] = {"images": len(oof), "valid_auc": _auc(val)}
            info["val"]["robust_auc"] = robust_auc(val, perturbed)
            tracking.log_metrics({"val_robust_auc": info["val"]["robust_auc"]})
            tracking.log_artifact(paths.predictions(model_name, "valid"), "predictions")
            tracking.log_artifact(perturbed_csv, "predictions")
        tracking.write_json(info, paths.stage_metrics("threshold", model_name))
    logger.info(
        "threshold %s: %.4f (%s), val AUC %.4f", model_name, info["threshold"], info["method"], info["val"]["auc"]
    )
    return info


def _auc(scores) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(scores.y, scores.probability))
