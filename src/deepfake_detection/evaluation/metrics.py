"""Binary metrics, confusion matrices, subgroup metrics, figures and DVC plot rows.

Inputs are labels ``y`` (0 = real, 1 = fake) and ``p`` = P(fake); a sample is predicted fake when
``p >= threshold`` (the convention of ``sklearn.metrics.roc_curve``). scikit-learn computes every
metric that it has; only the equal error rate and the expected calibration error are computed
here (both documented below).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy import stats  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    ConfusionMatrixDisplay,
    PrecisionRecallDisplay,
    RocCurveDisplay,
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from deepfake_detection import LABELS  # noqa: E402
from deepfake_detection.evaluation.ensemble import KINDS  # noqa: E402
from deepfake_detection.evaluation.thresholds import validate_scores  # noqa: E402
from deepfake_detection.models.registry import model_names  # noqa: E402

METRIC_KEYS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "auc",
    "average_precision",
    "balanced_accuracy",
    "eer",
    "brier",
    "ece",
    "threshold",
    "tp",
    "fp",
    "tn",
    "fn",
    "n",
)
SUBGROUP_ORDER = ("easy", "mid", "hard")  # CIPLAB's file-name prefixes of fake images
SUBGROUP_COLUMNS = ("group", "n", "n_fake", "n_real", "accuracy", "recall", "fpr", "mean_p", "auc", "auc_reference")


def predict_labels(p, threshold: float) -> np.ndarray:
    """0/1 predictions: fake (1) where ``p >= threshold``."""
    return (np.asarray(p, dtype=float) >= threshold).astype(int)


def equal_error_rate(y, p) -> float:
    """Equal error rate: the rate where the ROC's fpr equals its fnr = 1 - tpr.

    The ROC is piecewise linear between ``roc_curve``'s points; the crossing of fpr - fnr through
    zero is linearly interpolated between the two points around it. A perfect classifier gives 0,
    an uninformative one 0.5.
    """
    y, p = validate_scores(y, p)
    fpr, tpr, _ = roc_curve(y, p)
    d = fpr - (1 - tpr)  # -1 at the first point (0, 0), +1 at the last (1, 1): increasing
    i = int(np.argmax(d >= 0))  # first point at or past the crossing (i >= 1)
    if d[i] == 0:
        return float(fpr[i])
    t = d[i - 1] / (d[i - 1] - d[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def expected_calibration_error(y, p, n_bins: int = 10) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins on [0, 1].

    ECE = sum over non-empty bins b of (n_b / n) * |mean(y in b) - mean(p in b)|. Samples are
    binned exactly as ``sklearn.calibration.calibration_curve(strategy="uniform")`` bins them
    (``np.searchsorted`` on the inner edges), so ``prob_true``/``prob_pred`` there are this
    function's per-bin means.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1; got {n_bins}")
    y, p = validate_scores(y, p, require_both=False)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], p)
    total = np.bincount(ids, minlength=n_bins)
    sum_p = np.bincount(ids, weights=p, minlength=n_bins)
    sum_y = np.bincount(ids, weights=y, minlength=n_bins)
    nz = total > 0
    gaps = np.abs(sum_y[nz] / total[nz] - sum_p[nz] / total[nz])
    return float(np.sum(total[nz] / len(p) * gaps))


def binary_metrics(y, p, threshold: float = 0.5, n_bins: int = 10) -> dict[str, float]:
    """All metrics of one split at one threshold; keys are :data:`METRIC_KEYS`.

    Threshold-free: ``auc``, ``average_precision``, ``eer``, ``brier``, ``ece``. At the threshold:
    ``accuracy, precision, recall, f1, balanced_accuracy`` (``zero_division=0``) and the counts
    ``tp, fp, tn, fn, n`` (ints). Both classes must be present.
    """
    y, p = validate_scores(y, p)
    pred = predict_labels(p, threshold)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "auc": float(roc_auc_score(y, p)),
        "average_precision": float(average_precision_score(y, p)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "eer": equal_error_rate(y, p),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p, n_bins),
        "threshold": float(threshold),
        "tp": int(tp),
        "fp": int(fp),
        "tn": int(tn),
        "fn": int(fn),
        "n": int(len(y)),
    }


EXTERNAL_KEYS = ("auc", "ap", "eer", "accuracy", "n")


def external_metrics(y, p, threshold: float) -> dict[str, float]:
    """The cross-dataset figures (:data:`EXTERNAL_KEYS`): ROC ``auc``, ``ap`` (average precision,
    fake = positive), ``eer`` and ``accuracy`` at ``threshold`` (the one tuned on the training
    data's validation split), and the image count ``n``. Both classes must be present."""
    y, p = validate_scores(y, p)
    return {
        "auc": float(roc_auc_score(y, p)),
        "ap": float(average_precision_score(y, p)),
        "eer": equal_error_rate(y, p),
        "accuracy": float(accuracy_score(y, predict_labels(p, threshold))),
        "n": int(len(y)),
    }


def auc_interval(y, p, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """A stratified bootstrap ``confidence`` interval of the ROC AUC: fakes and reals are resampled
    separately (each resample keeps the split's class counts), percentile bounds. Seeded, so the
    same scores give the same interval. ``(nan, nan)`` when a class is missing."""
    y, p = np.asarray(y).astype(int).reshape(-1), np.asarray(p, dtype=float).reshape(-1)
    pos, neg = p[y == 1], p[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    aucs = np.empty(n_boot)
    for i in range(n_boot):  # Mann-Whitney AUC of the resample: P(score_fake > score_real), ties 1/2
        a, b = rng.choice(pos, len(pos)), rng.choice(neg, len(neg))
        ranks = stats.rankdata(np.concatenate([a, b]))
        aucs[i] = (ranks[: len(a)].sum() - len(a) * (len(a) + 1) / 2) / (len(a) * len(b))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(aucs, [tail, 100 - tail])
    return float(low), float(high)


def proportion_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (accuracy, recall, ...: counts from
    :func:`binary_metrics`); ``(nan, nan)`` when ``n`` is 0."""
    if n <= 0:
        return float("nan"), float("nan")
    z = float(stats.norm.ppf(1 - (1 - confidence) / 2))
    phat = k / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def confusion(y, p, threshold: float) -> dict:
    """Confusion matrix at ``threshold``: rows = true class, columns = predicted, order
    ``labels`` = ["real", "fake"]. ``normalized`` divides each row by its true-class count (a
    class that does not occur gives a row of zeros)."""
    y, p = validate_scores(y, p, require_both=False)
    pred = predict_labels(p, threshold)
    counts = confusion_matrix(y, pred, labels=[0, 1])
    rows = counts.sum(axis=1, keepdims=True)
    normalized = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    return {
        "labels": list(LABELS),
        "threshold": float(threshold),
        "counts": counts.astype(int).tolist(),
        "normalized": normalized.tolist(),
    }


def _new_axes(figsize=(5, 5)):
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


# Axis words of every figure: the positive class (label 1) is "fake".
ACTUAL, PREDICTED = "actual (1 = fake)", "predicted (1 = fake)"
FPR_LABEL, TPR_LABEL = "false positive rate (real called fake)", "true positive rate (fake caught; 1 = fake)"


def _roc_axes(ax) -> None:
    ax.set_xlabel(FPR_LABEL)
    ax.set_ylabel(TPR_LABEL)


def plot_confusion(y, p, threshold: float, normalize: bool = False, title: str = "Confusion matrix") -> Figure:
    """``ConfusionMatrixDisplay`` at ``threshold`` (normalized by true class if asked); one axes."""
    y, p = validate_scores(y, p, require_both=False)
    fig, ax = _new_axes()
    ConfusionMatrixDisplay.from_predictions(
        y,
        predict_labels(p, threshold),
        labels=[0, 1],
        display_labels=[f"{i} = {lb}" for i, lb in enumerate(LABELS)],
        normalize="true" if normalize else None,
        values_format=".2f" if normalize else "d",
        cmap="Blues",
        colorbar=False,
        ax=ax,
    )
    ax.set_title(f"{title} (t = {threshold:.3f})")
    ax.set_xlabel(PREDICTED)
    ax.set_ylabel(ACTUAL)
    return fig


def model_colour(name: str | None) -> str | None:
    """The colour of a model or ensemble in every figure: the networks the code registers, then
    the ensembles, take matplotlib's ``tab10`` colours in that order (then ``tab20``'s light ones);
    any other name a fixed pick by a checksum of it. The same name, the same colour in every chart."""
    import zlib

    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    if name is None:
        return None
    palette = [to_hex(c) for c in colormaps["tab10"].colors]
    palette += [to_hex(c) for c in colormaps["tab20"].colors[1::2]]
    known = [*model_names(), *(f"ensemble_{k}" for k in KINDS)]
    index = known.index(name) if name in known else zlib.crc32(name.encode())
    return palette[index % len(palette)]


def plot_roc(y, p, title: str = "ROC", name: str | None = None) -> Figure:
    """``RocCurveDisplay.from_predictions`` with the chance diagonal (2 lines), AUC in the legend."""
    y, p = validate_scores(y, p)
    fig, ax = _new_axes()
    RocCurveDisplay.from_predictions(
        y, p, name=name, ax=ax, plot_chance_level=True, curve_kwargs={"color": model_colour(name)}
    )
    ax.set_title(title)
    _roc_axes(ax)
    return fig


def plot_pr(y, p, title: str = "Precision-recall", name: str | None = None) -> Figure:
    """``PrecisionRecallDisplay.from_predictions`` with the prevalence line (2 lines), AP in the legend."""
    y, p = validate_scores(y, p)
    fig, ax = _new_axes()
    PrecisionRecallDisplay.from_predictions(
        y, p, name=name, ax=ax, plot_chance_level=True, curve_kwargs={"color": model_colour(name)}
    )
    ax.set_title(title)
    ax.set_xlabel("recall (fake caught; 1 = fake)")
    ax.set_ylabel("precision (called fake and fake)")
    return fig


def plot_roc_overlay(curves: dict[str, tuple], title: str = "ROC") -> Figure:
    """Every model's ROC on one axes (``{name: (y, p)}``), AUC in the legend, plus one chance
    diagonal: ``len(curves) + 1`` lines."""
    if not curves:
        raise ValueError("plot_roc_overlay needs at least one (y, p) curve")
    fig, ax = _new_axes((9, 6))
    # ensembles first, dashed, so that the single models' lines are drawn over them
    order = sorted(curves, key=lambda n: not n.startswith("ensemble_"))
    for i, name in enumerate(order):
        y, p = validate_scores(*curves[name])
        style = {"color": model_colour(name), "linestyle": "--" if name.startswith("ensemble_") else "-"}
        RocCurveDisplay.from_predictions(
            y, p, name=name, ax=ax, plot_chance_level=(i == len(order) - 1), curve_kwargs=style
        )
    ax.set_title(title)
    _roc_axes(ax)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)  # beside the curves, not over them
    return fig


def _group_order(names) -> list[str]:
    known = [g for g in SUBGROUP_ORDER if g in names]
    return known + sorted(set(names) - set(known))


def _auc_or_nan(y, p) -> float:
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def subgroup_metrics(y, p, groups, threshold: float) -> pd.DataFrame:
    """One row per non-empty subgroup; columns :data:`SUBGROUP_COLUMNS`.

    ``groups`` holds one subgroup name per sample; ``""``, ``None`` and NaN mean "no subgroup"
    and get no row. Within a group, at ``threshold``:

    - ``accuracy`` over the group's samples; ``recall`` = detection rate on the group's fakes
      (NaN without fakes); ``fpr`` = share of the group's reals called fake (NaN without reals);
      ``mean_p`` = mean P(fake).
    - ``auc``: when the group holds both classes, its own AUC (``auc_reference = "within"``).
      When it holds only fakes (the CIPLAB case: only fakes carry ``easy``/``mid``/``hard``, reals
      have no subgroup), its fakes are ranked against ALL reals of the split
      (``"group fakes vs all reals"``): how well the detector separates that difficulty level from
      real faces. Symmetrically, a reals-only group is ranked against all fakes. NaN (reference
      ``""``) when the split lacks the other class altogether.
    """
    y, p = validate_scores(y, p, require_both=False)
    g = pd.Series(list(groups), dtype=object)
    if len(g) != len(y):
        raise ValueError(f"groups differ in length from labels: {len(g)} groups, {len(y)} labels")
    g = g.where(g.notna(), "").astype(str).str.strip().to_numpy()
    pred = predict_labels(p, threshold)

    rows = []
    for name in _group_order({x for x in g if x}):
        m = g == name
        yg, pg, predg = y[m], p[m], pred[m]
        fakes, reals = yg == 1, yg == 0
        if fakes.any() and reals.any():
            auc, ref = _auc_or_nan(yg, pg), "within"
        elif fakes.any() and (y == 0).any():
            others = y == 0
            auc = _auc_or_nan(np.r_[yg, y[others]], np.r_[pg, p[others]])
            ref = "group fakes vs all reals"
        elif reals.any() and (y == 1).any():
            others = y == 1
            auc = _auc_or_nan(np.r_[yg, y[others]], np.r_[pg, p[others]])
            ref = "group reals vs all fakes"
        else:
            auc, ref = float("nan"), ""
        rows.append(
            {
                "group": name,
                "n": int(m.sum()),
                "n_fake": int(fakes.sum()),
                "n_real": int(reals.sum()),
                "accuracy": float(accuracy_score(yg, predg)),
                "recall": float(predg[fakes].mean()) if fakes.any() else float("nan"),
                "fpr": float(predg[reals].mean()) if reals.any() else float("nan"),
                "mean_p": float(pg.mean()),
                "auc": auc,
                "auc_reference": ref,
            }
        )
    return pd.DataFrame(rows, columns=list(SUBGROUP_COLUMNS))


def dvc_roc_points(y, p) -> list[dict]:
    """``[{"fpr", "tpr", "threshold"}, ...]`` from ``roc_curve`` for DVC's ``roc`` template
    (wrap as ``{"roc": rows}`` in a JSON plot file; the ``inf`` first threshold becomes 1.0)."""
    y, p = validate_scores(y, p)
    fpr, tpr, thr = roc_curve(y, p)
    thr = np.minimum(thr, 1.0)
    return [{"fpr": float(a), "tpr": float(b), "threshold": float(c)} for a, b, c in zip(fpr, tpr, thr)]


def dvc_confusion_rows(y, p, threshold: float) -> list[dict]:
    """``[{"actual": "real"|"fake", "predicted": "real"|"fake"}, ...]``, one per sample, for DVC's
    ``confusion`` template (x: actual, y: predicted)."""
    y, p = validate_scores(y, p, require_both=False)
    pred = predict_labels(p, threshold)
    return [{"actual": LABELS[a], "predicted": LABELS[b]} for a, b in zip(y.tolist(), pred.tolist())]
