"""Stage `threshold@<model>`: choose the decision threshold on the VALIDATION split.

Youden's J on the ROC by default (``threshold.method``: youden | max_f1 | target_recall |
target_fpr). The validation images are also scored under every ``robustness.perturbations``
(``artifacts/predictions/<model>/valid_perturbed.csv``): ``val.robust_auc``, the mean of the clean
and perturbed validation AUCs, is what ``register.metric: val_robust_auc`` ranks by. The test split
is never read here.
"""

from __future__ import annotations

import logging

from .. import paths, tracking
from ..config import Params, flatten
from ..data.manifest import load_manifest
from .scoring import choose_threshold, load_final_model, perturbed_scores, predict_split, robust_auc

logger = logging.getLogger(__name__)


def run(model_name: str, params: Params) -> dict:
    perturbed_csv = paths.predictions(model_name, "valid_perturbed")
    outputs = (paths.predictions(model_name, "valid"), perturbed_csv, paths.stage_metrics("threshold", model_name))
    with paths.replaced_on_success(*outputs):  # a failure keeps the previous outputs
        model = load_final_model(model_name)
        val = predict_split(model_name, "valid", params, model=model)
        manifest = load_manifest(paths.MANIFEST)
        perturbed = perturbed_scores(model, manifest[manifest.split == "valid"], params)
        perturbed.to_csv(perturbed_csv, index=False)
        with tracking.stage_run("threshold", params, model=model_name, log=flatten(params.threshold, "threshold.")):
            info = choose_threshold(model_name, val, params)
            info["val"]["robust_auc"] = robust_auc(val, perturbed)
            tracking.log_metrics({"val_robust_auc": info["val"]["robust_auc"]})
            tracking.log_artifact(paths.predictions(model_name, "valid"), "predictions")
            tracking.log_artifact(perturbed_csv, "predictions")
        tracking.write_json(info, paths.stage_metrics("threshold", model_name))
    logger.info(
        "threshold %s: %.4f (%s), val AUC %.4f", model_name, info["threshold"], info["method"], info["val"]["auc"]
    )
    return info
