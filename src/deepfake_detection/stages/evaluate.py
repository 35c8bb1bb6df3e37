"""Stage `evaluate@<model>`: the model on the TEST split, at 0.5 and at its tuned threshold.

Accuracy, precision, recall, F1, ROC AUC, average precision, balanced accuracy, EER, Brier
score, ECE; confusion matrices, ROC and precision-recall curves; per-subgroup breakdown.
"""

from __future__ import annotations

from .. import paths, tracking
from ..config import Params, flatten
from ..evaluation.report import evaluate_scores, predict_split, read_json


def run(model_name: str, params: Params) -> dict:
    chosen = read_json(paths.stage_metrics("threshold", model_name))
    test = predict_split(model_name, "test", params)
    log = {"threshold": chosen["threshold"], "threshold_method": chosen["method"],
           **flatten(params.evaluate, "evaluate.")}
    with tracking.stage_run("evaluate", params, model=model_name, log=log):
        result = evaluate_scores(model_name, "single", "evaluate", test, chosen, params)
        tracking.log_artifact(paths.predictions(model_name, "test"), "predictions")
    tuned = result["test"]["tuned"]
    print(f"evaluate {model_name}: test AUC {tuned['auc']:.4f}, F1 {tuned['f1']:.4f} at {chosen['threshold']:.4f}")
    return result
