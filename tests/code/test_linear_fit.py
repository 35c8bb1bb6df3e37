"""The forensic family's closed-form head (``linear_fit.fit_head``): C chosen by cross-validated
AUC on the copies the head will score, recomputed by hand with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from deepfake_detection.linear_fit import fit_head

GRID = [0.001, 1.0]


def images(n=60, d=12, copies=3, seed=0):
    """``(n, copies, d)``: a clean copy with a clear signal in feature 0, degraded copies where the
    signal is weak and buried in noise (so the two kinds of copies rank C differently)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, copies, d))
    X[:, 0, 0] += 2.0 * y
    X[:, 1:, 0] += 0.4 * y[:, None]
    X[:, 1:, 1:] *= 3.0
    return X, y


def cv_auc_by_hand(X, y, c, scored, folds=3, seed=0):
    n, copies, d = X.shape
    rows = range(copies)[scored]
    scores = np.zeros((n, len(rows)))
    for train, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(n), y):
        fitted = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        fitted.fit(X[train].reshape(-1, d), np.repeat(y[train], copies))
        scores[held] = np.stack([fitted.decision_function(X[held, r]) for r in rows], axis=1)
    return roc_auc_score(np.repeat(y, len(rows)), scores.reshape(-1))


@pytest.mark.parametrize("scored", [slice(0, 1), slice(1, None)], ids=["clean", "degraded"])
def test_c_is_chosen_by_the_cross_validated_auc_of_the_copies_the_head_scores(scored):
    X, y = images()
    head, cv_auc, best = fit_head(X, y, GRID, folds=3, balanced=False, seed=0, scored=scored)
    for c in GRID:
        assert cv_auc[c] == pytest.approx(cv_auc_by_hand(X, y, c, scored), abs=1e-9)
    assert best == max(cv_auc, key=cv_auc.get)
    assert head[-1].C == best  # the final head is refitted with the C kept, on every copy
    assert head[0].n_samples_seen_ == X.shape[0] * X.shape[1]


def test_the_degraded_copies_give_other_cross_validated_aucs_than_the_clean_ones():
    X, y = images()
    _, clean, _ = fit_head(X, y, GRID, folds=3, balanced=False, seed=0)
    _, degraded, _ = fit_head(X, y, GRID, folds=3, balanced=False, seed=0, scored=slice(1, None))
    assert all(clean[c] > degraded[c] + 0.05 for c in GRID)  # the clean copy's signal is the clear one


def test_one_c_is_kept_without_cross_validation():
    X, y = images()
    head, cv_auc, best = fit_head(X, y, [0.5], folds=3, balanced=True, seed=0)
    assert cv_auc == {} and best == 0.5 and head[-1].class_weight == "balanced"


def test_refit_with_fewer_than_two_images_of_a_class_says_what_to_set():
    from deepfake_detection.config import parse_params
    from deepfake_detection.linear_fit import cross_fit

    params = parse_params({"train": {"refit": True}})
    X, y = images(n=6)
    y[:] = 0
    y[0] = 1  # one fake image in train, none in valid: no fold could hold out a fake and fit on another
    with pytest.raises(ValueError, match="at least 2 images of each class.*train.refit: false"):
        cross_fit(None, None, X[:4], y[:4], X[4:], y[4:], params.models.residual_cooc, params)
