"""How the register stage chooses among the candidates (every model and ensemble): the best by a
validation metric, and that metric of any scores at a threshold. The summary stage marks the
same choice in its table; the champion gate compares on the same metric."""

from __future__ import annotations

import numpy as np

from ..config import LOWER_IS_BETTER, SE_METRICS
from .metrics import binary_metrics


def pick_best(results: list[dict], metric: str, within_se: float = 0.0) -> dict:
    """The candidate with the best validation ``metric`` (``val_auc`` -> ``result["val"]["auc"]``).

    ``within_se`` > 0 (``register.simpler_within_se``, AUC metrics only): when the best is an
    ensemble, the best single model is chosen instead if its metric lies within ``within_se``
    standard errors of the ensemble's (:func:`auc_standard_error` on the ensemble's validation
    images): on a small validation split a difference that size is noise, and one network is
    simpler to serve and to explain than several."""
    key = metric.removeprefix("val_")
    if within_se > 0 and metric not in SE_METRICS:
        raise ValueError(f"register.simpler_within_se needs an AUC metric ({', '.join(SE_METRICS)}), not {metric}")
    if not results:
        raise FileNotFoundError("no evaluated model found under metrics/: run `dvc repro` first")
    sign = -1 if metric in LOWER_IS_BETTER else 1  # the same rule as champion.is_better
    best = max(results, key=lambda r: (sign * r["val"][key], r["kind"] == "single"))
    singles = [r for r in results if r["kind"] == "single"]
    if within_se <= 0 or best["kind"] == "single" or not singles:
        return best
    single = max(singles, key=lambda r: r["val"][key])
    v = best["val"]
    se = auc_standard_error(v[key], v["tp"] + v["fn"], v["tn"] + v["fp"])
    return single if single["val"][key] >= v[key] - within_se * se else best


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley and McNeil's (1982) standard error of an AUC measured on ``positives`` and
    ``negatives`` images: ``sqrt((A(1-A) + (n1-1)(Q1-A^2) + (n2-1)(Q2-A^2)) / (n1 n2))`` with
    ``Q1 = A / (2 - A)``, ``Q2 = 2A^2 / (1 + A)``."""
    if positives < 1 or negatives < 1:
        raise ValueError(f"an AUC's standard error needs both classes, got {positives} fake and {negatives} real")
    a = float(auc)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    variance = (a * (1 - a) + (positives - 1) * (q1 - a * a) + (negatives - 1) * (q2 - a * a)) / (positives * negatives)
    return float(np.sqrt(max(variance, 0.0)))


def selection_value(y, p, threshold: float, metric: str, n_bins: int = 10) -> float:
    """``metric`` (``val_auc`` -> ``auc``) of scores ``p`` at ``threshold``, by the metric code
    every stage uses."""
    if metric == "val_robust_auc":
        raise ValueError("val_robust_auc needs the perturbed validation images, not scores: the stored tags decide")
    return float(binary_metrics(y, p, threshold, n_bins)[metric.removeprefix("val_")])
