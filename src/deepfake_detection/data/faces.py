"""Face detection and cropping: the one place that finds faces and cuts them out.

Used by ``ingest --faces`` (training data), ``predict --faces`` and the pyfunc model (a
``faces`` flag in the model's metadata), and ``explain --faces``. Training and inference call
the same :func:`crop_faces`, so a model sees at inference the crops it was trained on.

The detector is MTCNN (the ``mtcnn`` package, MIT licence): its P/R/O-net weights ship inside
the wheel, so it works offline. It is built once per process, on first use.

A crop is a square around the detected box, grown by ``margin`` (a fraction of the box's
longer side on each side), shifted to stay inside the image where it can, clipped where it
cannot, and resized to ``size`` pixels (bilinear, antialiased when shrinking).
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..config import MIN_DETECTABLE_SIDE, FacesParams

NO_FACE = "no face found"
"""The message of an image in which the detector found no face (a row error, an ingest reason)."""

DETECT_MAX_SIDE = 1024
"""A larger photo is searched at this longer side (the boxes mapped back, the crop cut from the
full-resolution photo): MTCNN's time grows with the pixel count, and a face too small to find at
1024 px is too small to judge."""


DEFAULT_SETTINGS = FacesParams()


@dataclass(frozen=True)
class Face:
    """One detected face: its box ``(x, y, w, h)`` in the image's pixels, and the crop taken
    around it ``(left, top, right, bottom)`` (what the model sees, margin included)."""

    box: tuple[int, int, int, int]
    confidence: float
    crop_box: tuple[int, int, int, int]

    def as_dict(self) -> dict:
        x, y, w, h = self.box
        left, top, right, bottom = self.crop_box
        return {
            "face_x": x,
            "face_y": y,
            "face_w": w,
            "face_h": h,
            "face_confidence": round(self.confidence, 6),
            "crop_left": left,
            "crop_top": top,
            "crop_right": right,
            "crop_bottom": bottom,
        }


_LOCK = threading.Lock()  # MTCNN's Keras models are not safe to build or call from two threads


@functools.cache
def _detector():
    from mtcnn import MTCNN  # mtcnn (and TensorFlow): only when faces are detected

    logging.getLogger("mtcnn").setLevel(logging.ERROR)
    return MTCNN(device="CPU:0")


def crop_box(box: tuple[int, int, int, int], width: int, height: int, margin: float) -> tuple[int, int, int, int]:
    """The square ``(left, top, right, bottom)`` cut around ``box`` = ``(x, y, w, h)``: side
    ``max(w, h) * (1 + 2 * margin)``, centred on the box, moved inside the image where it fits
    and clipped to it where it does not (then it is no longer square)."""
    x, y, w, h = box
    side = max(w, h) * (1 + 2 * margin)
    side = max(1, round(min(side, max(width, height))))
    cx, cy = x + w / 2, y + h / 2
    left = round(cx - side / 2)
    top = round(cy - side / 2)
    left = min(max(left, 0), max(width - side, 0))
    top = min(max(top, 0), max(height - side, 0))
    return left, top, min(left + side, width), min(top + side, height)


def detect_faces(rgb: np.ndarray, settings: FacesParams = DEFAULT_SETTINGS) -> list[Face]:
    """Every face in an ``H x W x 3`` uint8 RGB image with confidence at least
    ``settings.min_confidence``, largest first. An image too small to hold a face gives ``[]``."""
    rgb = _check_rgb(rgb)
    height, width = rgb.shape[:2]
    if min(height, width) < MIN_DETECTABLE_SIDE:
        return []
    scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
    searched = rgb
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        searched = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
        if min(searched.shape[:2]) < MIN_DETECTABLE_SIDE:
            return []
    min_face = max(MIN_DETECTABLE_SIDE, round(settings.min_face_size * scale))
    with _LOCK:
        found = _detector().detect_faces(searched, min_face_size=min_face)
    faces = []
    for item in found:
        if item["confidence"] < settings.min_confidence:
            continue
        x, y, w, h = (int(round(v / scale)) for v in item["box"])
        x, y = max(x, 0), max(y, 0)
        w, h = min(w, width - x), min(h, height - y)
        if w <= 0 or h <= 0:
            continue
        faces.append(
            Face((x, y, w, h), float(item["confidence"]), crop_box((x, y, w, h), width, height, settings.margin))
        )
    return sorted(faces, key=lambda f: (-f.box[2] * f.box[3], f.box[1], f.box[0]))


def cut(rgb: np.ndarray, face: Face, size: int) -> np.ndarray:
    """The face's crop box cut from ``rgb`` and resized to ``size x size`` (uint8 RGB)."""
    left, top, right, bottom = face.crop_box
    crop = Image.fromarray(_check_rgb(rgb)[top:bottom, left:right])
    return np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR))


def crop_faces(rgb: np.ndarray, size: int, settings: FacesParams = DEFAULT_SETTINGS) -> list[tuple[Face, np.ndarray]]:
    """Every face found in ``rgb``, largest first, each with its ``size x size`` crop: what
    ``ingest --faces`` writes (the largest) and what inference scores (each one)."""
    return [(face, cut(rgb, face, size)) for face in detect_faces(rgb, settings)]


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 RGB image, got shape {rgb.shape} and dtype {rgb.dtype}")
    return rgb
