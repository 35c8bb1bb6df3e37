"""The MLflow pyfunc detector: :class:`DeepfakeDetector`, how it scores rows, and :func:`log_detector`.

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
fails the batch. Rows are read by :mod:`deepfake_detection.serving.io` (which ``path`` rows may be
read: :func:`~deepfake_detection.serving.io.path_access`), checked from their header and decoded
by :mod:`deepfake_detection.data.decode` (the training pipeline's ``decode_resize``).

With faces on (the ``faces`` flag of the model's config and metadata, set at logging time; a
request's ``faces`` param overrides it), each photo gives one row per face found instead, with
the face's box in front of these columns, or one row whose ``error`` says no face was found:
see :mod:`deepfake_detection.serving.faces`.

The logged model folder carries this package (``code/deepfake_detection``), so it loads where
the package is not installed (``mlflow models serve --env-manager local`` included). Its pickle
names the class ``deepfake_detection.serving.pyfunc.DeepfakeDetector``; models logged before
the ``serving`` package existed name ``deepfake_detection.inference.DeepfakeDetector``, which
:mod:`deepfake_detection.inference` still provides.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from deepfake_detection import LABELS
from deepfake_detection.data import decode
from deepfake_detection.data.images import MAX_PIXELS
from deepfake_detection.serving.io import LOCAL_ACCESS, PathAccess, encode_image_file, path_access, read_inputs

_logger = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("probability_fake", "label", "threshold", "error", "warning")
MEMBER_PREFIX = "member_"
ENSEMBLE_ARTIFACT = "ensemble"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
"""The ``deepfake_detection`` package folder, copied into every logged model."""
DEFAULT_THRESHOLD = 0.5


# --------------------------------------------------------------------------- scoring rows


SCORE_CHUNK = 256
"""Rows decoded and scored together: the decoded pixels of one chunk at a time are held
(256 x 128² x 3 float32 = 50 MB at 128 px), however many rows a request has."""


def score_rows(
    model_input: pd.DataFrame,
    sizes: Sequence[int],
    score: Callable[[dict[int, np.ndarray]], np.ndarray],
    *,
    access: PathAccess = LOCAL_ACCESS,
    max_pixels: int = MAX_PIXELS,
    native: bool = False,
) -> tuple[np.ndarray, list[str | None], list[str | None]]:
    """Read (:func:`read_inputs` with ``access``), check (:func:`check_images` with
    ``max_pixels`` and the request's pixel budget ``access.request_pixels``) and decode every row
    (once per input size in ``sizes``) and ``score`` the decodable ones (pixels keyed by size
    -> P(fake)), :data:`SCORE_CHUNK` rows at a time. Returns P(fake), NaN where a row failed,
    one error message or None per row (a bad row never fails the batch) and one warning or
    None per row. ``native`` (the patch view): rows are decoded at their own resolution and
    ``score`` gets the list of ``(h, w, 3)`` images instead (``sizes`` is not used)."""
    contents, errors = read_inputs(model_input, access)
    header_errors, warnings_ = decode.check_images(
        [c if e is None else None for c, e in zip(contents, errors)], max_pixels, access.request_pixels
    )
    errors = [e or h for e, h in zip(errors, header_errors)]
    ok = [i for i, e in enumerate(errors) if e is None]
    probabilities = np.full(len(contents), np.nan)
    for start in range(0, len(ok), SCORE_CHUNK):
        _score_chunk(ok[start : start + SCORE_CHUNK], contents, errors, probabilities, sizes, score, native)
    warnings_ = [None if e else w for e, w in zip(errors, warnings_)]
    return probabilities, errors, warnings_


def _score_chunk(rows, contents, errors, probabilities, sizes, score, native) -> None:
    """Decode and score the rows ``rows`` (indices), filling ``errors`` and ``probabilities``."""
    if native:
        images, decode_errors = decode.decode_native([contents[i] for i in rows])
        for i, e in zip(rows, decode_errors):
            errors[i] = errors[i] or e
        good = [j for j, i in enumerate(rows) if errors[i] is None]
        if good:
            probabilities[[rows[j] for j in good]] = score([images[j] for j in good])
        return
    pixels = {}
    for size in sorted(set(sizes)):
        pixels[size], decode_errors = decode.decode_checked([contents[i] for i in rows], size)
        for i, e in zip(rows, decode_errors):
            errors[i] = errors[i] or e
    good = [j for j, i in enumerate(rows) if errors[i] is None]
    if good:
        probabilities[[rows[j] for j in good]] = score({s: x[good] for s, x in pixels.items()})


def result_frame(
    probabilities: np.ndarray,
    errors: Sequence[str | None],
    threshold: float,
    warnings: Sequence[str | None] | None = None,
) -> pd.DataFrame:
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

    from deepfake_detection.models.saved import load_model

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


def _forward(model, size: int | None):
    """``model(x, training=False)`` compiled once for any batch size (no retracing per size); a
    model of any input size (``size`` None) once for every image size."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)], reduce_retracing=True)
    def forward(x):
        return model(x, training=False)

    return lambda x: forward(tf.convert_to_tensor(x, dtype=tf.float32))


class DeepfakeDetector(mlflow.pyfunc.PythonModel):
    """Keras model(s) + threshold (+ ensemble) behind MLflow's pyfunc interface.

    Artifacts: ``member_0``, ``member_1``, ... (``.keras`` files) and, optionally,
    ``ensemble`` (JSON). ``model_config``: ``threshold``, ``image_size``, ``ensemble`` (the
    ensemble's ``to_dict()`` or None), ``batch_size`` and ``max_pixels`` (the pixel limit
    checked from each image's header), ``faces`` (score every face of a photo, see
    :mod:`~deepfake_detection.serving.faces`) and ``face_settings``. Each member gets images
    at its own input size (read from the model), face crops included. ``path`` rows are read
    only as :func:`path_access` allows.
    """

    def load_context(self, context) -> None:
        config = dict(context.model_config or {})
        keys = member_keys(context.artifacts)
        if not keys:
            raise MlflowException(
                f"no '{MEMBER_PREFIX}<i>' Keras model among the artifacts {sorted(context.artifacts)}"
            )
        self.models = [load_member(context.artifacts[k], k) for k in keys]
        self.sizes = [input_size(m) for m in self.models]
        self._forwards = [_forward(m, s) for m, s in zip(self.models, self.sizes)]
        self.threshold = float(config.get("threshold", DEFAULT_THRESHOLD))
        self.batch_size = int(config.get("batch_size") or 64)
        self.image_size = int(config.get("image_size") or self.sizes[0])
        self.max_pixels = int(config.get("max_pixels") or MAX_PIXELS)
        self.faces = bool(config.get("faces", False))
        self.face_settings = config.get("face_settings")  # a FacesParams.model_dump(), or None
        self.view = config.get("view") or "resize"  # models logged before the patch view: resize
        self.patch_size = int(config.get("patch_size") or self.sizes[0] or 0)
        self.member_views = list(config.get("member_views") or [self.view] * len(self.models))
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

    def member_probabilities(self, pixels: dict[int, np.ndarray], batch_size: int | None = None) -> np.ndarray:
        """Each member's P(fake) ``(n, k)`` from decoded pixels keyed by image size."""
        bs = int(batch_size or self.batch_size)
        columns = []
        for forward, size in zip(self._forwards, self.sizes):
            x = pixels[size]
            out = [forward(x[i : i + bs]).numpy().reshape(-1) for i in range(0, len(x), bs)]
            columns.append(np.concatenate(out) if out else np.zeros(0, np.float32))
        return np.clip(np.stack(columns, axis=1).astype(np.float64), 0.0, 1.0)

    def combine(self, P: np.ndarray) -> np.ndarray:
        """P(fake) ``(n,)`` of the detector from its members' ``(n, k)``."""
        if self.ensemble is None:
            return P[:, 0]
        return np.asarray(self.ensemble.predict(P), dtype=np.float64)

    def predict_pixels(self, pixels: dict[int, np.ndarray], batch_size: int | None = None) -> np.ndarray:
        """P(fake) ``(n,)`` from decoded pixels keyed by image size (one entry per member size)."""
        return self.combine(self.member_probabilities(pixels, batch_size))

    def predict_native(self, images: Sequence[np.ndarray], batch_size: int | None = None) -> np.ndarray:
        """P(fake) ``(n,)`` of images decoded at native resolution, each member under its own view
        (``member_views``): ``resize`` members get the image resized to their input (the training
        pipeline's ``resize``: the pixels ``decode_resize`` gives), ``patches`` members score its
        grid of crops (``views.score_crops``, as evaluation does), ``native`` members the whole
        image; then the members' scores are combined."""
        bs = int(batch_size or self.batch_size)
        columns = [
            self._member_scores(forward, size, view, images, bs)
            for forward, size, view in zip(self._forwards, self.sizes, self._views())
        ]
        return self.combine(np.clip(np.stack(columns, axis=1), 0.0, 1.0))

    def _member_scores(self, forward, size: int | None, view: str, images: Sequence[np.ndarray], bs: int):
        """One member's P(fake) ``(n,)`` of native-resolution images under its view."""
        from deepfake_detection.data.pipeline import resize
        from deepfake_detection.data.views import score_crops

        def predict(x):
            return forward(x).numpy()

        if view == "resize":
            pixels = np.stack([resize(image, size).numpy() for image in images])
            out = [predict(pixels[i : i + bs]).reshape(-1) for i in range(0, len(pixels), bs)]
            return np.concatenate(out).astype(np.float64)
        if view == "patches":
            return np.array([score_crops(predict, image, self.patch_size) for image in images], dtype=np.float64)
        return np.array([float(predict(image[np.newaxis]).reshape(-1)[0]) for image in images], dtype=np.float64)

    def _views(self) -> list[str]:
        """Each member's view (models logged before per-member views: the detector's ``view``)."""
        return getattr(self, "member_views", None) or [getattr(self, "view", "resize")] * len(self.models)

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        params = params or {}
        threshold = self.threshold if params.get("threshold") is None else threshold_param(params["threshold"])
        faces = getattr(self, "faces", False) if params.get("faces") is None else faces_param(params["faces"])
        batch_size = None if params.get("batch_size") is None else batch_size_param(params["batch_size"])

        def score(pixels):
            return self.predict_pixels(pixels, batch_size)

        max_pixels = getattr(self, "max_pixels", MAX_PIXELS)
        if any(view != "resize" for view in self._views()):
            if faces:
                from deepfake_detection.serving.io import InvalidInputError

                raise InvalidInputError(
                    "this detector scores whole images at native resolution (a grid of crops, or the whole "
                    "image for a forensic network); it does not score face crops: send faces=false"
                )
            probabilities, errors, warnings_ = score_rows(
                model_input,
                self.sizes,
                lambda images: self.predict_native(images, batch_size),
                access=path_access(),
                max_pixels=max_pixels,
                native=True,
            )
            return result_frame(probabilities, errors, threshold, warnings_)
        if faces:
            from deepfake_detection.serving.faces import face_settings, score_faces

            settings = face_settings(getattr(self, "face_settings", None))
            return score_faces(
                model_input, self.sizes, score, threshold, settings, access=path_access(), max_pixels=max_pixels
            )
        probabilities, errors, warnings_ = score_rows(
            model_input, self.sizes, score, access=path_access(), max_pixels=max_pixels
        )
        return result_frame(probabilities, errors, threshold, warnings_)


MAX_BATCH_SIZE = 1024
"""The largest ``batch_size`` a request may ask for (a bound on the memory one request can take)."""


def threshold_param(value) -> float:
    """A request's ``threshold`` param: a number from 0 to 1 (a probability of fake)."""
    from deepfake_detection.serving.io import InvalidInputError

    try:
        threshold = float(value)
    except (TypeError, ValueError):
        threshold = float("nan")
    if not 0.0 <= threshold <= 1.0:  # NaN fails too
        raise InvalidInputError(
            f"the 'threshold' param must be a number from 0 to 1 (the P(fake) at and above which a row "
            f"is labelled fake), got {value!r}"
        )
    return threshold


def batch_size_param(value) -> int:
    """A request's ``batch_size`` param: a whole number from 1 to :data:`MAX_BATCH_SIZE`."""
    from deepfake_detection.serving.io import InvalidInputError

    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or not 1 <= int(value) <= MAX_BATCH_SIZE:
        raise InvalidInputError(
            f"the 'batch_size' param must be a whole number from 1 to {MAX_BATCH_SIZE}, got {value!r}"
        )
    return int(value)


def faces_param(value) -> bool:
    """A request's ``faces`` param as a bool (MLflow gives a bool; JSON text too is taken)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    from deepfake_detection.serving.io import InvalidInputError

    raise InvalidInputError(f"the 'faces' param must be true or false, got {value!r}")


# --------------------------------------------------------------------------- logging


def detector_signature(threshold: float = DEFAULT_THRESHOLD, batch_size: int = 64, faces: bool = False):
    """Input: optional string columns ``path`` and ``image`` (give either); params ``threshold``,
    ``batch_size`` and ``faces`` (defaults: the logged ones); output: the face columns, present
    only with faces on (optional: ``input``, ``face``, the box and ``face_confidence``), then the
    five result columns."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema

    from deepfake_detection.serving.faces import BOX_COLUMNS

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
    faces: bool = False,
    face_settings=None,
    view: str = "resize",
    member_views: Sequence[str] | None = None,
):
    """Log a :class:`DeepfakeDetector` to the active run; return MLflow's ``ModelInfo``.

    ``keras_paths``: one ``.keras`` model, or the ensemble's members in the order of
    ``ensemble["members"]`` (an ``Ensemble.to_dict()``, required for more than one).
    ``threshold`` (in [0, 1]) goes to the model config and, with ``threshold_method`` and
    ``image_size``, to the model's metadata. ``input_example_image`` (an image file) is stored
    base64-encoded as the input example (MLflow then also checks that it serves).
    ``max_pixels``: the largest image (width x height) the detector decodes; in the model
    config and the metadata. ``faces`` (on when the model was trained on face crops): score
    every face of a photo by default (the ``faces`` request param overrides it);
    ``face_settings`` (a :class:`~deepfake_detection.data.faces.FaceSettings`, its
    ``model_dump()``, or None for the defaults): how faces are found and cut. Both go to the model
    config and the metadata (``faces``, ``face_settings``). ``view`` (``data.view``):
    ``resize`` scores the whole image resized to the members' input, ``patches`` the grid of
    native-resolution crops of the members' input size (``patch_size`` in the config and the
    metadata; it does not combine with ``faces``). ``member_views``: one view per member where
    they differ (``views.view_of``: a forensic member is ``native``, scored whole at its own
    resolution); default ``view`` for every member.
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
            raise ValueError(
                f"the ensemble names {len(ensemble['members'])} members but {len(paths)} models were given"
            )
    elif len(paths) > 1:
        raise ValueError(f"{len(paths)} models need an ensemble description to combine them")

    from deepfake_detection.data.views import VIEWS

    member_views = list(member_views or [view] * len(paths))
    if len(member_views) != len(paths):
        raise ValueError(f"{len(member_views)} member views given for {len(paths)} models")
    for v in [view, *member_views]:
        if v not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, not {v!r}")
    if view == "patches" and faces:
        raise ValueError(
            "the patch view scores native-resolution crops of whole images: it does not combine with faces"
        )
    if faces and any(v != "resize" for v in member_views):
        raise ValueError(
            "faces are scored resized: a native-resolution member (patches or native view) cannot score them"
        )
    artifacts = {f"{MEMBER_PREFIX}{i}": str(p) for i, p in enumerate(paths)}
    if int(max_pixels) < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    from deepfake_detection.serving.faces import face_settings as _face_settings

    settings = _face_settings(face_settings).model_dump()
    faces = bool(faces)
    model_config = {
        "threshold": threshold,
        "image_size": int(image_size),
        "ensemble": ensemble,
        "batch_size": int(batch_size),
        "max_pixels": int(max_pixels),
        "faces": faces,
        "face_settings": settings,
        "view": view,
        "member_views": member_views,
    }
    metadata = {
        "threshold": threshold,
        "threshold_method": str(threshold_method),
        "image_size": int(image_size),
        "max_pixels": int(max_pixels),
        "faces": faces,
        "face_settings": settings,
        "view": view,
        "member_views": member_views,
    }
    if "patches" in member_views:
        from deepfake_detection.models.saved import load_model

        sizes = {input_size(load_model(p)) for p, v in zip(paths, member_views) if v == "patches"}
        if len(sizes) != 1:
            raise ValueError(f"the patch view needs members of one input size (the patch), got {sorted(sizes)}")
        model_config["patch_size"] = metadata["patch_size"] = sizes.pop()
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
            signature=detector_signature(threshold, batch_size, faces),
            input_example=input_example,
            registered_model_name=registered_model_name,
        )


# --------------------------------------------------------------------------- loading the Keras models back


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
