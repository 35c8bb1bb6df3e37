"""What :func:`~deepfake_detection.serving.pyfunc.log_detector` writes, checked: its arguments
(the ``.keras`` files, the ensemble, the views), the detector's ``model_config`` and metadata
(read back by :class:`~deepfake_detection.serving.settings.DetectorSettings`) and its MLflow
signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from deepfake_detection.models.saved import load_model
from deepfake_detection.serving.face_rows import BOX_COLUMNS
from deepfake_detection.serving.members import input_size
from deepfake_detection.serving.settings import DEFAULT_THRESHOLD, PATCHES, face_settings

"""The view whose members' common input size is the detector's ``patch_size``."""


def keras_files(keras_paths: Sequence[Path | str] | Path | str) -> list[Path]:
    """One ``.keras`` file or several, each checked to exist and to be a ``.keras`` file."""
    paths = [Path(p) for p in ([keras_paths] if isinstance(keras_paths, (str, Path)) else keras_paths)]
    if not paths:
        raise ValueError("keras_paths is empty: give at least one .keras model")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"Keras model file(s) not found: {missing}")
    not_keras = [str(p) for p in paths if p.suffix != ".keras"]
    if not_keras:
        raise ValueError(f"expected Keras 3 '.keras' files, got {not_keras}")
    return paths


def checked_ensemble(ensemble: dict | None, n_members: int) -> dict | None:
    """The ensemble's ``to_dict()`` validated against ``n_members`` models (plain JSON types);
    None for one model (more need an ensemble)."""
    if ensemble is None:
        if n_members > 1:
            raise ValueError(f"{n_members} models need an ensemble description to combine them")
        return None
    from deepfake_detection.evaluation.ensemble import Ensemble  # scikit-learn: only for an ensemble

    ensemble = Ensemble.from_dict(dict(ensemble)).to_dict()  # validates; plain JSON types
    if len(ensemble["members"]) != n_members:
        raise ValueError(f"the ensemble names {len(ensemble['members'])} members but {n_members} models were given")
    return ensemble


def checked_views(view: str, member_views: Sequence[str] | None, n_members: int, faces: bool) -> list[str]:
    """One known view per member (default ``view`` for each), and faces only with resized members."""
    from deepfake_detection.data.views import VIEWS, scorer  # TensorFlow: only when a detector is logged

    member_views = list(member_views or [view] * n_members)
    if len(member_views) != n_members:
        raise ValueError(f"{len(member_views)} member views given for {n_members} models")
    for v in [view, *member_views]:
        if v not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, not {v!r}")
    if view == PATCHES and faces:
        raise ValueError(
            "the patch view scores native-resolution crops of whole images: it does not combine with faces"
        )
    if faces and any(scorer(v).native for v in member_views):
        raise ValueError(
            "faces are scored resized: a native-resolution member (patches or native view) cannot score them"
        )
    return member_views


def detector_config(
    paths: Sequence[Path],
    threshold: float,
    image_size: int,
    *,
    ensemble: dict | None,
    threshold_method: str,
    batch_size: int,
    max_pixels: int,
    faces: bool,
    faces_params,
    view: str,
    member_views: list[str],
) -> tuple[dict, dict]:
    """The detector's ``model_config`` and metadata (``patch_size``: the input size of the patch
    members, which must agree)."""
    threshold = float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    if int(max_pixels) < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    shared = {
        "threshold": threshold,
        "image_size": int(image_size),
        "max_pixels": int(max_pixels),
        "faces": bool(faces),
        "face_settings": face_settings(faces_params).model_dump(),
        "view": view,
        "member_views": member_views,
    }
    model_config = {**shared, "ensemble": ensemble, "batch_size": int(batch_size)}
    metadata = {**shared, "threshold_method": str(threshold_method)}
    if PATCHES in member_views:
        sizes = {input_size(load_model(p)) for p, v in zip(paths, member_views) if v == PATCHES}
        if len(sizes) != 1:
            raise ValueError(f"the patch view needs members of one input size (the patch), got {sorted(sizes)}")
        model_config["patch_size"] = metadata["patch_size"] = sizes.pop()
    if ensemble is not None:
        metadata["ensemble_kind"] = ensemble["kind"]
        metadata["members"] = list(ensemble["members"])
    return model_config, metadata


def detector_signature(threshold: float = DEFAULT_THRESHOLD, batch_size: int = 64, faces: bool = False):
    """Input: optional string columns ``path`` and ``image`` (give either); params ``threshold``,
    ``batch_size`` and ``faces`` (defaults: the logged ones); output: the face columns, present
    only with faces on (optional: ``input``, ``face``, the box and ``face_confidence``), then the
    five result columns."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema

    inputs = Schema(
        [ColSpec(DataType.string, "path", required=False), ColSpec(DataType.string, "image", required=False)]
    )
    face_columns = [ColSpec(DataType.long, name, required=False) for name in ("input", "face", *BOX_COLUMNS[:4])]
    outputs = Schema(
        [
            *face_columns,
            ColSpec(DataType.double, "face_confidence", required=False),
            ColSpec(DataType.double, "probability_fake"),
            ColSpec(DataType.string, "label", required=False),
            ColSpec(DataType.double, "threshold"),
            ColSpec(DataType.string, "error", required=False),
            ColSpec(DataType.string, "warning", required=False),
        ]
    )
    params = ParamSchema(
        [
            ParamSpec("threshold", DataType.double, float(threshold)),
            ParamSpec("batch_size", DataType.long, int(batch_size)),
            ParamSpec("faces", DataType.boolean, bool(faces)),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)
