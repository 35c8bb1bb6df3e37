"""Decision thresholds: chosen on validation predictions only, with the documented rules."""

import inspect

import numpy as np
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import f1_score

from deepfake_detection.config import ThresholdParams
from deepfake_detection.evaluation.metrics import binary_metrics
from deepfake_detection.evaluation.thresholds import (
    ThresholdResult,
    plot_roc_with_threshold,
    rates_at,
    select_threshold,
    validate_scores,
)


def noisy_scores(n=300, seed=0, signal=0.35):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(signal * y + (1 - signal) * rng.random(n), 0, 1)
    return y, p


# A hand-made split: 4 reals, 5 fakes.
Y_HAND = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
P_HAND = np.array([0.1, 0.2, 0.3, 0.65, 0.6, 0.7, 0.8, 0.9, 0.95])


def test_youden_on_a_hand_made_case():
    # t = 0.7: tpr 4/5, fpr 0 -> J = 0.8;  t = 0.6: tpr 1, fpr 1/4 -> J = 0.75;  t = 0.65: 0.8 - 0.25.
    r = select_threshold(Y_HAND, P_HAND, "youden")
    assert isinstance(r, ThresholdResult)
    assert r.threshold == pytest.approx(0.7)
    assert (r.fpr, r.tpr) == (0.0, pytest.approx(0.8))
    assert r.method == "youden" and r.target is None


def test_youden_ties_take_the_highest_threshold():
    # J = 0.75 at both t = 0.7 (tpr .75, fpr 0) and t = 0.4 (tpr 1, fpr .25).
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    assert select_threshold(y, p).threshold == pytest.approx(0.7)


def test_perfect_separation_gives_a_threshold_between_the_classes():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.05, 0.2, 0.3, 0.7, 0.8, 0.99])
    for method in ("youden", "max_f1"):
        r = select_threshold(y, p, method)
        assert 0.3 < r.threshold <= 0.7
        assert (r.fpr, r.tpr) == (0.0, 1.0)


def test_max_f1_matches_a_brute_force_search():
    y, p = noisy_scores(seed=1)
    r = select_threshold(y, p, "max_f1")
    best = max(f1_score(y, p >= t, zero_division=0) for t in np.unique(p))
    assert f1_score(y, p >= r.threshold) == pytest.approx(best)


@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.95])
def test_target_recall_is_the_highest_threshold_reaching_the_recall(target):
    y, p = noisy_scores(seed=2)
    r = select_threshold(y, p, "target_recall", target)
    assert r.tpr >= target
    higher = np.unique(p[p > r.threshold])
    assert all(rates_at(y, p, t)[1] < target for t in higher)  # every higher threshold misses it
    assert r.target == target


@pytest.mark.parametrize("target", [0.01, 0.05, 0.1, 0.3])
def test_target_fpr_is_the_lowest_threshold_within_the_fpr(target):
    y, p = noisy_scores(seed=3)
    r = select_threshold(y, p, "target_fpr", target)
    assert r.fpr <= target
    lower = np.unique(p[p < r.threshold])
    assert all(rates_at(y, p, t)[0] > target for t in lower)  # every lower threshold exceeds it


def test_threshold_is_never_inf():
    # Scores that rank reals above fakes: every point has J <= 0, so Youden picks sklearn's first
    # ROC point (threshold inf), and no threshold reaches a 1% fpr except that one.
    y = np.array([1, 1, 1, 0, 0, 0])
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    for method, target in [("youden", None), ("target_fpr", 0.01)]:
        r = select_threshold(y, p, method, target)
        assert np.isfinite(r.threshold) and 0 <= r.threshold <= 1
        assert r.threshold == 1.0
    assert np.isfinite(r.roc_thresholds).all() and r.roc_thresholds.max() <= 1.0


def test_roc_arrays_are_kept_for_plotting():
    y, p = noisy_scores()
    r = select_threshold(y, p)
    assert len(r.roc_fpr) == len(r.roc_tpr) == len(r.roc_thresholds)
    assert (r.roc_fpr[0], r.roc_tpr[0], r.roc_fpr[-1], r.roc_tpr[-1]) == (0, 0, 1, 1)
    assert r.auc == pytest.approx(binary_metrics(y, p)["auc"])
    assert r.to_dict() == {"threshold": r.threshold, "method": "youden", "target": None, "fpr": r.fpr, "tpr": r.tpr}


def test_the_threshold_depends_on_validation_only():
    """select_threshold takes ONE split's labels and scores and nothing else: called on the
    validation split it cannot see the test split, so no change to test predictions can move the
    threshold; changing the validation predictions can."""
    assert list(inspect.signature(select_threshold).parameters) == ["y", "p", "method", "target"]
    y_val, p_val = noisy_scores(seed=10)
    y_test, p_test = noisy_scores(seed=11)

    def pipeline(y_val, p_val, y_test, p_test):
        t = select_threshold(y_val, p_val).threshold
        return t, binary_metrics(y_test, p_test, t)

    t1, m1 = pipeline(y_val, p_val, y_test, p_test)
    t2, m2 = pipeline(y_val, p_val, y_test[::-1], np.random.default_rng(5).random(len(p_test)))
    assert t1 == pytest.approx(t2, rel=1e-12)  # test predictions changed, the threshold did not
    assert m1 != m2  # ... though the test metrics did
    t3, _ = pipeline(y_val, np.clip(p_val**2, 0, 1) * 0.5 + 0.1 * (y_val == 0), y_test, p_test)
    assert t3 != t1  # validation predictions changed: so did the threshold


def test_params_section_feeds_select_threshold():
    y, p = noisy_scores()
    params = ThresholdParams(method="target_recall", target=0.9)
    r = select_threshold(y, p, **params.model_dump())
    assert r.method == "target_recall" and r.tpr >= 0.9


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 0, 0], [0.1, 0.5, 0.9], "both classes"),
        ([1, 1], [0.1, 0.9], "both classes"),
        ([0, 1, 1], [0.1, 0.9], "differ in length"),
        ([0, 1], [0.1, 1.2], r"\[0, 1\]"),
        ([0, 1], [-0.1, 0.5], r"\[0, 1\]"),
        ([0, 1], [0.1, np.nan], "NaN"),
        ([0, 2], [0.1, 0.5], "0 \\(real\\) or 1 \\(fake\\)"),
        ([], [], "empty"),
    ],
)
def test_invalid_inputs_are_rejected(y, p, message):
    with pytest.raises(ValueError, match=message):
        select_threshold(y, p)


def test_invalid_method_or_target():
    y, p = noisy_scores(n=50)
    with pytest.raises(ValueError, match="unknown threshold method"):
        select_threshold(y, p, "best")
    with pytest.raises(ValueError, match="needs a target"):
        select_threshold(y, p, "target_fpr")
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        select_threshold(y, p, "target_recall", 1.5)


def test_validate_scores_can_allow_one_class():
    y, p = validate_scores([1, 1, 1], [0.2, 0.5, 1.0], require_both=False)
    assert y.dtype.kind == "i" and p.dtype == float


def test_plot_roc_with_threshold():
    y, p = noisy_scores()
    r = select_threshold(y, p, "youden")
    fig = plot_roc_with_threshold(r, "resnet50 (valid)")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.lines) == 3  # ROC, chance diagonal, operating point
    point = ax.lines[-1]
    assert (point.get_xdata()[0], point.get_ydata()[0]) == (r.fpr, r.tpr)
    assert any(f"{r.threshold:.3f}" in t.get_text() for t in ax.texts)
    assert ax.get_title() == "resnet50 (valid)"
