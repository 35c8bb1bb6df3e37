"""Decision thresholds chosen on validation predictions.

Every function here takes labels ``y`` (0 = real, 1 = fake) and scores ``p`` = P(fake) of ONE
split. :func:`select_threshold` is meant to be called on the validation split only: it has no
test argument, so the threshold it returns cannot depend on test predictions. The test split is
then scored at that fixed threshold (and, for reference, at 0.5).

Convention used throughout the package (the same as ``sklearn.metrics.roc_curve``): a sample is
predicted fake when ``p >= threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import RocCurveDisplay, auc, precision_recall_curve, roc_curve  # noqa: E402

METHODS = ("youden", "max_f1", "target_recall", "target_fpr")


def validate_scores(y, p, *, require_both: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert labels and probabilities; returns ``(y as int, p as float)`` 1-D arrays.

    Raises ``ValueError`` when the lengths differ, the arrays are empty or not 1-D, a label is not
    0/1, a probability is NaN or outside [0, 1], or (with ``require_both``) only one class occurs.
    """
    y = np.asarray(y)
    p = np.asarray(p, dtype=float)
    if y.ndim != 1 or p.ndim != 1:
        raise ValueError(f"labels and probabilities must be 1-D; got shapes {y.shape} and {p.shape}")
    if len(y) != len(p):
        raise ValueError(f"labels and probabilities differ in length: {len(y)} labels, {len(p)} probabilities")
    if len(y) == 0:
        raise ValueError("no samples: labels and probabilities are empty")
    if y.dtype.kind == "f" and np.isnan(y).any():
        raise ValueError("labels contain NaN")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(
            f"labels must be 0 (real) or 1 (fake); found {sorted(set(np.unique(y).tolist()) - {0, 1})[:5]}"
        )
    if np.isnan(p).any():
        raise ValueError(f"probabilities contain NaN ({int(np.isnan(p).sum())} of {len(p)})")
    if (p < 0).any() or (p > 1).any():
        raise ValueError(f"probabilities must lie in [0, 1]; found min {p.min():g}, max {p.max():g}")
    y = y.astype(int)
    if require_both and len(np.unique(y)) < 2:
        only = "real (0)" if y[0] == 0 else "fake (1)"
        raise ValueError(
            f"the split needs both classes (real and fake) to choose a threshold or compute ROC "
            f"metrics; all {len(y)} labels are {only}"
        )
    return y, p


def rates_at(y, p, threshold: float) -> tuple[float, float]:
    """``(fpr, tpr)`` when predicting fake for ``p >= threshold`` (both classes required)."""
    y, p = validate_scores(y, p)
    pred = p >= threshold
    tpr = float(pred[y == 1].mean())
    fpr = float(pred[y == 0].mean())
    return fpr, tpr


@dataclass(frozen=True)
class ThresholdResult:
    """The chosen threshold, the (fpr, tpr) it gives on the split it was chosen on, and the ROC.

    ``roc_fpr``/``roc_tpr``/``roc_thresholds`` are ``sklearn.metrics.roc_curve``'s arrays (all
    points kept; its ``inf`` first threshold clipped to 1.0) for plotting.
    """

    threshold: float
    method: str
    target: float | None
    fpr: float
    tpr: float
    roc_fpr: np.ndarray = field(repr=False)
    roc_tpr: np.ndarray = field(repr=False)
    roc_thresholds: np.ndarray = field(repr=False)

    @property
    def auc(self) -> float:
        return float(auc(self.roc_fpr, self.roc_tpr))

    def to_dict(self) -> dict:
        """Scalars only, JSON-serialisable (for metrics files / MLflow params)."""
        return {
            "threshold": self.threshold,
            "method": self.method,
            "target": self.target,
            "fpr": self.fpr,
            "tpr": self.tpr,
        }


def _check_target(method: str, target: float | None) -> float | None:
    if method not in METHODS:
        raise ValueError(f"unknown threshold method {method!r}; choose one of {', '.join(METHODS)}")
    if method.startswith("target_"):
        if target is None:
            raise ValueError(f"method {method!r} needs a target rate in (0, 1)")
        target = float(target)
        if not 0 < target < 1:
            raise ValueError(f"target must lie in (0, 1); got {target}")
        return target
    return None


def select_threshold(y, p, method: str = "youden", target: float | None = None) -> ThresholdResult:
    """Choose a decision threshold from one split's labels and P(fake) (use validation).

    - ``youden``: maximises Youden's J = tpr - fpr over ``roc_curve``'s thresholds (ties: the
      highest threshold).
    - ``max_f1``: maximises F1 over ``precision_recall_curve``'s thresholds (ties: the lowest).
    - ``target_recall``: the highest threshold whose recall (tpr) >= ``target``.
    - ``target_fpr``: the lowest threshold whose fpr <= ``target``.

    The returned threshold is always finite and in [0, 1] (sklearn's ``inf`` is clipped to 1.0);
    ``fpr``/``tpr`` are recomputed at the returned threshold with ``p >= threshold``.
    """
    y, p = validate_scores(y, p)
    target = _check_target(method, target)
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    thr = np.minimum(thr, 1.0)  # the first threshold is inf: "predict nothing as fake"

    if method == "youden":
        idx = int(np.argmax(tpr - fpr))
        threshold = thr[idx]
    elif method == "max_f1":
        precision, recall, pr_thr = precision_recall_curve(y, p)
        precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
        threshold = pr_thr[int(np.argmax(f1))]
    elif method == "target_recall":
        # thresholds decrease and tpr increases along the curve: the first point reaching the
        # target has the highest threshold. tpr ends at 1 > target, so one always exists.
        idx = int(np.argmax(tpr >= target))
        threshold = thr[idx]
    else:  # target_fpr
        # fpr increases along the curve; fpr[0] == 0 <= target, so one always exists.
        idx = int(np.nonzero(fpr <= target)[0][-1])
        threshold = thr[idx]

    threshold = float(np.clip(threshold, 0.0, 1.0))
    at_fpr, at_tpr = rates_at(y, p, threshold)
    return ThresholdResult(
        threshold=threshold,
        method=method,
        target=target,
        fpr=at_fpr,
        tpr=at_tpr,
        roc_fpr=fpr,
        roc_tpr=tpr,
        roc_thresholds=thr,
    )


def plot_roc_with_threshold(result: ThresholdResult, title: str = "ROC") -> Figure:
    """ROC curve (with the chance diagonal) and the chosen operating point, labelled with the
    threshold. Axes lines: ROC, chance level, operating point (3 in all)."""
    fig = Figure(figsize=(5, 5), layout="constrained")
    ax = fig.add_subplot()
    display = RocCurveDisplay(fpr=result.roc_fpr, tpr=result.roc_tpr, roc_auc=result.auc, name="ROC")
    display.plot(ax=ax, plot_chance_level=True)
    label = f"{result.method}: t = {result.threshold:.3f}"
    ax.plot(
        [result.fpr],
        [result.tpr],
        marker="o",
        markersize=8,
        color="crimson",
        linestyle="none",
        label=f"{label} (fpr {result.fpr:.3f}, tpr {result.tpr:.3f})",
    )
    ax.annotate(
        f"t = {result.threshold:.3f}",
        (result.fpr, result.tpr),
        xytext=(10, -15),
        textcoords="offset points",
        color="crimson",
    )
    ax.set_title(title)
    ax.set_xlabel("false positive rate (real called fake)")
    ax.set_ylabel("true positive rate (fake caught; 1 = fake)")
    ax.legend(loc="lower right")
    return fig
