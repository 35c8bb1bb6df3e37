"""Stage `evaluate@<model>`: the model on the TEST split, at 0.5 and at its tuned threshold.

Accuracy, precision, recall, F1, ROC AUC, average precision, balanced accuracy, EER, Brier
score, ECE; confusion matrices, ROC and precision-recall curves; per-subgroup breakdown.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .. import paths, tracking
from ..config import Params, flatten
from ..data.decode import decode_images
from ..data.shards import iter_contents
from ..evaluation.report import read_json
from .scoring import evaluate_scores, load_final_model, predict_split

logger = logging.getLogger(__name__)


def run(model_name: str, params: Params) -> dict:
    chosen = read_json(paths.stage_metrics("threshold", model_name))
    model = load_final_model(model_name)
    outputs = (
        paths.predictions(model_name, "test"),
        paths.stage_metrics("evaluate", model_name),
        paths.eval_plots("evaluate", model_name),
    )
    with paths.replaced_on_success(*outputs):  # a failure keeps the previous outputs
        test = predict_split(model_name, "test", params, model=model)
        log = {
            "threshold": chosen["threshold"],
            "threshold_method": chosen["method"],
            **{k: v for k, v in flatten(params.evaluate, "evaluate.").items() if k != "evaluate.external"},
        }
        with tracking.stage_run("evaluate", params, model=model_name, log=log):
            result = evaluate_scores(model_name, "single", "evaluate", test, chosen, params)
            tracking.log_artifact(paths.predictions(model_name, "test"), "predictions")
            if params.evaluate.gradcam_examples:
                tracking.log_figure(gradcam_grid(model, test, chosen["threshold"], params), "gradcam_outcomes.png")
    tuned = result["test"]["tuned"]
    logger.info(
        "evaluate %s: test AUC %.4f, F1 %.4f at %.4f", model_name, tuned["auc"], tuned["f1"], chosen["threshold"]
    )
    return result


def gradcam_grid(model, test: pd.DataFrame, threshold: float, params: Params):
    """Grad-CAM overlays of up to ``evaluate.gradcam_examples`` true/false positives/negatives."""
    import tensorflow as tf

    from ..data.pipeline import decode_image
    from ..data.views import scorer, view_of
    from ..explain import gradcam_with_scores, native_map, overlay_grid

    pred = test.probability.to_numpy() >= threshold
    truth = test.y.to_numpy() == 1
    picks, titles = [], []
    for name, mask in (("TP", pred & truth), ("FP", pred & ~truth), ("TN", ~pred & ~truth), ("FN", ~pred & truth)):
        for i in np.flatnonzero(mask)[: params.evaluate.gradcam_examples]:
            picks.append(i)
            titles.append(f"{name} p={test.probability.iloc[i]:.2f}")
    contents = list(iter_contents(test.path.iloc[i] for i in picks))  # files or shard records
    data = view_of(params.data, model.name)
    view = scorer(data.view)
    if view.native:  # each whole image's map: the grid crops' Grad-CAM stitched, or a forensic residual energy
        images = [decode_image(tf.constant(c)).numpy() for c in contents]
        size = view.input_size(data)
        heatmaps = [native_map([model], None, im, size, threshold=threshold)[0] for im in images]
        return overlay_grid(images, heatmaps, titles)
    pixels, _ = decode_images(contents, params.data.image_size)
    heatmaps, _ = gradcam_with_scores(model, pixels, threshold=threshold)
    return overlay_grid(list(pixels), list(heatmaps), titles)
