"""Export of a single-model detector (or a ``.keras`` file) as a TF SavedModel or ONNX, with a
sidecar JSON (threshold, input size, pixel limit) that
:class:`~deepfake_detection.serving.predict.OnnxDetector` reads back.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

from deepfake_detection import tracking
from deepfake_detection.serving.members import input_size, load_keras_members
from deepfake_detection.serving.settings import DetectorSettings

EXPORT_FORMATS = ("savedmodel", "onnx")
ONNX_OPSET = 17


def onnx_sidecar(path: Path) -> Path:
    """The sidecar JSON of an exported model: ``<path>.json``."""
    return path.with_name(path.name + ".json")


def export_model(
    model_uri_or_keras_path: str | Path, fmt: str, out: Path | str, *, threshold: float | None = None
) -> Path:
    """Export a single-model detector (or a ``.keras`` file) as a TF SavedModel or ONNX.

    ``savedmodel``: ``model.export(out, format="tf_saved_model")`` (a folder; its ``serve``
    endpoint takes float32 pixels ``(n, S, S, 3)`` in [0, 255]). ``onnx``: ``tf2onnx`` at opset
    17, one input (float32 ``(n, S, S, 3)`` pixels) and one output ``(n, 1)`` P(fake). Either way
    a sidecar ``<out>.json`` records ``threshold`` (the detector's, ``threshold=`` overrides,
    ``null`` for a bare ``.keras`` file), ``image_size``, ``input_name``, the source, and the
    detector's ``faces`` flag and ``face_settings`` (false and null for a ``.keras`` file), its
    ``view`` and ``patch_size`` (``resize`` and null for a ``.keras`` file; under ``patches`` the
    exported network scores crops, and the runner scores an image's grid of them).
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {EXPORT_FORMATS}")
    out = Path(out)
    models, metadata = load_keras_members(model_uri_or_keras_path)
    if len(models) != 1:
        raise ValueError(
            f"{model_uri_or_keras_path} is an ensemble of {len(models)} models: export works on one model; "
            "export each member's .keras file instead (the ensemble's combination stays in Python)"
        )
    model = models[0]
    size = input_size(model)
    if size is None:
        raise ValueError(
            f"{model.name} is a forensic network: it reads each image whole at its own resolution (any size), "
            "which the fixed-size SavedModel/ONNX export does not describe; serve it with the MLflow pyfunc "
            "(deepfake-detect predict, or mlflow models serve)"
        )
    settings = DetectorSettings.from_metadata(metadata)
    if threshold is None and settings.has_threshold:
        threshold = settings.threshold
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    if fmt == "savedmodel":
        model.export(str(out), format="tf_saved_model", verbose=False)
        input_name = "inputs"
    else:
        input_name = _export_onnx(model, size, out)
    sidecar = {
        "threshold": threshold,
        "image_size": size,
        "input_name": input_name,
        "format": fmt,
        "source": str(model_uri_or_keras_path),
        "threshold_method": settings.threshold_method,
        "max_pixels": settings.max_pixels,
        "faces": settings.faces,
        "face_settings": settings.face_settings.model_dump() if settings.has_face_settings else None,
        "view": settings.view,
        "patch_size": settings.patch_size,
    }

    tracking.write_json(sidecar, onnx_sidecar(out))
    return out


def _export_onnx(model, size: int, out: Path) -> str:
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec((None, size, size, 3), tf.float32, name="image")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=ONNX_OPSET, output_path=str(out))
    inputs = [i.name for i in proto.graph.input]
    initializers = {i.name for i in proto.graph.initializer}
    real = [n for n in inputs if n not in initializers]
    if len(real) != 1:
        raise RuntimeError(f"ONNX export gave {len(real)} graph inputs {real}; expected one")
    return real[0]
