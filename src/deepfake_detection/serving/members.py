"""The Keras members of a logged detector: which artifacts they are (``member_0``, ``member_1``,
... and the ``ensemble`` JSON), how each is loaded (:func:`load_member`), its input size
(:func:`input_size`; ``None`` for a network of any size, the forensic family) and its compiled
forward pass; and the members of a logged detector loaded back as Keras models
(:func:`load_keras_detector`) for ``explain`` and ``export``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from deepfake_detection.models.saved import load_model

MEMBER_PREFIX = "member_"
ENSEMBLE_ARTIFACT = "ensemble"


def member_keys(keys: Iterable[str]) -> list[str]:
    members = [k for k in keys if k.startswith(MEMBER_PREFIX) and k[len(MEMBER_PREFIX) :].isdigit()]
    return sorted(members, key=lambda k: int(k[len(MEMBER_PREFIX) :]))


def input_size(model) -> int | None:
    """The side of a model's square input, or ``None`` for a network that takes any size (the
    forensic family, scored at native resolution)."""
    shape = model.input_shape
    if isinstance(shape, list):
        shape = shape[0]
    if len(shape) == 4 and shape[1] is None and shape[2] is None and shape[3] == 3:
        return None
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] != 3:
        raise ValueError(f"expected a model input (None, S, S, 3) or (None, None, None, 3), got {shape}")
    return int(shape[1])


def load_member(path: str | Path, key: str = "model"):
    """A member's ``.keras`` file loaded, or an ``MlflowException`` naming the real failure (a
    missing file; a truncated or corrupt one, which Keras reports as "File not found")."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise MlflowException(f"the model file of {key} is missing: {path}")
    if not zipfile.is_zipfile(path):
        raise MlflowException(
            f"the model file of {key} is unreadable: {path} ({path.stat().st_size:,} bytes) is not a valid .keras "
            "archive (truncated or corrupt): log and register the model again"
        )
    try:
        return load_model(path)
    except Exception as err:
        raise MlflowException(f"the model file of {key} is unreadable: {path}: {type(err).__name__}: {err}") from err


def compiled_forward(model, size: int | None):
    """``model(x, training=False)`` compiled once for any batch size (no retracing per size); a
    model of any input size (``size`` None) once for every image size."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)], reduce_retracing=True)
    def forward(x):
        return model(x, training=False)

    return lambda x: forward(tf.convert_to_tensor(x, dtype=tf.float32))


def load_keras_members(model_uri_or_keras_path: str | Path) -> tuple[list, dict]:
    """The Keras model(s) of a logged detector (or of a ``.keras`` file) and its metadata."""
    models, _, metadata = load_keras_detector(model_uri_or_keras_path)
    return models, metadata


def load_keras_detector(model_uri_or_keras_path: str | Path) -> tuple[list, dict | None, dict]:
    """The Keras model(s) of a logged detector (or of a ``.keras`` file), the description of the
    ensemble that combines them (``Ensemble.to_dict()``; ``None`` for one model) and its metadata."""
    source = str(model_uri_or_keras_path)
    if source.endswith(".keras"):
        if not Path(source).is_file():
            raise FileNotFoundError(f"Keras model file not found: {source}")
        return [load_member(source)], None, {}
    from mlflow.models import Model

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source))
    meta = Model.load(str(local / "MLmodel"))
    flavor = meta.flavors.get("python_function", {})
    artifacts = flavor.get("artifacts") or {}
    keys = member_keys(artifacts)
    if not keys:
        raise ValueError(f"{source} is not a detector logged by log_detector (no {MEMBER_PREFIX}<i> artifacts)")
    models = [load_member(local / artifacts[k]["path"], k) for k in keys]
    description = (flavor.get("model_config") or {}).get("ensemble")
    if description is None and ENSEMBLE_ARTIFACT in artifacts:
        description = json.loads((local / artifacts[ENSEMBLE_ARTIFACT]["path"]).read_text())
    if len(models) > 1 and not description:
        raise ValueError(f"{source} holds {len(models)} models but no ensemble description to combine them")
    return models, (description or None), dict(meta.metadata or {})
