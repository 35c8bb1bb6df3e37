"""Ensembles: fit on validation predictions only, and reload from plain JSON."""

import inspect
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from deepfake_detection.evaluation.ensemble import (
    KINDS,
    Ensemble,
    fit_ensemble,
    fit_stacker,
    fit_weights,
    majority_vote,
    soft_vote,
    stack_predict,
    weighted_average,
)

MEMBERS = ["resnet50", "efficientnet_b0", "light_se_cnn"]


def member_predictions(n=300, seed=0, strengths=(0.6, 0.25, 0.0)):
    """Labels and an (n, 3) matrix: a strong member, a weak one and pure noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    cols = [np.clip(s * y + (1 - s) * rng.random(n), 0.001, 0.999) for s in strengths]
    return y, np.column_stack(cols)


def test_soft_vote_is_the_column_mean():
    P = np.array([[0.1, 0.3, 0.8], [1.0, 0.0, 0.5]])
    assert soft_vote(P) == pytest.approx([0.4, 0.5])
    assert soft_vote(P[:, 0]) == pytest.approx(P[:, 0])  # one member: itself


def test_weighted_average():
    P = np.array([[0.2, 0.6], [1.0, 0.0]])
    assert weighted_average(P, [3, 1]) == pytest.approx([0.3, 0.75])  # normalised to [0.75, 0.25]
    assert weighted_average(P, [0.5, 0.5]) == pytest.approx(soft_vote(P))
    for bad in ([-1, 2], [0, 0], [1, 2, 3]):
        with pytest.raises(ValueError):
            weighted_average(P, bad)


def test_fitted_weights_are_a_distribution_favouring_the_better_member():
    y, P = member_predictions()
    w = fit_weights(P, y)
    assert w.shape == (3,)
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0)
    assert w[0] == w.max() and w[0] > 0.5
    # and no worse on validation log loss than equal weights or the best single member
    loss = log_loss(y, weighted_average(P, w))
    assert loss <= log_loss(y, soft_vote(P)) + 1e-9
    assert loss <= log_loss(y, P[:, 0]) + 1e-9


def test_fitted_weights_minimise_log_loss_for_two_members():
    y, P = member_predictions(strengths=(0.5, 0.4, 0.0), seed=3)
    P = P[:, :2]
    w = fit_weights(P, y)
    grid = np.linspace(0, 1, 201)
    best = min(log_loss(y, np.clip(P @ [a, 1 - a], 1e-6, 1 - 1e-6)) for a in grid)
    assert log_loss(y, P @ w) <= best + 1e-6


def test_majority_vote_is_a_score_in_0_1():
    P = np.array([[0.9, 0.6, 0.2], [0.1, 0.2, 0.3], [0.8, 0.9, 0.7]])
    assert majority_vote(P, 0.5) == pytest.approx([2 / 3, 0, 1])
    assert majority_vote(P, [0.95, 0.5, 0.1]) == pytest.approx([2 / 3, 1 / 3, 2 / 3])
    assert majority_vote(P, [0.9, 0.6, 0.2]) == pytest.approx([1, 1 / 3, 2 / 3])  # p >= t votes fake
    with pytest.raises(ValueError, match="one threshold per member"):
        majority_vote(P, [0.5, 0.5])


def test_stacker():
    y, P = member_predictions()
    model = fit_stacker(P, y, seed=0)
    assert isinstance(model, LogisticRegression)
    p = stack_predict(model, P)
    assert p.shape == (len(y),) and ((p >= 0) & (p <= 1)).all()
    coef = model.coef_.ravel()
    assert coef[0] == coef.max()  # the strong member counts most
    np.testing.assert_allclose(fit_stacker(P, y, seed=0).coef_, model.coef_, rtol=1e-9, atol=1e-12)  # deterministic


def test_fit_functions_take_validation_only():
    """Nothing that fits an ensemble takes test predictions: its parameters can only depend on
    validation, so the test split stays unseen until Ensemble.predict."""
    for fn in (fit_weights, fit_stacker, fit_ensemble):
        params = list(inspect.signature(fn).parameters)
        assert not any("test" in name for name in params), (fn.__name__, params)
    assert list(inspect.signature(fit_weights).parameters) == ["P_val", "y_val"]
    assert list(inspect.signature(fit_stacker).parameters) == ["P_val", "y_val", "seed"]


def assert_same_params(a: dict, b: dict) -> None:
    """Fitted ensemble parameters: floats (and lists of them) within a tolerance, the rest equal."""
    assert a.keys() == b.keys()
    for key, value in a.items():
        floats = isinstance(value, float) or (
            isinstance(value, list) and value and all(isinstance(v, float) for v in value)
        )
        if floats:
            assert b[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
        else:
            assert b[key] == value, key


def evaluate(kind, P_val, y_val, P_test):
    """The evaluation pipeline: fit on validation, then score the test split."""
    ensemble = fit_ensemble(kind, MEMBERS, P_val, y_val, member_thresholds=[0.5, 0.5, 0.5])
    return ensemble.to_dict(), ensemble.predict(P_test)


@pytest.mark.parametrize("kind", ["weighted", "stacking"])
def test_parameters_change_with_validation_not_test_predictions(kind):
    y_val, P_val = member_predictions(seed=1)
    _, P_test = member_predictions(seed=2)
    params, scores = evaluate(kind, P_val, y_val, P_test)

    # Other test predictions: the same parameters (the scores follow the new inputs).
    _, P_test2 = member_predictions(seed=99, strengths=(0.0, 0.0, 0.9))
    params2, scores2 = evaluate(kind, P_val, y_val, P_test2)
    assert_same_params(params2, params)
    assert not np.allclose(scores2, scores)

    # Other validation predictions (the members swap quality): other parameters.
    y_val3, P_val3 = member_predictions(seed=1, strengths=(0.0, 0.25, 0.6))
    params3, _ = evaluate(kind, P_val3, y_val3, P_test)
    assert params3 != params
    values = params3["weights"] if kind == "weighted" else params3["coef"]
    assert int(np.argmax(values)) == 2  # now the third member is the strong one


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_through_json_predicts_the_same(kind):
    y_val, P_val = member_predictions(seed=4)
    _, P_test = member_predictions(seed=5)
    ensemble = fit_ensemble(kind, MEMBERS, P_val, y_val, member_thresholds=[0.4, 0.5, 0.6])
    ensemble.threshold = 0.42
    text = json.dumps(ensemble.to_dict(), allow_nan=False)
    reloaded = Ensemble.from_dict(json.loads(text))
    assert reloaded == ensemble
    np.testing.assert_allclose(reloaded.predict(P_test), ensemble.predict(P_test), rtol=0, atol=1e-12)
    p = ensemble.predict(P_test)
    assert p.shape == (len(P_test),) and ((p >= 0) & (p <= 1)).all()


def test_ensemble_predictions_match_the_functions():
    y_val, P_val = member_predictions(seed=6)
    _, P = member_predictions(seed=7)
    assert fit_ensemble("soft_vote", MEMBERS, P_val, y_val).predict(P) == pytest.approx(soft_vote(P))
    w = fit_weights(P_val, y_val)
    assert fit_ensemble("weighted", MEMBERS, P_val, y_val).predict(P) == pytest.approx(weighted_average(P, w))
    model = fit_stacker(P_val, y_val, seed=0)
    assert fit_ensemble("stacking", MEMBERS, P_val, y_val).predict(P) == pytest.approx(stack_predict(model, P))
    maj = fit_ensemble("majority", MEMBERS, P_val, y_val, member_thresholds=0.5)
    assert maj.member_thresholds == [0.5, 0.5, 0.5]
    assert maj.predict(P) == pytest.approx(majority_vote(P, 0.5))


def test_predict_accepts_a_frame_by_member_name():
    y_val, P_val = member_predictions(seed=8)
    ensemble = fit_ensemble("weighted", MEMBERS, P_val, y_val)
    frame = pd.DataFrame(P_val, columns=MEMBERS)[MEMBERS[::-1]]  # columns in another order
    assert ensemble.predict(frame) == pytest.approx(ensemble.predict(P_val))
    with pytest.raises(ValueError, match="missing"):
        ensemble.predict(frame.drop(columns=MEMBERS[0]))


def test_invalid_ensembles_are_rejected():
    with pytest.raises(ValueError, match="unknown ensemble kind"):
        Ensemble("median", MEMBERS)
    with pytest.raises(ValueError, match="needs weights"):
        Ensemble("weighted", MEMBERS)
    with pytest.raises(ValueError, match="2 values for 3 members"):
        Ensemble("weighted", MEMBERS, weights=[0.5, 0.5])
    with pytest.raises(ValueError, match="unknown ensemble fields"):
        Ensemble.from_dict({"kind": "soft_vote", "members": MEMBERS, "pickle": "x"})
    with pytest.raises(ValueError, match="expected 3 member columns"):
        Ensemble("soft_vote", MEMBERS).predict(np.zeros((4, 2)))
    y, P = member_predictions(n=50)
    with pytest.raises(ValueError, match="member_thresholds"):
        fit_ensemble("majority", MEMBERS, P, y)
    with pytest.raises(ValueError, match="both classes"):
        fit_weights(P, np.ones(50, dtype=int))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        soft_vote(P + 1)


def test_cross_fitted_scores_are_out_of_fold_and_never_see_test():
    from deepfake_detection.evaluation.ensemble import cross_fitted_scores, fit_ensemble

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 80)
    P = np.clip(np.column_stack([0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, 80), rng.uniform(0, 1, 80)]), 0, 1)
    members = ["good", "noise"]
    oof = cross_fitted_scores("stacking", members, P, y, seed=1)
    in_sample = fit_ensemble("stacking", members, P, y, seed=1).predict(P)
    assert oof.shape == (80,) and not np.allclose(oof, in_sample)
    np.testing.assert_allclose(
        oof, cross_fitted_scores("stacking", members, P, y, seed=1), rtol=0, atol=1e-12
    )  # seeded
    # kinds that fit nothing score directly
    assert np.allclose(cross_fitted_scores("soft_vote", members, P, y), P.mean(axis=1))
    with pytest.raises(ValueError, match="2 validation images of each class"):
        cross_fitted_scores("weighted", members, P[:3], np.array([0, 0, 1]))
