"""The register stage's champion gate, measured: the challenger's and the champion's selection
metric on the CURRENT validation split, the challenger from its validation predictions, the
champion by loading its registered pyfunc and scoring the same images in-process, each at its own
decision threshold (:func:`champion_rescorer`, the ``rescore`` of :func:`champion.promote`)."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd

from .. import champion, paths
from ..data.manifest import load_manifest
from ..data.shards import iter_contents
from ..evaluation.report import load_predictions
from ..evaluation.selection import selection_value

SCORE_CHUNK = 128  # validation images per pyfunc call when scoring the champion


def validation_predictions(best: dict) -> pd.DataFrame:
    """The chosen candidate's validation predictions (``path``, ``y``, ``probability``), checked
    to cover exactly the current manifest's validation split."""
    val = load_predictions(best["model"], "valid", ensemble=best["kind"] != "single")
    manifest = load_manifest(paths.MANIFEST)
    current = manifest.loc[manifest.split == "valid", "path"].astype(str).tolist()
    if val.path.astype(str).tolist() != current:
        raise ValueError(
            f"the validation predictions of {best['model']} are not those of the current "
            f"validation split: re-run its threshold stage"
        )
    return val


def _load(model_uri: str):
    """The registered detector as a pyfunc; :class:`champion.Unloadable` if it cannot be loaded."""
    import mlflow  # mlflow.pyfunc (and TensorFlow, as the detector loads): only when a champion is scored

    try:
        return mlflow.pyfunc.load_model(model_uri)
    except Exception as err:  # noqa: BLE001 - whatever stops it loading: the gate replaces it
        raise champion.Unloadable(f"{model_uri}: {type(err).__name__}: {err}") from err


def _probabilities(model_uri: str, out: pd.DataFrame, files: list[str]) -> np.ndarray:
    """P(fake) of every file from the detector's answer ``out``; raises if any image failed."""
    if len(out) != len(files):
        raise ValueError(f"{model_uri} answered {len(out)} rows for {len(files)} images")
    p = pd.to_numeric(out["probability_fake"], errors="coerce").to_numpy(dtype=float)
    failed = ~np.isfinite(p)
    if failed.any():
        first = int(np.argmax(failed))
        why = out["error"].iloc[first] if "error" in out else "no probability"
        raise ValueError(
            f"{int(failed.sum())} of {len(files)} validation images could not be scored (first: {files[first]}: {why})"
        )
    return p


def score_model(model_uri: str, val: pd.DataFrame, metric: str, n_bins: int = 10) -> float:
    """Load a registered detector (pyfunc) and score ``val``'s images (``path`` column; labels
    ``y``) at the detector's own threshold. Images go in as base64 (the ``image`` column), so
    this does not depend on whether the detector may read paths. The images are the model's own
    kind of input (face crops when it was trained on them), so the face path is off. Raises if any
    image fails; :class:`champion.Unloadable` if the detector cannot be loaded."""
    model = _load(model_uri)
    files = val.path.astype(str).tolist()  # files, or records of TFRecord shards (`ingest --shards`)

    def encoded(chunk: list[str]) -> list[str]:
        return [base64.b64encode(c).decode("ascii") for c in iter_contents(chunk)]

    out = pd.concat(
        [
            model.predict(pd.DataFrame({"image": encoded(files[i : i + SCORE_CHUNK])}), params={"faces": False})
            for i in range(0, len(files), SCORE_CHUNK)
        ],
        ignore_index=True,
    )
    p = _probabilities(model_uri, out, files)
    return selection_value(val.y.to_numpy(), p, float(out["threshold"].iloc[0]), metric, n_bins)


def champion_rescorer(model_name: str, val_source, threshold: float, metric: str, n_bins: int = 10) -> champion.Rescore:
    """``rescore`` for :func:`champion.promote`: (challenger, champion) ``metric`` on the current
    validation split. ``val_source`` is the challenger's validation predictions or a function
    that loads them (then a failure there also falls back to the stored tags)."""

    def rescore(champion) -> tuple[float, float]:
        val = val_source() if callable(val_source) else val_source
        challenger = selection_value(val.y.to_numpy(), val.probability.to_numpy(), threshold, metric, n_bins)
        return challenger, score_model(f"models:/{model_name}/{champion.version}", val, metric, n_bins)

    return rescore
