"""Metrics against scikit-learn and hand-made cases; subgroups; figures; DVC rows; summary table."""

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
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

from deepfake_detection.data.manifest import subgroup_of as subgroup_from_filename
from deepfake_detection.evaluation.metrics import (
    METRIC_KEYS,
    SUBGROUP_COLUMNS,
    binary_metrics,
    confusion,
    dvc_confusion_rows,
    dvc_roc_points,
    equal_error_rate,
    expected_calibration_error,
    external_metrics,
    plot_confusion,
    plot_pr,
    plot_roc,
    plot_roc_overlay,
    subgroup_metrics,
)
from deepfake_detection.evaluation.summary import LEADING, summary_rows, summary_table, write_summary


def noisy_scores(n=400, seed=0, signal=0.35):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(signal * y + (1 - signal) * rng.random(n), 0, 1)
    return y, p


# 10 samples, 4 fakes then 6 reals; at 0.5: TP 3, FN 1 (0.3), FP 1 (0.6), TN 5.
Y10 = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
P10 = np.array([0.9, 0.8, 0.7, 0.3, 0.6, 0.2, 0.1, 0.1, 0.4, 0.05])


def test_keys_are_exactly_the_documented_ones():
    m = binary_metrics(Y10, P10)
    assert tuple(m) == METRIC_KEYS
    assert set(m) == {
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
    }
    json.dumps(m)  # plain numbers


def test_hand_made_confusion_matrix():
    m = binary_metrics(Y10, P10, threshold=0.5)
    assert (m["tp"], m["fn"], m["fp"], m["tn"], m["n"]) == (3, 1, 1, 5, 10)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["precision"] == pytest.approx(0.75)
    assert m["recall"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 5 / 6) / 2)
    # 22 of the 24 (fake, real) pairs are ranked right: the fake at 0.3 is below the reals 0.6 and 0.4
    assert m["auc"] == pytest.approx(22 / 24)
    assert m["threshold"] == 0.5


def test_threshold_is_inclusive():
    y, p = np.array([0, 1]), np.array([0.3, 0.7])
    assert binary_metrics(y, p, threshold=0.7)["tp"] == 1  # p >= t is fake
    assert binary_metrics(y, p, threshold=0.3)["fp"] == 1


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.63])
def test_agrees_with_scikit_learn(threshold):
    y, p = noisy_scores(seed=4)
    pred = (p >= threshold).astype(int)
    m = binary_metrics(y, p, threshold)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(precision_score(y, pred, zero_division=0))
    assert m["recall"] == pytest.approx(recall_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["average_precision"] == pytest.approx(average_precision_score(y, p))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["brier"] == pytest.approx(brier_score_loss(y, p))
    tn, fp, fn, tp = confusion_matrix(y, pred).ravel()
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (tn, fp, fn, tp)


def test_zero_division_gives_zero():
    m = binary_metrics([0, 1, 0], [0.1, 0.2, 0.3], threshold=0.9)  # nothing predicted fake
    assert m["precision"] == 0 and m["f1"] == 0 and m["recall"] == 0


def test_one_class_is_rejected():
    with pytest.raises(ValueError, match="both classes"):
        binary_metrics([1, 1, 1], [0.2, 0.5, 0.9])


def test_eer_of_perfect_random_and_inverted_classifiers():
    y = np.array([0, 0, 0, 1, 1, 1])
    assert equal_error_rate(y, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]) == pytest.approx(0.0, abs=1e-12)
    assert equal_error_rate(y, np.full(6, 0.5)) == pytest.approx(0.5)  # constant score: the diagonal
    assert equal_error_rate(y, [0.9, 0.8, 0.7, 0.3, 0.2, 0.1]) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    y_big = rng.integers(0, 2, 20_000)
    assert equal_error_rate(y_big, rng.random(20_000)) == pytest.approx(0.5, abs=0.02)


def test_external_metrics_on_hand_made_scores():
    # ranked by score: fake .9, real .8, fake .7, real .4, fake .35, real .2
    y = [1, 0, 1, 0, 1, 0]
    p = [0.9, 0.8, 0.7, 0.4, 0.35, 0.2]
    m = external_metrics(y, p, threshold=0.5)
    assert set(m) == {"auc", "ap", "eer", "accuracy", "n"} and m["n"] == 6
    # AUC: fake .9 outranks 3 reals, .7 two, .35 one: 6 of the 9 (fake, real) pairs
    assert m["auc"] == pytest.approx(6 / 9)
    # AP: precision at each fake, in rank order: 1/1, 2/3, 3/5
    assert m["ap"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # at 0.5: fake .9 and .7 caught, real .8 called fake, the rest right: 4 of 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    # ROC (0,1/3) (1/3,1/3) (1/3,2/3) (2/3,2/3) (2/3,1) (1,1): fnr = fpr = 1/3 at (1/3, 2/3)
    assert m["eer"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="both classes"):
        external_metrics([1, 1], [0.2, 0.9], 0.5)


def test_eer_hand_made_and_interpolated():
    # reals 0.6, 0.1, 0.05; fakes 0.9, 0.4: the ROC goes (0,.5) -> (1/3,.5) -> (1/3,1); the fnr
    # crosses the fpr = 1/3 on the vertical segment: EER = 1/3.
    assert equal_error_rate([0, 0, 0, 1, 1], [0.6, 0.1, 0.05, 0.9, 0.4]) == pytest.approx(1 / 3)
    # A sloped segment: points (0, 0.5) and (0.5, 1) straddle the crossing; on the line
    # tpr = 0.5 + fpr, fpr = 1 - tpr at fpr = 0.25.
    y = [1, 0, 1, 0]
    p = [0.9, 0.5, 0.5, 0.1]  # tied scores: one diagonal step from (0, .5) to (.5, 1)
    assert equal_error_rate(y, p) == pytest.approx(0.25)
    # and binary_metrics reports the same number
    y, p = noisy_scores(seed=6)
    eer = binary_metrics(y, p)["eer"]
    fpr, tpr, _ = roc_curve(y, p)
    i = np.argmin(np.abs(fpr - (1 - tpr)))
    assert abs(eer - fpr[i]) < 0.02 and abs(eer - (1 - tpr[i])) < 0.02


def test_ece_of_calibrated_and_overconfident_predictions():
    # In each bin the share of fakes equals the mean score: perfectly calibrated.
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    p = np.array([0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75])
    assert expected_calibration_error(y, p) == pytest.approx(0.0)
    assert binary_metrics(y, p)["ece"] == pytest.approx(0.0)
    # Always 0.99 sure it is fake, right half the time: ECE = |0.5 - 0.99|.
    y = np.array([1, 0] * 5)
    assert expected_calibration_error(y, np.full(10, 0.99)) == pytest.approx(0.49)
    # Weighted by bin size: 8 samples calibrated in one bin, then one sample in each of two
    # other bins, each off by 0.95 -> 0.8 * 0 + 0.1 * 0.95 + 0.1 * 0.95.
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 1])
    p = np.array([0.25] * 8 + [0.95, 0.05])
    assert expected_calibration_error(y, p) == pytest.approx(0.19)


def test_ece_uses_calibration_curve_binning():
    y, p = noisy_scores(seed=7)
    p[:3] = [0.0, 1.0, 0.5]  # edges: 0 in the first bin, 1 in the last, 0.5 in the upper bin
    for n_bins in (5, 10, 15):
        prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
        ids = np.searchsorted(np.linspace(0, 1, n_bins + 1)[1:-1], p)
        counts = np.bincount(ids, minlength=n_bins)
        counts = counts[counts > 0]
        expected = np.sum(counts / len(p) * np.abs(prob_true - prob_pred))
        assert expected_calibration_error(y, p, n_bins) == pytest.approx(expected)


def test_confusion_dict():
    c = confusion(Y10, P10, 0.5)
    assert c["labels"] == ["real", "fake"]
    assert c["counts"] == [[5, 1], [1, 3]]  # rows: true real, true fake; columns: predicted
    assert np.allclose(c["normalized"], [[5 / 6, 1 / 6], [0.25, 0.75]])
    assert np.allclose(np.sum(c["normalized"], axis=1), 1)
    json.dumps(c)
    one_class = confusion([1, 1], [0.2, 0.9], 0.5)  # a missing class gives a zero row, no NaN
    assert one_class["normalized"] == [[0.0, 0.0], [0.5, 0.5]]


@pytest.mark.parametrize("normalize", [False, True])
def test_plot_confusion(normalize):
    fig = plot_confusion(Y10, P10, 0.5, normalize=normalize, title="cm")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == (sorted(["0.83", "0.17", "0.25", "0.75"]) if normalize else sorted(["5", "1", "1", "3"]))
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0 = real", "1 = fake"]
    # the figure says which label is fake
    assert (fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()) == ("predicted (1 = fake)", "actual (1 = fake)")


def test_plot_roc_and_pr():
    y, p = noisy_scores()
    roc = plot_roc(y, p, "roc", name="resnet50")
    pr = plot_pr(y, p, "pr", name="resnet50")
    for fig in (roc, pr):
        assert isinstance(fig, Figure) and len(fig.axes) == 1
        assert len(fig.axes[0].lines) == 2  # the curve and the chance level
    assert "AUC" in roc.axes[0].get_legend().get_texts()[0].get_text()
    assert "AP" in pr.axes[0].get_legend().get_texts()[0].get_text()
    assert "fake" in roc.axes[0].get_xlabel() and "1 = fake" in roc.axes[0].get_ylabel()
    assert "1 = fake" in pr.axes[0].get_xlabel() and "fake" in pr.axes[0].get_ylabel()


def test_plot_roc_overlay():
    curves = {f"m{i}": noisy_scores(seed=i, signal=0.1 * (i + 1)) for i in range(3)}
    fig = plot_roc_overlay(curves, "all models")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.lines) == 4  # three ROC curves and one chance diagonal
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    for name, (y, p) in curves.items():
        assert f"{name} (AUC = {roc_auc_score(y, p):.2f})" in legend
    with pytest.raises(ValueError):
        plot_roc_overlay({}, "none")


@pytest.mark.parametrize(
    ("name", "group"),
    [
        ("easy_12_0101.jpg", "easy"),
        ("mid_390_1111.jpg", "mid"),
        ("hard_5_1000.png", "hard"),
        ("data/test/fake/HARD_5_1000.jpg", "hard"),
        ("C:\\data\\fake\\mid_1_0001.jpg", "mid"),
        ("real_00001.jpg", ""),
        ("easy.jpg", ""),
        ("data/easy_dir/real_1.jpg", ""),
        ("not_easy_1.jpg", ""),
    ],
)
def test_subgroup_from_filename(name, group):
    assert subgroup_from_filename(name) == group


def ciplab_like(seed=0):
    """Reals have no subgroup; fakes are easy (well detected), mid, hard (poorly detected)."""
    rng = np.random.default_rng(seed)
    names = [f"real_{i:05d}.jpg" for i in range(60)]
    p = list(rng.uniform(0.0, 0.5, 60))
    for group, lo, hi in [("easy", 0.5, 1.0), ("mid", 0.3, 0.8), ("hard", 0.0, 0.6)]:
        names += [f"{group}_{i}_0101.jpg" for i in range(20)]
        p += list(rng.uniform(lo, hi, 20))
    y = np.array([0] * 60 + [1] * 60)
    return y, np.array(p), [subgroup_from_filename(n) for n in names]


def test_subgroup_metrics_on_a_ciplab_like_split():
    y, p, groups = ciplab_like()
    df = subgroup_metrics(y, p, groups, threshold=0.5)
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == list(SUBGROUP_COLUMNS)
    assert df["group"].tolist() == ["easy", "mid", "hard"]  # reals ("" subgroup) get no row
    assert df["n"].tolist() == [20, 20, 20] and df["n_real"].tolist() == [0, 0, 0]
    g = np.array(groups)
    reals = y == 0
    for _, row in df.iterrows():
        fakes = g == row["group"]
        assert row["recall"] == pytest.approx(np.mean(p[fakes] >= 0.5))  # detection rate
        assert row["accuracy"] == pytest.approx(row["recall"])  # only fakes in the group
        assert np.isnan(row["fpr"])
        sel = fakes | reals  # the group's fakes against every real
        assert row["auc"] == pytest.approx(roc_auc_score(y[sel], p[sel]))
        assert row["auc_reference"] == "group fakes vs all reals"
    auc = df.set_index("group")["auc"]
    assert auc["easy"] > auc["mid"] > auc["hard"]


def test_subgroup_metrics_other_cases():
    y = np.array([0, 1, 0, 1, 1, 0])
    p = np.array([0.2, 0.8, 0.6, 0.4, 0.9, 0.1])
    groups = ["a", "a", "a", "a", None, np.nan]  # None/NaN/"" mean no subgroup
    df = subgroup_metrics(y, p, groups, 0.5)
    assert df["group"].tolist() == ["a"]
    row = df.iloc[0]
    assert row["auc_reference"] == "within"
    assert row["auc"] == pytest.approx(roc_auc_score(y[:4], p[:4]))
    assert (row["recall"], row["fpr"], row["accuracy"]) == (0.5, 0.5, 0.5)
    # Only fakes in the whole split: no AUC, but the detection rate still works.
    df = subgroup_metrics([1, 1, 1], [0.9, 0.2, 0.7], ["easy", "easy", "hard"], 0.5)
    assert df["recall"].tolist() == [0.5, 1.0] and df["auc"].isna().all()
    # No subgroup at all: an empty table with the same columns.
    empty = subgroup_metrics([0, 1], [0.1, 0.9], ["", ""], 0.5)
    assert empty.empty and list(empty.columns) == list(SUBGROUP_COLUMNS)
    with pytest.raises(ValueError, match="differ in length"):
        subgroup_metrics([0, 1], [0.1, 0.9], ["easy"], 0.5)


def test_dvc_roc_points():
    y, p = noisy_scores()
    rows = dvc_roc_points(y, p)
    fpr, tpr, _ = roc_curve(y, p)
    assert len(rows) == len(fpr)
    assert set(rows[0]) == {"fpr", "tpr", "threshold"}
    assert [r["fpr"] for r in rows] == pytest.approx(fpr) and [r["tpr"] for r in rows] == pytest.approx(tpr)
    assert rows[0]["threshold"] == 1.0 and all(np.isfinite(r["threshold"]) for r in rows)
    json.loads(json.dumps({"roc": rows}, allow_nan=False))


def test_dvc_confusion_rows():
    rows = dvc_confusion_rows(Y10, P10, 0.5)
    assert len(rows) == 10 and set(rows[0]) == {"actual", "predicted"}
    pairs = pd.DataFrame(rows).value_counts().to_dict()
    assert pairs == {("real", "real"): 5, ("fake", "fake"): 3, ("real", "fake"): 1, ("fake", "real"): 1}


# ---- summary table -------------------------------------------------------------------------


def evaluated_rows():
    """Rows as the summary stage makes them, from results shaped like metrics/evaluate/<model>.json."""
    results = []
    for i, (name, kind) in enumerate([("weak", "single"), ("strong", "single"), ("vote", "ensemble")]):
        y, p = noisy_scores(seed=20 + i, signal=[0.1, 0.5, 0.3][i])
        results.append(
            {
                "model": name,
                "kind": kind,
                "threshold_method": "youden",
                "val": {"auc": 0.5 + i / 10},
                "test": {"tuned": binary_metrics(y, p, 0.45), "0.5": binary_metrics(y, p, 0.5)},
            }
        )
    return summary_rows(results)


def test_summary_table_columns_and_order():
    df = summary_table(evaluated_rows())
    assert list(df.columns[: len(LEADING)]) == list(LEADING)
    assert list(df.columns) == list(LEADING) + [k for k in METRIC_KEYS if k not in LEADING] + [
        "val_auc",
        "threshold_method",
    ]
    assert df["model"].tolist() == ["strong", "strong", "vote", "vote", "weak", "weak"]
    assert df["at"].tolist() == ["tuned", "0.5"] * 3
    tuned = df[df["at"] == "tuned"]
    assert tuned["auc"].is_monotonic_decreasing
    assert set(df.loc[df["at"] == "0.5", "threshold"]) == {0.5}
    assert set(tuned["threshold"]) == {0.45}
    assert dict(zip(df["model"], df["kind"])) == {"strong": "single", "vote": "ensemble", "weak": "single"}


def test_summary_table_sorts_by_tuned_auc_whatever_the_input_order():
    rows = evaluated_rows()
    shuffled = [rows[i] for i in (5, 0, 3, 2, 4, 1)]
    for r in shuffled:  # a float 0.5 is accepted as the "0.5" label
        if r["at"] == "0.5":
            r["at"] = 0.5
    pd.testing.assert_frame_equal(summary_table(shuffled), summary_table(evaluated_rows()))


def test_summary_table_rejects_bad_rows():
    rows = evaluated_rows()
    with pytest.raises(ValueError, match="kind"):
        summary_table([{**rows[0], "kind": "stack"}])
    with pytest.raises(ValueError, match="duplicate"):
        summary_table(rows + rows[:1])
    with pytest.raises(ValueError, match="lack"):
        summary_table([{"model": "x", "kind": "single", "at": "tuned"}])
    assert list(summary_table([]).columns) == list(LEADING)


def test_write_summary(tmp_path):
    df = summary_table(evaluated_rows())
    csv, md = tmp_path / "reports" / "summary.csv", tmp_path / "reports" / "summary.md"
    write_summary(df, csv, md)
    back = pd.read_csv(csv)
    assert list(back.columns) == list(df.columns) and len(back) == 6
    lines = md.read_text().splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert table[0].startswith("| model") and "auc" in table[0]
    assert len(table) == 2 + 6  # header, separator, rows
    assert "| strong" in table[2]


def test_the_summary_fits_120_columns_marks_the_chosen_model_and_explains_ties(tmp_path):
    from deepfake_detection.evaluation.summary import markdown_table, tie_notes

    rows = evaluated_rows()
    for row in rows:  # a long name, as the zoo's own efficientnet_b0_dual_attention
        row["model"] = {"weak": "efficientnet_b0_dual_attention_xl", "vote": "ensemble_weighted"}.get(
            row["model"], row["model"]
        )
    df = summary_table(rows)
    results = [
        {"model": m, "val": {"auc": 0.9}, "test": {"tuned": {"auc": 0.8}}} for m in ("strong", "ensemble_weighted")
    ]
    notes = tie_notes(results, {"ensemble_weighted": {"strong": 1.0, "efficientnet_b0_dual_attention_xl": 0.0}})
    assert len(notes) == 1 and notes[0].startswith("ensemble_weighted equals strong: its weights put 1.00 on strong")
    assert tie_notes(results, {}) == ["strong and ensemble_weighted tie: validation AUC 0.9000, test AUC 0.8000."]
    md = tmp_path / "summary.md"
    write_summary(df, tmp_path / "summary.csv", md, chosen="strong", metric="val_auc", notes=notes)
    text = md.read_text()
    assert max(len(line) for line in text.splitlines()) <= 120, text
    marked = [line for line in text.splitlines() if line.startswith("| strong *")]
    assert len(marked) == 2 and "* strong: the best val_auc on validation" in text.replace("\n", " ")
    assert "- ensemble_weighted equals strong" in text
    header = text.splitlines()[text.splitlines().index(next(x for x in text.splitlines() if x.startswith("| model")))]
    assert [h.strip() for h in header.strip("|").split("|")][:5] == ["model", "at", "thr", "auc", "val_auc"]
    narrow = markdown_table(df, "strong", width=70)  # the least important columns go first
    assert (
        max(len(line) for line in narrow.splitlines()) <= 70
        and "val_auc" not in narrow
        and "| model" in narrow
        and "auc" in narrow
    )
