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
see :mod:`deepfake_detection.serving.face_rows`.

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from deepfake_detection import tracking
from deepfake_detection.data.images import MAX_PIXELS
from deepfake_detection.serving import settings as detector_settings
from deepfake_detection.serving.face_rows import score_faces
from deepfake_detection.serving.io import InvalidInputError, encode_image_file, path_access
from deepfake_detection.serving.logged import (  # noqa: F401  (detector_signature re-exported)
    checked_ensemble,
    checked_views,
    detector_config,
    detector_signature,
    keras_files,
)
from deepfake_detection.serving.members import (  # noqa: F401  (load_keras_* re-exported)
    ENSEMBLE_ARTIFACT,
    MEMBER_PREFIX,
    compiled_forward,
    input_size,
    load_keras_detector,
    load_keras_members,
    load_member,
    member_keys,
)
from deepfake_detection.serving.rows import OUTPUT_COLUMNS, SCORE_CHUNK, result_frame, score_rows  # noqa: F401
from deepfake_detection.serving.settings import DEFAULT_THRESHOLD, DetectorSettings  # noqa: F401  (re-exported)

_logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parents[1]
"""The ``deepfake_detection`` package folder, copied into every logged model."""


# --------------------------------------------------------------------------- the pyfunc model


class DeepfakeDetector(mlflow.pyfunc.PythonModel):
    """Keras model(s) + threshold (+ ensemble) behind MLflow's pyfunc interface.

    Artifacts: ``member_0``, ``member_1``, ... (``.keras`` files) and, optionally,
    ``ensemble`` (JSON). ``model_config``: ``threshold``, ``image_size``, ``ensemble`` (the
    ensemble's ``to_dict()`` or None), ``batch_size`` and ``max_pixels`` (the pixel limit
    checked from each image's header), ``faces`` (score every face of a photo, see
    :mod:`~deepfake_detection.serving.face_rows`) and ``face_settings``. Each member gets images
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
        self._forwards = [compiled_forward(m, s) for m, s in zip(self.models, self.sizes)]
        settings = DetectorSettings.from_metadata(config)
        self.threshold = settings.threshold
        self.batch_size = settings.batch_size
        self.image_size = settings.image_size or int(self.sizes[0])
        self.max_pixels = settings.max_pixels
        self.faces = settings.faces
        self.face_settings = settings.face_settings
        self.view = settings.view
        self.patch_size = settings.patch_size or self.sizes[0] or 0
        self.member_views = settings.views(len(self.models))
        access = path_access()  # a wrong DEEPFAKE_SERVE_PATH_ROOT stops a server from starting
        if access.root is not None:
            _logger.info("path rows may name files inside %s (at most %s bytes)", access.root, access.max_bytes)
        description = settings.ensemble
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
        """One member's P(fake) ``(n,)`` of native-resolution images under its view (``views.scorer``:
        a patch member's input size is the patch, checked when the detector was logged)."""
        from deepfake_detection.data.views import scorer

        def predict(x):
            return forward(x).numpy()

        return scorer(view).score_images(predict, images, size, bs)

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
        from deepfake_detection.data.views import scorer  # TensorFlow: only when a detector predicts

        if any(scorer(view).native for view in self._views()):
            if faces:
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
            settings = detector_settings.face_settings(getattr(self, "face_settings", None))
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

    raise InvalidInputError(f"the 'faces' param must be true or false, got {value!r}")


# --------------------------------------------------------------------------- logging


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
    ``face_settings`` (a :class:`~deepfake_detection.config.FacesParams`, its
    ``model_dump()``, or None for the defaults): how faces are found and cut. Both go to the model
    config and the metadata (``faces``, ``face_settings``). ``view`` (``data.view``):
    ``resize`` scores the whole image resized to the members' input, ``patches`` the grid of
    native-resolution crops of the members' input size (``patch_size`` in the config and the
    metadata; it does not combine with ``faces``). ``member_views``: one view per member where
    they differ (``views.view_of``: a forensic member is ``native``, scored whole at its own
    resolution); default ``view`` for every member.
    """

    if mlflow.active_run() is None:
        raise RuntimeError("log_detector logs into the caller's run: call it inside mlflow.start_run() / stage_run()")
    paths = keras_files(keras_paths)
    ensemble = checked_ensemble(ensemble, len(paths))
    member_views = checked_views(view, member_views, len(paths), faces)
    model_config, metadata = detector_config(
        paths,
        threshold,
        image_size,
        ensemble=ensemble,
        threshold_method=threshold_method,
        batch_size=batch_size,
        max_pixels=max_pixels,
        faces=faces,
        faces_params=face_settings,
        view=view,
        member_views=member_views,
    )
    artifacts = {f"{MEMBER_PREFIX}{i}": str(p) for i, p in enumerate(paths)}
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
            signature=detector_signature(model_config["threshold"], batch_size, model_config["faces"]),
            input_example=input_example,
            registered_model_name=registered_model_name,
        )
