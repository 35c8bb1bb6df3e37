"""Ensembles of the single models' P(fake), fit on VALIDATION predictions only.

``P`` is an ``(n, k)`` matrix: one row per image, one column per member model, in the order of
the ensemble's ``members``. Every ``fit_*`` function takes validation predictions and labels and
nothing else, so no ensemble parameter can depend on the test split; the test split is only ever
passed to :meth:`Ensemble.predict`.

Kinds:

- ``soft_vote``: the mean of the members' probabilities.
- ``weighted``: a weighted mean, weights >= 0 summing to 1, fit by minimising validation log
  loss on the simplex (:func:`fit_weights`).
- ``majority``: the fraction of members voting fake at their own (validation-tuned) thresholds:
  a score in [0, 1] (``{0, 1/k, ..., 1}``) that can still be thresholded and ROC'd.
- ``stacking``: a logistic regression on the members' logits (:func:`fit_stacker`).

An :class:`Ensemble` holds only numbers and names, so ``to_dict()`` is plain JSON and
``Ensemble.from_dict`` rebuilds it for inference without pickle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression

from deepfake_detection.evaluation.thresholds import validate_scores

KINDS = ("soft_vote", "weighted", "majority", "stacking")
EPS = 1e-6  # probabilities are clipped to [EPS, 1 - EPS] before logs/logits


def _matrix(P, k: int | None = None) -> np.ndarray:
    P = np.asarray(P, dtype=float)
    if P.ndim == 1:
        P = P[:, None]
    if P.ndim != 2 or P.shape[0] == 0 or P.shape[1] == 0:
        raise ValueError(f"member probabilities must be an (n, k) matrix with n, k >= 1; got shape {P.shape}")
    if k is not None and P.shape[1] != k:
        raise ValueError(f"expected {k} member columns, got {P.shape[1]}")
    if np.isnan(P).any():
        raise ValueError("member probabilities contain NaN")
    if (P < 0).any() or (P > 1).any():
        raise ValueError(f"member probabilities must lie in [0, 1]; found min {P.min():g}, max {P.max():g}")
    return P


def _val(P_val, y_val) -> tuple[np.ndarray, np.ndarray]:
    P = _matrix(P_val)
    if len(np.asarray(y_val)) != P.shape[0]:
        raise ValueError(
            f"validation labels and predictions differ in length: {len(np.asarray(y_val))} vs {P.shape[0]}"
        )
    y, _ = validate_scores(y_val, P[:, 0])  # both classes, 0/1 labels
    return P, y


def soft_vote(P) -> np.ndarray:
    """Mean of the member columns."""
    return _matrix(P).mean(axis=1)


def weighted_average(P, w) -> np.ndarray:
    """``P @ w`` with ``w`` non-negative (normalised to sum to 1)."""
    P = _matrix(P)
    w = np.asarray(w, dtype=float).ravel()
    if w.shape != (P.shape[1],):
        raise ValueError(f"need one weight per member ({P.shape[1]}); got {w.shape[0]}")
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"weights must be finite, non-negative and not all zero; got {w.tolist()}")
    return np.clip(P @ (w / w.sum()), 0.0, 1.0)


def fit_weights(P_val, y_val) -> np.ndarray:
    """Weights >= 0 summing to 1 that minimise the validation log loss of ``P_val @ w``.

    Solved directly on the probability simplex with ``scipy.optimize.minimize(method="SLSQP")``
    (bounds ``0 <= w_j <= 1``, constraint ``sum(w) = 1``, analytic gradient), starting from equal
    weights. The log loss of a mixture is convex in ``w``, so this finds the global optimum, and
    a member that adds nothing gets a weight of exactly 0 (a softmax parametrisation can only
    approach the simplex's edges). Log loss, not AUC, because it is smooth and rewards calibrated
    mixtures; AUC is piecewise constant in ``w``. Deterministic: no random start.
    """
    P, y = _val(P_val, y_val)
    k = P.shape[1]
    if k == 1:
        return np.ones(1)

    def loss_and_grad(w):
        q = np.clip(P @ w, EPS, 1 - EPS)
        loss = -np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))
        dq = -(y / q - (1 - y) / (1 - q)) / len(y)  # dloss/dq per sample
        return loss, P.T @ dq

    res = minimize(
        loss_and_grad,
        np.full(k, 1.0 / k),
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * k,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}],
        options={"maxiter": 500, "ftol": 1e-12},
    )
    w = np.where(res.x > 1e-12, res.x, 0.0)  # round-off below zero or just above it: exactly 0
    if not np.isfinite(w).all() or w.sum() <= 0:  # cannot happen on valid input; be safe
        return np.full(k, 1.0 / k)
    return w / w.sum()


def majority_vote(P, thresholds) -> np.ndarray:
    """Fraction of members with ``p >= their threshold`` (scalar or one per member)."""
    P = _matrix(P)
    t = np.asarray(thresholds, dtype=float)
    if t.ndim == 0:
        t = np.full(P.shape[1], float(t))
    if t.shape != (P.shape[1],):
        raise ValueError(f"need one threshold per member ({P.shape[1]}) or a single one; got {t.shape[0]}")
    return (P >= t).mean(axis=1)


def _per_member(values, k: int) -> list[float]:
    v = np.asarray(values, dtype=float)
    return [float(v)] * k if v.ndim == 0 else v.ravel().tolist()


def stack_features(P) -> np.ndarray:
    """The stacker's inputs: each member's logit, ``log(p / (1 - p))`` of p clipped to [EPS, 1-EPS]."""
    return logit(np.clip(_matrix(P), EPS, 1 - EPS))


def fit_stacker(P_val, y_val, seed: int = 0) -> LogisticRegression:
    """Logistic regression (L2, C=1, lbfgs) on the members' validation logits."""
    P, y = _val(P_val, y_val)
    model = LogisticRegression(C=1.0, max_iter=1000, random_state=seed)
    return model.fit(stack_features(P), y)


def stack_predict(model: LogisticRegression, P) -> np.ndarray:
    """P(fake) of a fitted stacker for member predictions ``P``."""
    return model.predict_proba(stack_features(P))[:, 1]


@dataclass
class Ensemble:
    """A fitted ensemble: everything :meth:`predict` needs, all JSON-serialisable.

    ``members`` name the columns of ``P`` in order; ``weights`` (weighted), ``member_thresholds``
    (majority), ``coef``/``intercept`` (stacking) are set for their kind only. ``threshold`` is the
    ensemble's own decision threshold, tuned on validation by the caller (optional).
    """

    kind: str
    members: list[str]
    weights: list[float] | None = None
    member_thresholds: list[float] | None = None
    coef: list[float] | None = None
    intercept: float | None = None
    threshold: float | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown ensemble kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        self.members = [str(m) for m in self.members]
        if not self.members:
            raise ValueError("an ensemble needs at least one member")
        k = len(self.members)
        need = {"weighted": ("weights",), "majority": ("member_thresholds",), "stacking": ("coef", "intercept")}
        for name in need.get(self.kind, ()):
            if getattr(self, name) is None:
                raise ValueError(f"a {self.kind!r} ensemble needs {name}")
        for name in ("weights", "member_thresholds", "coef"):
            v = getattr(self, name)
            if v is not None:
                v = [float(x) for x in np.asarray(v, dtype=float).ravel()]
                if len(v) != k:
                    raise ValueError(f"{name} has {len(v)} values for {k} members")
                setattr(self, name, v)
        if self.intercept is not None:
            self.intercept = float(np.asarray(self.intercept).ravel()[0])
        if self.threshold is not None:
            self.threshold = float(self.threshold)

    def predict(self, P) -> np.ndarray:
        """P(fake) (a score in [0, 1]) for member predictions ``P``: an ``(n, k)`` array in
        ``members`` order, or a DataFrame with one column per member name."""
        if hasattr(P, "columns"):
            missing = [m for m in self.members if m not in P.columns]
            if missing:
                raise ValueError(f"member columns missing: {missing}")
            P = P[self.members].to_numpy()
        P = _matrix(P, len(self.members))
        if self.kind == "soft_vote":
            return soft_vote(P)
        if self.kind == "weighted":
            return weighted_average(P, self.weights)
        if self.kind == "majority":
            return majority_vote(P, self.member_thresholds)
        return expit(stack_features(P) @ np.asarray(self.coef) + self.intercept)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Ensemble:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown ensemble fields: {sorted(unknown)}")
        return cls(**d)


def fit_ensemble(kind: str, members: list[str], P_val, y_val, member_thresholds=None, seed: int = 0) -> Ensemble:
    """Fit an :class:`Ensemble` of ``kind`` on validation predictions (columns in ``members``
    order). ``majority`` needs ``member_thresholds`` (each member's validation-tuned threshold)."""
    P, y = _val(P_val, y_val)
    if P.shape[1] != len(members):
        raise ValueError(f"{len(members)} members but {P.shape[1]} prediction columns")
    if kind == "soft_vote":
        return Ensemble(kind, list(members))
    if kind == "weighted":
        return Ensemble(kind, list(members), weights=fit_weights(P, y).tolist())
    if kind == "majority":
        if member_thresholds is None:
            raise ValueError("a 'majority' ensemble needs member_thresholds")
        return Ensemble(kind, list(members), member_thresholds=_per_member(member_thresholds, len(members)))
    if kind == "stacking":
        model = fit_stacker(P, y, seed)
        return Ensemble(kind, list(members), coef=model.coef_.ravel().tolist(), intercept=float(model.intercept_[0]))
    raise ValueError(f"unknown ensemble kind {kind!r}; choose one of {', '.join(KINDS)}")


FITTED_KINDS = ("weighted", "stacking")  # the kinds that learn parameters from validation


def cross_fitted_scores(
    kind: str, members: list[str], P_val, y_val, member_thresholds=None, seed: int = 0, folds: int = 5
) -> np.ndarray:
    """Out-of-fold validation scores of an ensemble ``kind``: each fold is scored by an ensemble
    fit on the other folds (stratified, seeded). Weighted and stacking ensembles learn from
    validation, so their in-sample validation scores flatter them; these are the scores to
    threshold them on and to compare them with single models by. Kinds without fitted
    parameters return their ordinary scores. Test predictions are never an input."""
    from sklearn.model_selection import StratifiedKFold

    P, y = _val(P_val, y_val)
    if kind not in FITTED_KINDS:
        return fit_ensemble(kind, members, P, y, member_thresholds, seed).predict(P)
    n_splits = int(min(folds, np.bincount(y, minlength=2).min()))
    if n_splits < 2:
        raise ValueError(f"cross-fitting a {kind!r} ensemble needs at least 2 validation images of each class")
    out = np.empty(len(y), dtype=float)
    for fit_idx, score_idx in StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(P, y):
        if len(np.unique(y[fit_idx])) < 2:
            raise ValueError("a cross-fitting fold lacks one class: add validation images")
        part = fit_ensemble(kind, members, P[fit_idx], y[fit_idx], member_thresholds, seed)
        out[score_idx] = part.predict(P[score_idx])
    return out
