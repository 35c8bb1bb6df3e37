"""How the register stage chooses among the candidates (every model and ensemble): the best by a
validation metric, and that metric of any scores at a threshold. The summary stage marks the
same choice in its table; the champion gate compares on the same metric."""

from __future__ import annotations

from ..config import LOWER_IS_BETTER
from .metrics import binary_metrics


def pick_best(results: list[dict], metric: str) -> dict:
    """The candidate with the best validation ``metric`` (``val_auc`` -> ``result["val"]["auc"]``)."""
    key = metric.removeprefix("val_")
    if not results:
        raise FileNotFoundError("no evaluated model found under metrics/: run `dvc repro` first")
    sign = -1 if metric in LOWER_IS_BETTER else 1  # the same rule as champion.is_better
    return max(results, key=lambda r: (sign * r["val"][key], r["kind"] == "single"))


def selection_value(y, p, threshold: float, metric: str, n_bins: int = 10) -> float:
    """``metric`` (``val_auc`` -> ``auc``) of scores ``p`` at ``threshold``, by the metric code
    every stage uses."""
    if metric == "val_robust_auc":
        raise ValueError("val_robust_auc needs the perturbed validation images, not scores: the stored tags decide")
    return float(binary_metrics(y, p, threshold, n_bins)[metric.removeprefix("val_")])
