"""What the threshold, evaluate and ensemble stages share: predictions on a split, threshold
choice on validation, and the full test report (metrics files, DVC plots, figures, MLflow).

A single model and an ensemble go through exactly the same two functions,
:func:`choose_threshold` (validation only) and :func:`evaluate_scores` (test). This module loads
Keras models and logs to MLflow; ``evaluation/`` holds the numbers and figures it uses, free of both.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import LABELS, paths, tracking
from ..config import Params
from ..data.decode import check_images
from ..data.images import MAX_IMAGE_BYTES
from ..data.manifest import load_manifest
from ..data.perturb import image_seed, perturb
from ..data.shards import iter_contents
from ..evaluation.metrics import (
    auc_interval,
    binary_metrics,
    confusion,
    dvc_confusion_rows,
    dvc_roc_points,
    plot_confusion,
    plot_pr,
    plot_roc,
    subgroup_metrics,
)
from ..evaluation.report import headline, save_predictions
from ..evaluation.robustness import CLEAN, perturbation_columns
from ..evaluation.thresholds import plot_roc_with_threshold, select_threshold
from ..models import final_stage
from ..models.saved import load_model, restore_weights


def load_final_model(model_name: str):
    """The model's final ``.keras`` file (fine-tuned for transfer models), loaded uncompiled."""

    model_path = paths.model_file(model_name, final_stage(model_name))
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path} not found: run `dvc repro {final_stage(model_name)}@{model_name}`")
    return load_model(model_path)


def predict_split(model_name: str, split: str, params: Params, model=None) -> pd.DataFrame:
    """P(fake) of the model (default: its final ``.keras`` file) for every image of ``split``;
    written to ``artifacts/predictions/<model>/<split>.csv``."""
    from ..data.pipeline import labels_of, make_dataset
    from ..data.views import scorer, view_of

    model = model if model is not None else load_final_model(model_name)
    manifest = load_manifest(paths.MANIFEST)
    rows = manifest[manifest.split == split]
    data = view_of(params.data, model_name)
    if scorer(data.view).native:  # read whole, per image; a resized view streams through tf.data
        p = _score_native(model, rows.path.astype(str), data)
    else:
        ds = make_dataset(manifest, split, params.data.image_size, params.data.batch_size)
        p = model.predict(ds, verbose=0).reshape(-1)
    df = pd.DataFrame(
        {
            "path": rows.path.to_numpy(),
            "label": rows.label.to_numpy(),
            "y": labels_of(manifest, split),
            "subgroup": rows.subgroup.to_numpy(),
            "probability": p.astype(float),
        }
    )
    save_predictions(df, model_name, split)
    return df


def _score_native(model, image_paths, data, chunk: int = 64) -> np.ndarray:
    """P(fake) per image under a native view (patches: its grid of crops; native: whole), files
    or shard records read ``chunk`` at a time."""
    from ..data.views import score_encoded

    stream = iter_contents(image_paths)
    scores = []
    while contents := list(itertools.islice(stream, chunk)):
        scores.append(score_encoded(model.predict_on_batch, contents, data))
    return np.concatenate(scores) if scores else np.array([], dtype=float)


def _read_bytes(path) -> tuple[bytes | None, str | None]:

    try:
        size = Path(path).stat().st_size
        if size > MAX_IMAGE_BYTES:
            return None, f"file too large: {size:,} bytes > {MAX_IMAGE_BYTES:,}"
        return Path(path).read_bytes(), None
    except OSError as err:
        return None, f"unreadable: {type(err).__name__}: {err.strerror or err}"


def score_files(models: dict, files, params: Params, chunk: int = 256) -> tuple[dict[str, np.ndarray], list]:
    """P(fake) of every model of ``models`` (``{name: Keras model}``) for image files outside the
    manifest, decoded as :func:`predict_split` decodes a split, each model under its own view
    (``views.view_of``): the training pipeline's ``decode_resize`` (``data/decode.py``), or at
    native resolution (``views.score_image``: the patch grid, or the whole image). Each file is
    read once and decoded once per kind of view, whatever the number of models, ``chunk`` files
    at a time.

    Returns ``{name: probabilities}`` (NaN where a file was not scored) and one reason per file
    (``None`` where it was scored): unreadable, not an image, a format the decoder cannot read,
    too large or too small (the header checks of serving, ``data.images.check_encoded``)."""
    from ..data.views import decode_at, scorer, view_of

    files = [str(f) for f in files]
    views = {name: scorer(view_of(params.data, name).view) for name in models}
    sizes = {name: views[name].input_size(view_of(params.data, name)) for name in models}
    decoded_at = {name: views[name].decoded_size(sizes[name]) for name in models}  # each decoding once
    scores = {name: np.full(len(files), np.nan) for name in models}
    errors: list[str | None] = [None] * len(files)
    for start in range(0, len(files), chunk):
        idx = np.arange(start, min(start + chunk, len(files)))
        read = [_read_bytes(files[i]) for i in idx]
        header_errors, _ = check_images([c for c, _ in read])
        contents = [None if e or h else c for (c, e), h in zip(read, header_errors)]
        found = [e or h for (_, e), h in zip(read, header_errors)]
        decoded = {}
        for size in sorted(set(decoded_at.values()), key=lambda s: (s is not None, s or 0)):  # native first
            decoded[size], decode_errors = decode_at(contents, size)
            found = [f or d for f, d in zip(found, decode_errors)]
        for j, i in enumerate(idx):
            errors[i] = found[j]
        ok = np.flatnonzero([f is None for f in found])
        if not len(ok):
            continue
        for name, view in views.items():
            x = decoded[decoded_at[name]]
            x = x[ok] if isinstance(x, np.ndarray) else [x[j] for j in ok]
            predict = models[name].predict_on_batch
            scores[name][idx[ok]] = view.score_decoded(predict, x, sizes[name], params.data.batch_size)
    return scores, errors


PERTURB_CHUNK = 64  # images read, perturbed and scored at a time: memory stays bounded by this


def score_encoded(model, contents: list[bytes], params: Params) -> np.ndarray:
    """P(fake) of encoded images exactly as :func:`deepfake_detection.stages.scoring.predict_split`
    scores files, under the model's own view (``views.score_encoded``)."""
    from ..data.views import score_encoded as score
    from ..data.views import view_of

    return score(model.predict_on_batch, contents, view_of(params.data, model.name))


def perturbed_scores(
    model, rows: pd.DataFrame, params: Params, chunk: int = PERTURB_CHUNK, perturbations: dict | None = None
) -> pd.DataFrame:
    """``rows`` (manifest rows: path, label, subgroup) with ``y`` and one P(fake) column per
    perturbation (``perturbations``, default ``robustness.perturbations``), ``clean`` first.
    Images (files or shard records) are read in order, and perturbed and scored ``chunk`` at a time."""

    r = params.robustness
    perturbations = r.perturbations if perturbations is None else perturbations
    operations = {name: spec.model_dump() for name, spec in perturbations.items()}
    files = rows.path.astype(str).tolist()
    stream = iter_contents(files)  # files or shard records (`ingest --shards`), read in order
    columns: dict[str, list[np.ndarray]] = {CLEAN: [], **{name: [] for name in operations}}
    for start in range(0, len(files), chunk):
        names = files[start : start + chunk]
        contents = list(itertools.islice(stream, len(names)))
        columns[CLEAN].append(score_encoded(model, contents, params))
        for name, ops in operations.items():
            changed = [perturb(c, ops, seed=image_seed(r.seed, f)) for c, f in zip(contents, names)]
            columns[name].append(score_encoded(model, changed, params))
    out = pd.DataFrame(
        {
            "path": files,
            "label": rows.label.to_numpy(),
            "y": rows.label.astype(str).map(LABELS.index).to_numpy(),
            "subgroup": rows.subgroup.to_numpy() if "subgroup" in rows else "",
        }
    )
    for name, parts in columns.items():
        out[name] = np.concatenate(parts) if parts else np.array([], dtype=float)
    return out


def out_of_fold_scores(model, folds, manifest: pd.DataFrame, params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A refitted head's out-of-fold P(fake) (``linear_fit.Folds``): every train and validation
    image scored by the weights of the fold that held it out, as :func:`predict_split` scores a
    split (plus a ``split`` column, train then valid), and the validation images under every
    perturbation, as :func:`perturbed_scores` scores them. Leaves the last fold's weights in ``model``."""
    rows = manifest.assign(key=manifest.path.astype(str)).set_index("key").loc[folds.paths]
    clean, perturbed = [], []
    for k, weights in enumerate(folds.weights):
        restore_weights(model, weights)
        held = rows[folds.fold == k]
        for split in ("train", "valid"):
            scores = perturbed_scores(
                model, held[held.split == split], params, perturbations=None if split == "valid" else {}
            )
            clean.append(scores[["path", "label", "y", "subgroup"]].assign(split=split, probability=scores[CLEAN]))
            if split == "valid":
                perturbed.append(scores)
    order = {p: i for i, p in enumerate(folds.paths)}
    pooled = pd.concat(clean).sort_values("path", key=lambda c: c.map(order)).reset_index(drop=True)
    valid = pooled[pooled.split == "valid"].path
    perturbed = pd.concat(perturbed).set_index("path").loc[valid].reset_index()
    return pooled, perturbed


def robust_auc(clean: pd.DataFrame, perturbed: pd.DataFrame) -> float:
    """The robustness-aware validation AUC: the mean of the AUC on the clean images (``clean``'s
    ``probability``) and under every perturbation (the columns of :func:`perturbed_scores` but
    ``clean``), each on the same images."""
    from sklearn.metrics import roc_auc_score

    assert list(clean.path.astype(str)) == list(perturbed.path.astype(str)), "clean and perturbed rows differ"
    y = clean.y.to_numpy()
    aucs = [roc_auc_score(y, clean.probability)] + [
        roc_auc_score(y, perturbed[c]) for c in perturbation_columns(perturbed) if c != CLEAN
    ]
    return float(np.mean(aucs))


def choose_threshold(name: str, val: pd.DataFrame, params: Params) -> dict:
    """Pick the decision threshold on validation predictions only; log it and its ROC figure
    to the active run. Returns ``{threshold, method, target, val: {metrics at it}}``."""
    t = params.threshold
    result = select_threshold(val.y, val.probability, t.method, t.target)
    val_metrics = binary_metrics(val.y, val.probability, result.threshold, params.evaluate.n_bins)
    info = {
        "threshold": result.threshold,
        "method": result.method,
        "target": result.target,
        "val": val_metrics,
        "run_id": tracking.active_run_id(),  # lineage: the model card names this run
    }
    tracking.log_metrics({"threshold": result.threshold})
    tracking.log_metrics(val_metrics, prefix="val_")
    fig = plot_roc_with_threshold(result, f"{name}: validation ROC, {t.method} threshold")
    tracking.log_figure(fig, "roc_threshold.png")
    plt.close(fig)
    return info


def evaluate_scores(name: str, kind: str, stage: str, test: pd.DataFrame, chosen: dict, params: Params) -> dict:
    """Test-split report at 0.5 and at the tuned threshold: metrics JSON (DVC), ROC and confusion
    plot files (DVC templates), PNG figures, subgroup breakdown; all logged to the active run."""
    y, p, t = test.y.to_numpy(), test.probability.to_numpy(), float(chosen["threshold"])
    n_bins = params.evaluate.n_bins
    tuned, default = binary_metrics(y, p, t, n_bins), binary_metrics(y, p, 0.5, n_bins)
    groups = subgroup_metrics(y, p, test.subgroup, t)
    low, high = auc_interval(y, p, seed=params.seed)
    result = {
        "model": name,
        "kind": kind,
        "threshold": t,
        "threshold_method": chosen["method"],
        "val": chosen["val"],
        "test": {"tuned": tuned, "0.5": default},
        "test_auc_ci95": {"low": low, "high": high},
        "subgroups": json.loads(groups.to_json(orient="records")),
        "runs": {"threshold": chosen.get("run_id"), stage: tracking.active_run_id()},  # lineage
    }
    tracking.write_json(result, paths.stage_metrics(stage, name))
    tracking.write_json(headline(result), paths.scores(name))

    plot_dir = paths.eval_plots(stage, name)
    plot_dir.mkdir(parents=True, exist_ok=True)
    tracking.write_json({"roc": dvc_roc_points(y, p)}, plot_dir / "roc.json")
    tracking.write_json({"confusion": dvc_confusion_rows(y, p, t)}, plot_dir / "confusion.json")
    matrices = {"tuned": confusion(y, p, t), "0.5": confusion(y, p, 0.5)}
    tracking.write_json(matrices, plot_dir / "confusion_matrices.json")
    figures = {
        "confusion_tuned.png": plot_confusion(y, p, t, False, f"{name}: test, tuned threshold"),
        "confusion_tuned_normalized.png": plot_confusion(y, p, t, True, f"{name}: test, tuned, share of each class"),
        "confusion_0.5.png": plot_confusion(y, p, 0.5, False, f"{name}: test, fixed threshold"),
        "roc.png": plot_roc(y, p, f"{name}: test ROC", name=name),
        "pr.png": plot_pr(y, p, f"{name}: test precision-recall", name=name),
    }
    for filename, fig in figures.items():  # rendered once: the run logs the file DVC tracks
        fig.savefig(plot_dir / filename, dpi=100, bbox_inches="tight")
        plt.close(fig)
        tracking.log_artifact(plot_dir / filename, "evaluation")
    tracking.log_dict(matrices, "evaluation/confusion_matrices.json")
    tracking.log_metrics(tuned, prefix="test_")
    tracking.log_metrics(default, prefix="test_at_0.5_")
    tracking.log_metrics({"auc_ci95_low": low, "auc_ci95_high": high}, prefix="test_")
    if chosen.get("run_id") != tracking.active_run_id():  # a model's evaluate run: its row in the runs list
        tracking.log_metrics({"val_auc": chosen["val"]["auc"], "threshold": t})
    _write_csv(groups, plot_dir / "subgroups.csv")  # a DVC output: header only when the data name no subgroups
    if not groups.empty:  # an empty table is not logged to the run
        tracking.log_artifact(plot_dir / "subgroups.csv", "evaluation")
    for row in groups.itertuples():
        tracking.log_metrics({"recall": row.recall, "auc": row.auc}, prefix=f"test_{row.group}_")
    return result


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path
