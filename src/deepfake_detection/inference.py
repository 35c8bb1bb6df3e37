"""Inference: the MLflow pyfunc detector, batch prediction on files, export to SavedModel/ONNX.

The served model is a :class:`DeepfakeDetector` (an ``mlflow.pyfunc.PythonModel``) that holds one
or more of our ``.keras`` models (artifacts ``member_0``, ``member_1``, ...) and, for several
members, the JSON description of an :class:`~deepfake_detection.evaluation.ensemble.Ensemble`
that combines their probabilities. It takes a DataFrame with a ``path`` column (image files) or
an ``image`` column (base64-encoded JPEG/PNG bytes, what the REST endpoint receives) and returns
one row per input row::

    probability_fake  float   P(fake), NaN when the row failed
    label             str     "real" / "fake" (probability_fake >= threshold), None when failed
    threshold         float   the decision threshold used
    error             str     None when fine, else why this row failed

    warning           str     None, or why the score is less reliable (small, elongated image)

A bad row (missing file, not an image, bad base64, too many pixels) gets its ``error`` and never
fails the batch. Every image is checked from its header before it is decoded (the limits of
:mod:`deepfake_detection.data.images`: ``MAX_PIXELS``, ``MIN_SIDE``, ``SMALL_SIDE``,
``MAX_ASPECT_RATIO``, ``MAX_IMAGE_BYTES``).

``path`` rows and security: a REST client of ``mlflow models serve`` reaches
:meth:`DeepfakeDetector.predict` exactly like an in-process caller, so the detector reads no
file by default and answers each ``path`` row with an error. In-process code opts in with
``with local_files(): model.predict(...)`` (:func:`predict_files`, the CLI and ``explain`` read
their files themselves); a server opts in by setting ``DEEPFAKE_SERVE_PATH_ROOT`` to one folder,
and then reads only regular files whose resolved path lies inside it (no ``..`` or symlink
escape), of at most ``MAX_IMAGE_BYTES`` (``DEEPFAKE_SERVE_MAX_BYTES`` overrides). Request
``params`` are never trusted for this: REST clients can send them too. Images are decoded and resized by :func:`deepfake_detection.data.pipeline.decode_resize`,
the very function the training pipeline uses, so serving sees the pixels training saw.

The logged model folder carries this package (``code/deepfake_detection``), so it loads where
the package is not installed (``mlflow models serve --env-manager local`` included).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
import json
import logging
import math
import os
import shutil
import stat
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from deepfake_detection import LABELS
from deepfake_detection.data.images import MAX_IMAGE_BYTES, MAX_PIXELS, check_encoded

_logger = logging.getLogger(__name__)

INPUT_COLUMNS = ("path", "image")
OUTPUT_COLUMNS = ("probability_fake", "label", "threshold", "error", "warning")
MEMBER_PREFIX = "member_"
ENSEMBLE_ARTIFACT = "ensemble"
PACKAGE_DIR = Path(__file__).resolve().parent
RUNTIMES = ("keras", "onnx")
EXPORT_FORMATS = ("savedmodel", "onnx")
ONNX_OPSET = 17
DEFAULT_THRESHOLD = 0.5
PATH_ROOT_ENV = "DEEPFAKE_SERVE_PATH_ROOT"
"""Set for a serving process: ``path`` rows may name files inside this one folder."""
MAX_BYTES_ENV = "DEEPFAKE_SERVE_MAX_BYTES"
"""Optional: the byte cap on one image (file or base64), default ``MAX_IMAGE_BYTES``."""
PATHS_DISABLED = (
    "'path' input is disabled: send the image base64-encoded in an 'image' column "
    f"(a server can allow files of one folder with {PATH_ROOT_ENV})"
)
OUTSIDE_ROOT = "path not allowed: only files inside the serving folder can be read"


class InvalidInputError(MlflowException, ValueError):
    """The request as a whole is unusable (no ``path``/``image`` column, ...): a ``ValueError``
    that MLflow's scoring server answers with HTTP 400 and this message."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


# --------------------------------------------------------------------------- reading files


class PathAccess(NamedTuple):
    """Whether ``path`` rows are read, confined to which folder (``None``: anywhere) and the
    byte cap on one image."""

    allowed: bool
    root: str | None = None
    max_bytes: int = MAX_IMAGE_BYTES


LOCAL_ACCESS = PathAccess(True)
"""In-process callers that name their own files (predict_files, explain, the ONNX detector)."""

_LOCAL_FILES: contextvars.ContextVar[bool] = contextvars.ContextVar("deepfake_local_files", default=False)


@contextlib.contextmanager
def local_files():
    """Let a :class:`DeepfakeDetector` called inside this block read ``path`` rows anywhere
    (in-process use only: nothing a REST client sends can switch this on)."""
    token = _LOCAL_FILES.set(True)
    try:
        yield
    finally:
        _LOCAL_FILES.reset(token)


def _max_bytes_setting() -> int:
    value = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not value:
        return MAX_IMAGE_BYTES
    try:
        cap = int(value)
    except ValueError:
        raise MlflowException(f"{MAX_BYTES_ENV} must be a number of bytes, got {value!r}") from None
    if cap < 1:
        raise MlflowException(f"{MAX_BYTES_ENV} must be >= 1, got {cap}")
    return cap


def path_access() -> PathAccess:
    """What the detector may read for ``path`` rows in this call: anywhere inside
    :func:`local_files`, inside ``$DEEPFAKE_SERVE_PATH_ROOT`` when set, else nothing."""
    max_bytes = _max_bytes_setting()
    if _LOCAL_FILES.get():
        return PathAccess(True, None, max_bytes)
    root = os.environ.get(PATH_ROOT_ENV, "").strip()
    if root:
        resolved = os.path.realpath(root)
        if not os.path.isdir(resolved):
            raise MlflowException(f"{PATH_ROOT_ENV}={root!r} is not a folder")
        return PathAccess(True, resolved, max_bytes)
    return PathAccess(False, None, max_bytes)


class RowError(ValueError):
    """One input row is unusable; the message goes into that row's ``error``."""


def _inside(root: str, resolved: str) -> bool:
    return resolved == root or resolved.startswith(root.rstrip(os.sep) + os.sep)


def read_image_file(path: str | os.PathLike, *, root: str | None = None, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of one image file, read safely; :class:`RowError` says why not.

    With ``root`` (a resolved folder), a relative ``path`` is taken inside it and the resolved
    path (``os.path.realpath``: ``..`` and symlinks followed) must lie inside it, else the same
    message whether or not the file exists. Anything but a regular file (a folder, ``/dev/zero``,
    a FIFO) is refused without reading it, and so is a file over ``max_bytes``; at most
    ``max_bytes`` are ever read."""
    given = os.fspath(path)
    try:
        candidate = os.path.join(root, given) if root is not None else given
        resolved = os.path.realpath(candidate)
    except (ValueError, OSError) as err:  # a NUL byte, a symlink loop, ...
        raise RowError(OUTSIDE_ROOT if root is not None else f"not a valid path: {err}") from None
    if root is not None and not _inside(root, resolved):
        raise RowError(OUTSIDE_ROOT)
    try:
        info = os.stat(resolved)
    except FileNotFoundError:
        dangling = os.path.islink(candidate)
        raise RowError(f"dangling symbolic link: {given}" if dangling else f"file not found: {given}") from None
    except OSError as err:
        raise RowError(f"cannot read {given}: {err.strerror or err}") from None
    _check_file_stat(info, given, max_bytes)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(resolved, flags)
    except OSError as err:  # e.g. permission denied, or the file was swapped for a symlink
        raise RowError(f"cannot read {given}: {err.strerror or err}") from None
    try:
        _check_file_stat(os.fstat(fd), given, max_bytes)  # what was opened, not what was checked
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as err:
        raise RowError(f"cannot read {given}: {err.strerror or err}") from None
    finally:
        os.close(fd)
    if total > max_bytes:  # grew while being read
        raise RowError(f"file too large: over {max_bytes:,} bytes: {given}")
    return b"".join(chunks)


def _check_file_stat(info: os.stat_result, given: str, max_bytes: int) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise RowError(f"is a directory, not an image file: {given}")
    if not stat.S_ISREG(info.st_mode):
        raise RowError(f"not a regular file (a device, FIFO or socket): {given}")
    if info.st_size > max_bytes:
        raise RowError(f"file too large: {info.st_size:,} bytes > the limit of {max_bytes:,}: {given}")


# --------------------------------------------------------------------------- decoding


def _decoder(image_size: int):
    """A compiled ``bytes -> float32 (s, s, 3)`` function: the training pipeline's decode_resize."""
    import tensorflow as tf

    from deepfake_detection.data.pipeline import decode_resize

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)], reduce_retracing=True)
    def decode(contents):
        return decode_resize(contents, image_size)

    return decode


_DECODERS: dict[int, Any] = {}


def check_images(contents: Sequence[bytes | None], max_pixels: int = MAX_PIXELS) -> tuple[list[str | None], list[str | None]]:
    """One error and one warning (or ``None``) per encoded image, from its header alone
    (:func:`deepfake_detection.data.images.check_encoded`); ``None`` entries get neither."""
    errors: list[str | None] = []
    warnings_: list[str | None] = []
    for data in contents:
        found = check_encoded(data, max_pixels=max_pixels) if data is not None else None
        errors.append(found.error if found else None)
        warnings_.append(found.warning if found else None)
    return errors, warnings_


def decode_images(contents: Sequence[bytes | None], image_size: int, *,
                  max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, list[str | None]]:
    """Decode encoded images to float32 RGB ``(n, s, s, 3)`` in [0, 255] (rows that fail are zeros).

    ``None`` entries are skipped. Returns the pixels and one error message per entry (``None``
    where the image decoded). Each image is first checked from its header
    (:func:`check_images`: format, ``max_pixels``, smallest side), so an oversized one is
    refused before any pixel memory is allocated.
    """
    errors, _ = check_images(contents, max_pixels)
    pixels, decode_errors = _decode_checked([None if e else c for c, e in zip(contents, errors)], image_size)
    return pixels, [e or d for e, d in zip(errors, decode_errors)]


def _decode_checked(contents: Sequence[bytes | None], image_size: int) -> tuple[np.ndarray, list[str | None]]:
    """:func:`decode_images` without the header checks (the caller made them). Images go one by
    one through the compiled ``decode_resize``, so each failure has its own message; on 2 busy
    cores this was as fast as a parallel tf.data map over chunks of 64 (whose set-up costs
    ~30 ms a chunk)."""
    import tensorflow as tf

    if image_size not in _DECODERS:
        _DECODERS[image_size] = _decoder(image_size)
    decode = _DECODERS[image_size]
    pixels = np.zeros((len(contents), image_size, image_size, 3), dtype=np.float32)
    errors: list[str | None] = [None] * len(contents)
    for i, data in enumerate(contents):
        if data is None:
            continue
        if len(data) == 0:
            errors[i] = "not a decodable image: empty content"
            continue
        try:
            pixels[i] = decode(tf.constant(data)).numpy()
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError, ValueError) as err:
            errors[i] = f"not a decodable image: {_tf_error_message(err)}"
    return pixels, errors


def _tf_error_message(err: Exception) -> str:
    """The op's own message out of a TensorFlow graph-execution error (no traceback lines)."""
    text = getattr(err, "message", None) or str(err)
    skip = ("Graph execution error", "Detected at node", "File ", "[[", "{{")
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(skip)]
    return lines[-1] if lines else type(err).__name__


def _b64decode(value: str) -> bytes:
    value = value.strip()
    if value.startswith("data:") and "," in value:  # data URI: data:image/png;base64,....
        value = value.split(",", 1)[1]
    return base64.b64decode(value, validate=True)


def _is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def read_inputs(model_input: pd.DataFrame, access: PathAccess = LOCAL_ACCESS) -> tuple[list[bytes | None], list[str | None]]:
    """The encoded bytes of every row (``image`` base64 if present, else the ``path`` file) and
    a per-row error (``None`` where the bytes were read).

    ``access``: whether and where ``path`` rows are read (:func:`read_image_file`); the default
    reads any regular file, for in-process callers naming their own files. The detector passes
    :func:`path_access` instead. No image over ``access.max_bytes`` is accepted."""
    if not isinstance(model_input, pd.DataFrame):
        raise InvalidInputError(
            f"expected a DataFrame with a 'path' or an 'image' column, got {type(model_input).__name__}"
        )
    present = [c for c in INPUT_COLUMNS if c in model_input.columns]
    if not present:
        raise InvalidInputError(
            "the input needs a 'path' column (image files) or an 'image' column (base64-encoded "
            f"JPEG/PNG bytes); got {[str(c) for c in model_input.columns] or 'no known column'}"
        )
    paths = model_input["path"].tolist() if "path" in present else [None] * len(model_input)
    images = model_input["image"].tolist() if "image" in present else [None] * len(model_input)
    contents: list[bytes | None] = []
    errors: list[str | None] = []
    for path, image in zip(paths, images):
        data, error = None, None
        if not _is_missing(image):
            if isinstance(image, (bytes, bytearray)):
                data = bytes(image)  # raw bytes in process (a REST request sends base64 text)
            elif isinstance(image, str):
                if len(image) > access.max_bytes * 4 // 3 + 1024:  # before decoding it
                    error = f"image too large: {len(image):,} characters of base64 > the limit of {access.max_bytes:,} bytes"
                else:
                    try:
                        data = _b64decode(image)
                    except (binascii.Error, ValueError) as err:
                        error = f"not valid base64: {err}"
            else:
                error = f"'image' must be a base64 string, got {type(image).__name__}"
            if data is not None and len(data) > access.max_bytes:
                data, error = None, f"image too large: {len(data):,} bytes > the limit of {access.max_bytes:,}"
        elif not _is_missing(path):
            if not access.allowed:
                error = PATHS_DISABLED
            else:
                try:
                    data = read_image_file(str(path), root=access.root, max_bytes=access.max_bytes)
                except RowError as err:
                    error = str(err)
        else:
            error = "empty row: give a 'path' or an 'image'"
        contents.append(data)
        errors.append(error)
    return contents, errors


def score_rows(model_input: pd.DataFrame, sizes: Sequence[int],
               score: Callable[[dict[int, np.ndarray]], np.ndarray], *, access: PathAccess = LOCAL_ACCESS,
               max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, list[str | None], list[str | None]]:
    """Read (:func:`read_inputs` with ``access``), check (:func:`check_images` with
    ``max_pixels``) and decode every row (once per input size in ``sizes``) and ``score`` the
    decodable ones (pixels keyed by size -> P(fake)). Returns P(fake), NaN where a row failed,
    one error message or None per row (a bad row never fails the batch) and one warning or
    None per row."""
    contents, errors = read_inputs(model_input, access)
    header_errors, warnings_ = check_images([c if e is None else None for c, e in zip(contents, errors)], max_pixels)
    errors = [e or h for e, h in zip(errors, header_errors)]
    ok = [i for i, e in enumerate(errors) if e is None]
    probabilities = np.full(len(contents), np.nan)
    if ok:
        pixels = {}
        for size in sorted(set(sizes)):
            pixels[size], decode_errors = _decode_checked([contents[i] for i in ok], size)
            for i, e in zip(ok, decode_errors):
                errors[i] = errors[i] or e
        good = [j for j, i in enumerate(ok) if errors[i] is None]
        if good:
            probabilities[[ok[j] for j in good]] = score({s: x[good] for s, x in pixels.items()})
    warnings_ = [None if e else w for e, w in zip(errors, warnings_)]
    return probabilities, errors, warnings_


def result_frame(probabilities: np.ndarray, errors: Sequence[str | None], threshold: float,
                 warnings: Sequence[str | None] | None = None) -> pd.DataFrame:
    """The detector's output columns for per-row probabilities (NaN where ``errors`` says why)."""
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    failed = np.array([e is not None for e in errors], dtype=bool)
    p = np.where(failed, np.nan, p)
    labels = [None if bad else LABELS[int(q >= threshold)] for q, bad in zip(p, failed)]
    return pd.DataFrame(
        {
            "probability_fake": p,
            "label": pd.Series(labels, dtype=object),
            "threshold": np.full(len(p), float(threshold)),
            "error": pd.Series(list(errors), dtype=object),
            "warning": pd.Series(list(warnings) if warnings is not None else [None] * len(p), dtype=object),
        }
    )


# --------------------------------------------------------------------------- the pyfunc model


def _member_keys(keys: Iterable[str]) -> list[str]:
    members = [k for k in keys if k.startswith(MEMBER_PREFIX) and k[len(MEMBER_PREFIX):].isdigit()]
    return sorted(members, key=lambda k: int(k[len(MEMBER_PREFIX):]))


def _input_size(model) -> int:
    shape = model.input_shape
    if isinstance(shape, list):
        shape = shape[0]
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] != 3:
        raise ValueError(f"expected a model input (None, S, S, 3), got {shape}")
    return int(shape[1])


def _forward(model, size: int):
    """``model(x, training=False)`` compiled once for any batch size (no retracing per size)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
    def forward(x):
        return model(x, training=False)

    return lambda x: forward(tf.convert_to_tensor(x, dtype=tf.float32))


class DeepfakeDetector(mlflow.pyfunc.PythonModel):
    """Keras model(s) + threshold (+ ensemble) behind MLflow's pyfunc interface.

    Artifacts: ``member_0``, ``member_1``, ... (``.keras`` files) and, optionally,
    ``ensemble`` (JSON). ``model_config``: ``threshold``, ``image_size``, ``ensemble`` (the
    ensemble's ``to_dict()`` or None), ``batch_size`` and ``max_pixels`` (the pixel limit
    checked from each image's header). Each member gets images at its own input size (read
    from the model). ``path`` rows are read only as :func:`path_access` allows.
    """

    def load_context(self, context) -> None:
        import keras

        config = dict(context.model_config or {})
        keys = _member_keys(context.artifacts)
        if not keys:
            raise MlflowException(f"no '{MEMBER_PREFIX}<i>' Keras model among the artifacts {sorted(context.artifacts)}")
        self.models = [keras.models.load_model(context.artifacts[k], compile=False) for k in keys]
        self.sizes = [_input_size(m) for m in self.models]
        self._forwards = [_forward(m, s) for m, s in zip(self.models, self.sizes)]
        self.threshold = float(config.get("threshold", DEFAULT_THRESHOLD))
        self.batch_size = int(config.get("batch_size") or 64)
        self.image_size = int(config.get("image_size") or self.sizes[0])
        self.max_pixels = int(config.get("max_pixels") or MAX_PIXELS)
        access = path_access()  # a wrong DEEPFAKE_SERVE_PATH_ROOT stops a server from starting
        if access.root is not None:
            _logger.info("path rows may name files inside %s (at most %s bytes)", access.root, access.max_bytes)
        description = config.get("ensemble")
        if description is None and ENSEMBLE_ARTIFACT in context.artifacts:
            description = json.loads(Path(context.artifacts[ENSEMBLE_ARTIFACT]).read_text())
        self.ensemble = None
        if description:
            from deepfake_detection.evaluation.ensemble import Ensemble

            self.ensemble = Ensemble.from_dict(description)
            if len(self.ensemble.members) != len(self.models):
                raise MlflowException(
                    f"the ensemble has {len(self.ensemble.members)} members but {len(self.models)} models were logged"
                )
        elif len(self.models) > 1:
            raise MlflowException(f"{len(self.models)} member models but no ensemble description to combine them")

    def predict_pixels(self, pixels: dict[int, np.ndarray], batch_size: int | None = None) -> np.ndarray:
        """P(fake) ``(n,)`` from decoded pixels keyed by image size (one entry per member size)."""
        bs = int(batch_size or self.batch_size)
        columns = []
        for forward, size in zip(self._forwards, self.sizes):
            x = pixels[size]
            out = [forward(x[i : i + bs]).numpy().reshape(-1) for i in range(0, len(x), bs)]
            columns.append(np.concatenate(out) if out else np.zeros(0, np.float32))
        P = np.clip(np.stack(columns, axis=1).astype(np.float64), 0.0, 1.0)
        if self.ensemble is None:
            return P[:, 0]
        return np.asarray(self.ensemble.predict(P), dtype=np.float64)

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        params = params or {}
        threshold = self.threshold if params.get("threshold") is None else float(params["threshold"])
        probabilities, errors, warnings_ = score_rows(
            model_input, self.sizes, lambda pixels: self.predict_pixels(pixels, params.get("batch_size")),
            access=path_access(), max_pixels=getattr(self, "max_pixels", MAX_PIXELS))
        return result_frame(probabilities, errors, threshold, warnings_)


# --------------------------------------------------------------------------- logging


def detector_signature(threshold: float = DEFAULT_THRESHOLD, batch_size: int = 64):
    """Input: optional string columns ``path`` and ``image`` (give either); params ``threshold``
    and ``batch_size`` (defaults: the logged ones); output: the four result columns."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec(DataType.string, "path", required=False), ColSpec(DataType.string, "image", required=False)])
    outputs = Schema(
        [
            ColSpec(DataType.double, "probability_fake"),
            ColSpec(DataType.string, "label", required=False),
            ColSpec(DataType.double, "threshold"),
            ColSpec(DataType.string, "error", required=False),
            ColSpec(DataType.string, "warning", required=False),
        ]
    )
    params = ParamSchema(
        [ParamSpec("threshold", DataType.double, float(threshold)), ParamSpec("batch_size", DataType.long, int(batch_size))]
    )
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def encode_image_file(path: Path | str) -> str:
    """The base64 text of an image file (what the REST endpoint's ``image`` column takes)."""
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def log_detector(
    keras_paths: Sequence[Path | str],
    threshold: float,
    image_size: int,
    *,
    name: str = "model",
    ensemble: dict | None = None,
    threshold_method: str = "youden",
    registered_model_name: str | None = None,
    input_example_image: Path | None = None,
    batch_size: int = 64,
    max_pixels: int = MAX_PIXELS,
):
    """Log a :class:`DeepfakeDetector` to the active run; return MLflow's ``ModelInfo``.

    ``keras_paths``: one ``.keras`` model, or the ensemble's members in the order of
    ``ensemble["members"]`` (an ``Ensemble.to_dict()``, required for more than one).
    ``threshold`` (in [0, 1]) goes to the model config and, with ``threshold_method`` and
    ``image_size``, to the model's metadata. ``input_example_image`` (an image file) is stored
    base64-encoded as the input example (MLflow then also checks that it serves).
    ``max_pixels``: the largest image (width x height) the detector decodes; in the model
    config and the metadata.
    """
    from deepfake_detection import tracking

    if mlflow.active_run() is None:
        raise RuntimeError("log_detector logs into the caller's run: call it inside mlflow.start_run() / stage_run()")
    paths = [Path(p) for p in ([keras_paths] if isinstance(keras_paths, (str, Path)) else keras_paths)]
    if not paths:
        raise ValueError("keras_paths is empty: give at least one .keras model")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"Keras model file(s) not found: {missing}")
    not_keras = [str(p) for p in paths if p.suffix != ".keras"]
    if not_keras:
        raise ValueError(f"expected Keras 3 '.keras' files, got {not_keras}")
    threshold = float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    if ensemble is not None:
        from deepfake_detection.evaluation.ensemble import Ensemble

        ensemble = Ensemble.from_dict(dict(ensemble)).to_dict()  # validates; plain JSON types
        if len(ensemble["members"]) != len(paths):
            raise ValueError(f"the ensemble names {len(ensemble['members'])} members but {len(paths)} models were given")
    elif len(paths) > 1:
        raise ValueError(f"{len(paths)} models need an ensemble description to combine them")

    artifacts = {f"{MEMBER_PREFIX}{i}": str(p) for i, p in enumerate(paths)}
    if int(max_pixels) < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    model_config = {"threshold": threshold, "image_size": int(image_size), "ensemble": ensemble,
                    "batch_size": int(batch_size), "max_pixels": int(max_pixels)}
    metadata = {"threshold": threshold, "threshold_method": str(threshold_method), "image_size": int(image_size),
                "max_pixels": int(max_pixels)}
    if ensemble is not None:
        metadata["ensemble_kind"] = ensemble["kind"]
        metadata["members"] = list(ensemble["members"])

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if ensemble is not None:
            artifacts[ENSEMBLE_ARTIFACT] = str(tracking.write_json(ensemble, tmp / "ensemble.json"))
        code = tmp / "code" / PACKAGE_DIR.name
        shutil.copytree(PACKAGE_DIR, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        input_example = None
        if input_example_image is not None:
            input_example = pd.DataFrame({"image": [encode_image_file(input_example_image)]})
        return tracking.log_pyfunc(
            name=name,
            python_model=DeepfakeDetector(),
            artifacts=artifacts,
            model_config=model_config,
            metadata=metadata,
            code_paths=[str(code)],
            signature=detector_signature(threshold, batch_size),
            input_example=input_example,
            registered_model_name=registered_model_name,
        )


# --------------------------------------------------------------------------- prediction on files


def expand_inputs(inputs: Sequence[Path | str]) -> list[Path]:
    """Files as given and, for folders, every file found in them recursively (sorted; whatever
    its suffix, dangling symbolic links and special files included: each gets a row, scored or
    with the error saying why); the order of ``inputs`` is kept. Sub-folders are searched, not
    listed; symbolic links to folders are not followed."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.extend(_walk(p))
        elif p.exists() or p.is_symlink():
            files.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    if not files:
        raise ValueError(f"no files found in {[str(i) for i in inputs]}")
    return files


def _walk(folder: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):  # does not follow links to folders
        found.extend(Path(dirpath) / name for name in filenames)
        # a link to a folder is listed in dirnames: give it a row too (it is not searched)
        found.extend(Path(dirpath) / name for name in dirnames if os.path.islink(os.path.join(dirpath, name)))
    return sorted(found)


def model_threshold(model_uri: str) -> float:
    """The threshold a logged detector carries (its metadata)."""
    from mlflow.models import get_model_info

    metadata = get_model_info(model_uri).metadata or {}
    if "threshold" not in metadata:
        raise ValueError(f"{model_uri} carries no 'threshold' in its metadata: not a detector from log_detector?")
    return float(metadata["threshold"])


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="img")


def _onnx_sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


class OnnxDetector:
    """An ONNX file from :func:`export_model` run by onnxruntime (CPU), with its sidecar JSON."""

    def __init__(self, path: Path | str, threshold: float | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.path}")
        self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        sidecar = _onnx_sidecar(self.path)
        info = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        size = info.get("image_size") or inp.shape[1]
        if not isinstance(size, int):
            raise ValueError(f"{self.path}: no image size in {sidecar.name} nor in the input shape {inp.shape}")
        self.image_size = int(size)
        self.max_pixels = int(info.get("max_pixels") or MAX_PIXELS)
        if threshold is not None:
            self.threshold = float(threshold)
        elif info.get("threshold") is not None:
            self.threshold = float(info["threshold"])
        else:
            warnings.warn(
                f"{sidecar} {'has no threshold' if sidecar.is_file() else 'is missing'}: using {DEFAULT_THRESHOLD}",
                stacklevel=2,
            )
            self.threshold = DEFAULT_THRESHOLD

    def predict_pixels(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]
        return np.clip(np.asarray(out, dtype=np.float64).reshape(-1), 0.0, 1.0)

    def predict(self, model_input: pd.DataFrame, threshold: float | None = None) -> pd.DataFrame:
        """Rows as the pyfunc detector's; ``path`` rows are read (in-process use only)."""
        probabilities, errors, warnings_ = score_rows(
            model_input, [self.image_size], lambda pixels: self.predict_pixels(pixels[self.image_size]),
            access=PathAccess(True, None, _max_bytes_setting()), max_pixels=self.max_pixels)
        return result_frame(probabilities, errors, self.threshold if threshold is None else threshold, warnings_)


def predict_files(
    model_uri: str,
    inputs: Sequence[Path | str],
    *,
    threshold: float | None = None,
    runtime: str = "keras",
    batch_size: int = 64,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per file: ``path``, ``probability_fake``, ``label``, ``threshold``, ``error``,
    ``warning``.

    ``inputs``: files and folders (every file in them, recursively, sorted: see
    :func:`expand_inputs`; one that is no usable image gets its error), in the given order. ``runtime="keras"``: ``model_uri`` is a logged detector (``models:/...``,
    ``runs:/...`` or a local model folder) and the threshold defaults to the one it carries.
    ``runtime="onnx"``: ``model_uri`` is an ``.onnx`` file from :func:`export_model`, the
    threshold defaults to its sidecar JSON's (0.5 with a warning without one). ``threshold``
    overrides either.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {RUNTIMES}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    files = expand_inputs(inputs)
    if runtime == "onnx":
        detector = OnnxDetector(model_uri, threshold)

        def run(frame):
            return detector.predict(frame)
    else:
        model = mlflow.pyfunc.load_model(model_uri)
        if threshold is None:
            threshold = model_threshold(model_uri)
        params = {"threshold": float(threshold), "batch_size": int(batch_size)}

        def run(frame):
            with local_files():  # our own files, named by the caller: read them in process
                return model.predict(frame, params=params)

    frames = []
    with _progress(len(files), progress, f"predict ({runtime})") as bar:
        for start in range(0, len(files), batch_size):
            chunk = [str(f) for f in files[start : start + batch_size]]
            frames.append(run(pd.DataFrame({"path": chunk})))
            bar.update(len(chunk))
    result = pd.concat(frames, ignore_index=True)
    result.insert(0, "path", [str(f) for f in files])
    return result


# --------------------------------------------------------------------------- export


def load_keras_members(model_uri_or_keras_path: str | Path) -> tuple[list, dict]:
    """The Keras model(s) of a logged detector (or of a ``.keras`` file) and its metadata."""
    import keras

    source = str(model_uri_or_keras_path)
    if source.endswith(".keras"):
        if not Path(source).is_file():
            raise FileNotFoundError(f"Keras model file not found: {source}")
        return [keras.models.load_model(source, compile=False)], {}
    from mlflow.models import Model

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source))
    meta = Model.load(str(local / "MLmodel"))
    flavor = meta.flavors.get("python_function", {})
    artifacts = flavor.get("artifacts") or {}
    keys = _member_keys(artifacts)
    if not keys:
        raise ValueError(f"{source} is not a detector logged by log_detector (no {MEMBER_PREFIX}<i> artifacts)")
    models = [keras.models.load_model(str(local / artifacts[k]["path"]), compile=False) for k in keys]
    return models, dict(meta.metadata or {})


def export_model(model_uri_or_keras_path: str | Path, fmt: str, out: Path | str, *, threshold: float | None = None) -> Path:
    """Export a single-model detector (or a ``.keras`` file) as a TF SavedModel or ONNX.

    ``savedmodel``: ``model.export(out, format="tf_saved_model")`` (a folder; its ``serve``
    endpoint takes float32 pixels ``(n, S, S, 3)`` in [0, 255]). ``onnx``: ``tf2onnx`` at opset
    17, one input (float32 ``(n, S, S, 3)`` pixels) and one output ``(n, 1)`` P(fake). Either way
    a sidecar ``<out>.json`` records ``threshold`` (the detector's, ``threshold=`` overrides,
    ``null`` for a bare ``.keras`` file), ``image_size``, ``input_name`` and the source.
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
    size = _input_size(model)
    if threshold is None and metadata.get("threshold") is not None:
        threshold = float(metadata["threshold"])
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
        "threshold_method": metadata.get("threshold_method"),
        "max_pixels": int(metadata.get("max_pixels") or MAX_PIXELS),
    }
    from deepfake_detection import tracking

    tracking.write_json(sidecar, _onnx_sidecar(out))
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
