"""Stage `threshold@<model>`: choose the decision threshold on the VALIDATION split.

Youden's J on the ROC by default (``threshold.method``: youden | max_f1 | target_recall |
target_fpr). The test split is never read here.
"""

from __future__ import annotations

import logging

from .. import paths, tracking
from ..config import Params, flatten
from ..reporting import choose_threshold, predict_split

logger = logging.getLogger(__name__)


def run(model_name: str, params: Params) -> dict:
    outputs = (paths.predictions(model_name, "valid"), paths.stage_metrics("threshold", model_name))
    with paths.replaced_on_success(*outputs):  # a failure keeps the previous outputs
        val = predict_split(model_name, "valid", params)
        with tracking.stage_run("threshold", params, model=model_name, log=flatten(params.threshold, "threshold.")):
            info = choose_threshold(model_name, val, params)
            tracking.log_artifact(paths.predictions(model_name, "valid"), "predictions")
        tracking.write_json(info, paths.stage_metrics("threshold", model_name))
    logger.info(
        "threshold %s: %.4f (%s), val AUC %.4f", model_name, info["threshold"], info["method"], info["val"]["auc"]
    )
    return info
