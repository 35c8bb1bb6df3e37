"""Training of the networks with fixed features and a linear head (``fit="linear"`` in their spec:
the forensic family, :mod:`deepfake_detection.models.forensic`), for the `train` stage.

No gradient steps: the network's fixed part computes each training image's feature vector at
its native resolution (never resized), plus one vector per degraded copy of it
(``models.<name>.degrade``, the operations of ``data/perturb.py``, seeded per image); a
standardised logistic regression (scikit-learn's ``StandardScaler`` + ``LogisticRegression``,
inverse-frequency class weights when ``train.class_weighting``) is fitted on them, its ``C``
chosen from ``models.<name>.c_grid`` by the cross-validated AUC (folds grouped by image, so an
image and its copies never sit on both sides); the fitted mean, variance, coefficients and
intercept are written into the model's head (:func:`~deepfake_detection.models.forensic.set_linear_head`).
The model is then saved and logged like any trained network, so every later stage reads a plain
``.keras`` file.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from . import paths, tracking
from .config import Params
from .data.decode import decode_native
from .data.manifest import load_manifest
from .data.perturb import image_seed, perturb
from .data.shards import iter_contents
from .models.saved import restore_weights

logger = logging.getLogger(__name__)


def feature_extractor(model):
    """A batch of same-size images ``(n, h, w, 3)`` (float32 pixels in [0, 255]) -> the model's
    feature vectors ``(n, d)`` (its ``features`` layer), compiled once for every image size."""
    import keras
    import tensorflow as tf

    from .models.forensic import FEATURES_LAYER

    features = keras.Model(model.input, model.get_layer(FEATURES_LAYER).output)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)], reduce_retracing=True)
    def extract(x):
        return features(x, training=False)

    return lambda images: extract(tf.convert_to_tensor(np.asarray(images, np.float32))).numpy()


def extract_batched(extract, images: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
    """``extract`` over images of any sizes: those of one size go through together, ``batch_size``
    at a time (the network reads every image whole, so only equal sizes share a batch)."""
    out: list[np.ndarray | None] = [None] * len(images)
    by_shape: dict[tuple, list[int]] = {}
    for i, image in enumerate(images):
        by_shape.setdefault(image.shape, []).append(i)
    for idx in by_shape.values():
        for start in range(0, len(idx), batch_size):
            chunk = idx[start : start + batch_size]
            for i, row in zip(chunk, extract(np.stack([images[i] for i in chunk]))):
                out[i] = row
    return np.asarray(out, dtype=np.float64)


def image_features(
    extract,
    contents: Iterable[bytes],
    keys: Sequence[str],
    degrade: Sequence,
    seed: int,
    desc: str = "",
    chunk: int = 64,
) -> np.ndarray:
    """``(n, 1 + len(degrade), d)``: each encoded image's features, clean then under each
    degradation (a ``Degradation``: ``perturb.perturb`` of its operations for the image, seeded by
    ``perturb.image_seed(seed, key)``), decoded at
    native resolution by the training pipeline's ``decode_image``; ``chunk`` images at a time."""

    copies = 1 + len(degrade)
    stream = iter(contents)
    rows = []
    with tqdm(total=len(keys), desc=desc, unit="img", mininterval=5) as bar:
        for start in range(0, len(keys), chunk):
            names = keys[start : start + chunk]
            versions = []
            for key, data in zip(names, itertools.islice(stream, len(names))):
                s = image_seed(seed, key)
                versions += [data] + [perturb(data, d.operations(s), seed=s) for d in degrade]
            images, errors = decode_native(versions)
            bad = next((i for i, e in enumerate(errors) if e), None)
            if bad is not None:
                raise ValueError(f"{names[bad // copies]}: {errors[bad]}")
            rows.append(extract_batched(extract, images).reshape(len(names), copies, -1))
            bar.update(len(names))
    return np.concatenate(rows) if rows else np.zeros((0, copies, 0))


def split_features(model, manifest: pd.DataFrame, split: str, degrade: Sequence, seed: int):
    """Features ``(n, copies, d)`` and labels ``(n,)`` of one split of the manifest."""
    from .data.pipeline import labels_of

    rows = manifest[manifest.split == split]
    keys = rows.path.astype(str).tolist()
    features = image_features(feature_extractor(model), iter_contents(keys), keys, degrade, seed, desc=split)
    return features, labels_of(manifest, split)


def fit_head(
    X: np.ndarray,
    y: np.ndarray,
    c_grid: Sequence[float],
    folds: int,
    balanced: bool,
    seed: int,
    scored: slice = slice(0, 1),
):
    """Standardised logistic regression on ``X`` ``(n, copies, d)`` (every copy labelled as its image),
    ``C`` chosen by grouped cross-validated AUC on the held-out images' copies ``scored`` (the
    clean image by default; a gated head's degraded expert is judged on the degraded copies it
    will score). Returns the fitted pipeline, ``{C: cv AUC}`` and the ``C`` kept."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n, copies, d = X.shape
    weight = "balanced" if balanced else None

    def model(c):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight=weight, max_iter=2000))

    folds = min(folds, int(np.bincount(y).min()))
    cv_auc = {}
    if folds >= 2 and len(c_grid) > 1:
        splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(n), y))
        for c in c_grid:
            scores = np.zeros((n, len(range(copies)[scored])))
            for train, held in splits:
                fitted = model(c).fit(X[train].reshape(-1, d), np.repeat(y[train], copies))
                scores[held] = fitted.decision_function(X[held, scored].reshape(-1, d)).reshape(len(held), -1)
            cv_auc[float(c)] = float(roc_auc_score(np.repeat(y, scores.shape[1]), scores.reshape(-1)))
        best = max(cv_auc, key=cv_auc.get)
    else:
        best = float(c_grid[0])
    return model(best).fit(X.reshape(-1, d), np.repeat(y, copies)), cv_auc, best


def fit_heads(model, X: np.ndarray, y: np.ndarray, section, params: Params, kept: dict | None = None) -> dict:
    """Fit the model's head(s) on training features ``X`` ``(n, copies, d)`` and write them in.
    ``single``: one regression on every copy. ``gated``: a clean expert (clean images), a degraded
    expert (every copy; its C judged on the degraded copies it scores), a gate (clean images 0,
    their degraded copies 1; C = 1, balanced) and the experts' logit scales on their own rows.
    Returns each fitted head's cross-validated AUC per C and the C kept, by metric name prefix
    (``""``: the single head or the clean expert; ``"degraded_"``: the degraded expert). ``kept``:
    the C of each head by that prefix, fixed (no cross-validation: :func:`fit_refit`'s folds)."""
    from .models.forensic import set_gate_standardization, set_linear_head

    def grid(prefix):
        return [kept[prefix]] if kept else section.c_grid

    def fit(name, features, labels, c_grid, balanced, scored=slice(0, 1)):
        head, cv_auc, c = fit_head(features, labels, c_grid, section.cv_folds, balanced, params.seed, scored)
        scaler, logistic = head[0], head[-1]
        set_linear_head(model, scaler.mean_, scaler.var_, logistic.coef_[0], float(logistic.intercept_[0]), name)
        return head, cv_auc, c

    balanced = params.train.class_weighting
    if section.head == "single":
        _, cv_auc, c = fit("head", X, y, grid(""), balanced)
        return {"": (cv_auc, c)}
    n, copies, d = X.shape
    clean, cv_auc, c = fit("clean", X[:, :1], y, grid(""), balanced)
    degraded, degraded_cv_auc, degraded_c = fit("degraded", X, y, grid("degraded_"), balanced, scored=slice(1, None))
    gate_labels = np.tile([0] + [1] * (copies - 1), n)
    fit("gate", X.reshape(n * copies, 1, d), gate_labels, [1.0], True)
    clean_logits = clean.decision_function(X[:, 0])
    degraded_logits = degraded.decision_function(X.reshape(-1, d))
    set_gate_standardization(
        model, (clean_logits.mean(), clean_logits.std() or 1.0), (degraded_logits.mean(), degraded_logits.std() or 1.0)
    )
    return {"": (cv_auc, c), "degraded_": (degraded_cv_auc, degraded_c)}


def fit_linear(model, stage: str, model_name: str, params: Params, settings: dict) -> dict:
    """Fit a linear-head network's head on the training split, measure it on validation, save
    and log the stage's run (the same outputs as :func:`deepfake_detection.training.fit`). With
    ``train.refit``: the head fitted on train+valid and k-fold heads (:func:`fit_refit`, saved for
    the threshold stage's out-of-fold scores)."""
    section = params.models.settings(model_name)
    degrade, refit = list(section.degrade), params.train.refit
    out, folds_file = paths.model_file(model_name, stage), paths.folds(model_name)
    history_csv = paths.history_csv(stage, model_name)
    for p in (out, history_csv):
        p.parent.mkdir(parents=True, exist_ok=True)
    settings = {
        **settings,
        "fit": "linear (standardised logistic regression)",
        "class_weighting": params.train.class_weighting,
        "degraded_copies": len(degrade),
        "refit": refit,
        "total_params": int(model.count_params()),
    }
    manifest = load_manifest(paths.MANIFEST)
    with (
        tracking.stage_run(stage, params, model=model_name, log=settings),
        paths.replaced_on_success(out, history_csv, paths.stage_metrics(stage, model_name), folds_file),
    ):
        start = time.perf_counter()
        X, y = split_features(model, manifest, "train", degrade, params.seed)
        V, val_y = split_features(model, manifest, "valid", degrade if refit else [], params.seed)
        heads, folds, X, y = fit_refit(model, manifest, X, y, V, val_y, section, params)
        seconds = time.perf_counter() - start
        metrics, history = _measure(model, X, y, V, val_y)
        out_of_fold = folds.metrics()  # a refitted head saw the validation images: out-of-fold figures
        metrics.update(train_seconds=round(seconds, 2), **out_of_fold, **_chosen_c(heads))
        history = history.assign(**{k: v for k, v in out_of_fold.items() if k in history.columns})
        history.to_csv(history_csv, index=False)
        folds.save(folds_file)
        tracking.log_metrics(metrics)
        metrics["run_id"] = tracking.active_run_id()  # lineage: the model card names this run
        tracking.write_json(metrics, paths.stage_metrics(stage, model_name))
        tracking.log_metrics(
            {f"{prefix}cv_auc_C_{k:g}": v for prefix, (cv_auc, _) in heads.items() for k, v in cv_auc.items()}
        )
        for path in (history_csv, folds_file):
            tracking.log_artifact(path)
        model.save(out)
        tracking.log_artifact(out, "keras")
        tracking.log_keras_model(model, name=model_name, example=_example(manifest))  # named after its network
    logger.info("%s %s: %s", stage, model_name, metrics)
    return metrics


def fit_refit(model, manifest: pd.DataFrame, X, y, V, val_y, section, params: Params):
    """The heads, the folds and the features ``(X, y)`` they were fitted on. Without ``train.refit``:
    the heads fitted on the training images, no folds. With it: the heads fitted on train+valid
    (each C chosen there by cross-validation when ``c_grid`` lists several), then the k-fold heads of
    :func:`cross_fit` with those Cs (out-of-fold scores for the threshold stage: C is chosen once on
    all of train+valid, not again inside each fold, a small optimism of the out-of-fold figures
    that saves k cross-validations); the model keeps the train+valid heads."""
    if not params.train.refit:
        return fit_heads(model, X, y, section, params), Folds.none(), X, y
    pooled, labels = np.concatenate([X, V]), np.concatenate([y, val_y])
    heads = fit_heads(model, pooled, labels, section, params)
    final = [np.array(w, copy=True) for w in model.get_weights()]
    kept = {prefix: c for prefix, (_, c) in heads.items()}
    folds = cross_fit(model, manifest, X, y, V, val_y, section, params, kept)
    restore_weights(model, final)
    return heads, folds, pooled, labels


def _chosen_c(heads: dict) -> dict:
    """``C`` (and ``cv_auc`` where C was chosen by cross-validation: c_grid lists several) of each
    head :func:`fit_heads` fitted, by its metric name prefix."""
    metrics = {}
    for prefix, (cv_auc, c) in heads.items():
        metrics[f"{prefix}C"] = c
        if cv_auc:
            metrics[f"{prefix}cv_auc"] = cv_auc[c]
    return metrics


@dataclass
class Folds:
    """The k-fold heads of a refitted network (``train.refit``): which fold holds out each train
    and validation image (``paths``, ``fold``), each fold's model weights (its heads fitted on
    the other folds) and the out-of-fold P(fake) the train stage measured on the features. The
    threshold stage scores each held-out image with its fold's weights."""

    paths: np.ndarray
    fold: np.ndarray
    weights: list[list[np.ndarray]]
    y: np.ndarray
    split: np.ndarray
    probability: np.ndarray

    @classmethod
    def none(cls) -> Folds:
        """No folds: the network was fitted on the training split alone."""
        empty = np.array([], dtype=str)
        return cls(empty, np.array([], dtype=int), [], np.array([], dtype=int), empty, np.array([]))

    def metrics(self) -> dict:
        """Out-of-fold figures: they replace the in-sample validation ones of a refitted head."""
        if not self.weights:
            return {}
        from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

        valid = self.split == "valid"
        y, p = self.y[valid], self.probability[valid]
        return {
            "val_loss": float(log_loss(y, p, labels=[0, 1])),
            "val_auc": float(roc_auc_score(y, p)),
            "val_accuracy": float(accuracy_score(y, p >= 0.5)),
            "oof_auc": float(roc_auc_score(self.y, self.probability)),
            "oof_images": len(self.y),
            "oof_folds": len(self.weights),
        }

    def save(self, path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"w{k}_{i}": w for k, ws in enumerate(self.weights) for i, w in enumerate(ws)}
        np.savez(
            path,
            paths=self.paths.astype(str),
            fold=self.fold,
            y=self.y,
            split=self.split.astype(str),
            probability=self.probability,
            shape=np.array([len(self.weights), len(self.weights[0]) if self.weights else 0]),
            **arrays,
        )

    @classmethod
    def load(cls, path) -> Folds:
        with np.load(path, allow_pickle=False) as f:
            n, per = (int(v) for v in f["shape"])
            weights = [[f[f"w{k}_{i}"] for i in range(per)] for k in range(n)]
            return cls(f["paths"], f["fold"], weights, f["y"], f["split"], f["probability"])


def cross_fit(model, manifest: pd.DataFrame, X, y, V, val_y, section, params: Params, kept=None) -> Folds:
    """k-fold (``models.<name>.cv_folds``, stratified) heads on train+valid: each image, with its
    degraded copies, is held out by exactly one fold. ``X``/``V``: features ``(n, copies, d)`` of
    train/valid; ``kept``: each head's C (:func:`fit_heads`). Returns the folds (weights and
    out-of-fold scores); leaves the last fold's heads in the model."""
    from sklearn.model_selection import StratifiedKFold

    pooled, labels = np.concatenate([X, V]), np.concatenate([y, val_y])
    folds = min(section.cv_folds, int(np.bincount(labels, minlength=2).min()))
    if folds < 2:
        raise ValueError("train.refit needs at least 2 images of each class in train+valid; set train.refit: false")
    rows = pd.concat([manifest[manifest.split == s] for s in ("train", "valid")], ignore_index=True)
    fold, probability, weights = np.zeros(len(labels), int), np.zeros(len(labels)), []
    splitter = StratifiedKFold(folds, shuffle=True, random_state=params.seed)
    for k, (fit_rows, held) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        logger.info("fold %d/%d: heads fitted on %d images", k + 1, folds, len(fit_rows))
        fit_heads(model, pooled[fit_rows], labels[fit_rows], section, params, kept)
        fold[held], probability[held] = k, model_probabilities(model, pooled[held, 0])
        weights.append([np.array(w, copy=True) for w in model.get_weights()])  # copies: the next fold overwrites them
    return Folds(
        rows.path.astype(str).to_numpy(), fold, weights, labels, rows.split.astype(str).to_numpy(), probability
    )


def _measure(model, X: np.ndarray, y, V: np.ndarray, val_y) -> tuple[dict, pd.DataFrame]:
    """The fitted model's validation metrics (as ``training.fit`` reports them: one "epoch") and
    its one-row history (train and validation loss, AUC, accuracy) on the clean images."""
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    def scores(features, labels, prefix):
        p = model_probabilities(model, features[:, 0])
        return {
            f"{prefix}loss": float(log_loss(labels, p, labels=[0, 1])),
            f"{prefix}auc": float(roc_auc_score(labels, p)),
            f"{prefix}accuracy": float(accuracy_score(labels, p >= 0.5)),
        }

    val = scores(V, val_y, "val_")
    history = pd.DataFrame([{"epoch": 0, **scores(X, y, ""), **val}])
    metrics = {
        **val,
        "train_images": int(len(y)),
        "train_vectors": int(X.shape[0] * X.shape[1]),
        "features": int(X.shape[2]),
        "epochs_run": 1,
        "best_epoch": 1,
    }
    return metrics, history


def model_probabilities(model, features: np.ndarray) -> np.ndarray:
    """The fitted head's P(fake) for feature vectors ``(n, d)`` (what the whole model outputs)."""
    import keras

    from .models.forensic import FEATURES_LAYER

    head = keras.Model(model.get_layer(FEATURES_LAYER).output, model.output)
    return np.asarray(head(features.astype(np.float32))).reshape(-1)


def _example(manifest: pd.DataFrame) -> np.ndarray:
    """One validation image at native size, as the model's input example."""

    first = manifest[manifest.split == "valid"].path.astype(str).head(1)
    (image,), _ = decode_native(list(itertools.islice(iter_contents(first), 1)))
    return image[np.newaxis]
