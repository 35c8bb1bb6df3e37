"""Prediction on image files and folders: :func:`predict_files` with a logged detector (Keras)
or an exported ONNX file (:class:`OnnxDetector`, onnxruntime).

Every file found gets a row (:func:`expand_inputs`), scored or with the reason it is not; the
rows are those of :class:`~deepfake_detection.serving.pyfunc.DeepfakeDetector`. The caller names
its own files, so they are read in process (:func:`~deepfake_detection.serving.io.local_files`).
With faces on (``faces=True``, or the model's own flag), every face of a file gets a row, with
its box (:mod:`deepfake_detection.serving.face_rows`).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from deepfake_detection.serving.export import onnx_sidecar
from deepfake_detection.serving.face_rows import score_faces
from deepfake_detection.serving.io import PathAccess, local_files, max_bytes_setting
from deepfake_detection.serving.pyfunc import MAX_BATCH_SIZE
from deepfake_detection.serving.rows import result_frame, score_rows
from deepfake_detection.serving.settings import DEFAULT_THRESHOLD, DetectorSettings

RUNTIMES = ("keras", "onnx")


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

    settings = DetectorSettings.from_metadata(get_model_info(model_uri).metadata)
    if not settings.has_threshold:
        raise ValueError(f"{model_uri} carries no 'threshold' in its metadata: not a detector from log_detector?")
    return settings.threshold


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="img")


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
        sidecar = onnx_sidecar(self.path)
        info = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        settings = DetectorSettings.from_metadata(info)
        size = settings.image_size or inp.shape[1]
        if not isinstance(size, int):
            raise ValueError(f"{self.path}: no image size in {sidecar.name} nor in the input shape {inp.shape}")
        self.image_size = int(size)
        self.max_pixels = settings.max_pixels
        self.faces = settings.faces
        self.face_settings = settings.face_settings
        self.view = settings.view
        if threshold is not None:
            self.threshold = float(threshold)
        else:
            if not settings.has_threshold:
                warnings.warn(
                    f"{sidecar} {'has no threshold' if sidecar.is_file() else 'is missing'}: using {DEFAULT_THRESHOLD}",
                    stacklevel=2,
                )
            self.threshold = settings.threshold

    def predict_pixels(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]
        return np.clip(np.asarray(out, dtype=np.float64).reshape(-1), 0.0, 1.0)

    def predict(
        self, model_input: pd.DataFrame, threshold: float | None = None, faces: bool | None = None
    ) -> pd.DataFrame:
        """Rows as the pyfunc detector's; ``path`` rows are read (in-process use only). ``faces``
        (default: the sidecar's flag): one row per face, as the pyfunc detector's."""
        from deepfake_detection.data.views import scorer  # TensorFlow: only when the model predicts

        threshold = self.threshold if threshold is None else threshold
        access = PathAccess(True, None, max_bytes_setting())

        def score(pixels):
            return self.predict_pixels(pixels[self.image_size])

        view = scorer(self.view)
        if view.native:  # the network scores crops: an image is its grid of them
            if faces:
                raise ValueError("this ONNX model scores grids of native-resolution crops (view: patches), not faces")
            probabilities, errors, warnings_ = score_rows(
                model_input,
                [self.image_size],
                lambda images: view.score_images(self.predict_pixels, images, self.image_size),
                access=access,
                max_pixels=self.max_pixels,
                native=True,
            )
            return result_frame(probabilities, errors, threshold, warnings_)
        if self.faces if faces is None else faces:
            return score_faces(
                model_input,
                [self.image_size],
                score,
                threshold,
                self.face_settings,
                access=access,
                max_pixels=self.max_pixels,
            )
        probabilities, errors, warnings_ = score_rows(
            model_input, [self.image_size], score, access=access, max_pixels=self.max_pixels
        )
        return result_frame(probabilities, errors, threshold, warnings_)


def predict_files(
    model_uri: str,
    inputs: Sequence[Path | str],
    *,
    threshold: float | None = None,
    runtime: str = "keras",
    batch_size: int = 64,
    progress: bool = True,
    faces: bool | None = None,
) -> pd.DataFrame:
    """One row per file: ``path``, ``probability_fake``, ``label``, ``threshold``, ``error``,
    ``warning``; with faces on, one row per face: ``path``, then the columns of
    :data:`~deepfake_detection.serving.face_rows.FACE_OUTPUT_COLUMNS` (``input`` is the file's
    index in the list of files), and one row for a file without a face (its ``error`` says so).

    ``inputs``: files and folders (every file in them, recursively, sorted: see
    :func:`expand_inputs`; one that is no usable image gets its error), in the given order.
    ``runtime="keras"``: ``model_uri`` is a logged detector (``models:/...``,
    ``runs:/...`` or a local model folder) and the threshold defaults to the one it carries.
    ``runtime="onnx"``: ``model_uri`` is an ``.onnx`` file from :func:`export_model`, the
    threshold defaults to its sidecar JSON's (0.5 with a warning without one). ``threshold``
    overrides either. ``faces``: True/False overrides the model's own flag (its metadata, or
    the ONNX sidecar's ``faces``), None keeps it.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {RUNTIMES}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    files = expand_inputs(inputs)
    if runtime == "onnx":
        detector = OnnxDetector(model_uri, threshold)

        def run(frame):
            return detector.predict(frame, faces=faces)
    else:
        model = mlflow.pyfunc.load_model(model_uri)
        if threshold is None:
            threshold = model_threshold(model_uri)
        # the pyfunc caps one forward batch (a request's memory); larger CLI chunks still work
        params = {"threshold": float(threshold), "batch_size": min(int(batch_size), MAX_BATCH_SIZE)}
        if faces is not None:
            params["faces"] = bool(faces)

        def run(frame):
            with local_files():  # our own files, named by the caller: read them in process
                return model.predict(frame, params=params)

    frames = []
    with _progress(len(files), progress, f"predict ({runtime})") as bar:
        for start in range(0, len(files), batch_size):
            chunk = [str(f) for f in files[start : start + batch_size]]
            frame = run(pd.DataFrame({"path": chunk}))
            if "input" in frame.columns:  # faces: rows per face, each naming its input row
                frame["input"] = frame["input"] + start
            frames.append(frame)
            bar.update(len(chunk))
    result = pd.concat(frames, ignore_index=True)
    rows = result["input"].tolist() if "input" in result.columns else range(len(files))
    result.insert(0, "path", [str(files[i]) for i in rows])
    return result
