"""How a model sees an image (``data.view``), one place for training and scoring.

* ``resize``: the whole image, resized to ``data.image_size`` (antialiased bilinear).
* ``native`` (set by a network, never by ``data.view``: the forensic family): the whole image at
  its own resolution, one image per forward pass; the network takes any size
  (:func:`view_of` gives a model's view).
* ``patches``: no resampling at all. Training sees one random ``data.patch_size`` crop of the
  image at its native resolution; an image is scored on a fixed grid of crops that covers every
  pixel (:func:`grid_origins`), and its score is the sigmoid of the mean of the crops' logits
  (:func:`combine_crop_scores`). Images smaller than a patch are zero-padded to one.

Which of these a model's images go through is decided here only: :data:`SCORERS` (and
:func:`scorer`) holds one :class:`Scorer` per view, which every scoring path uses (the stages,
training's evaluation, the served pyfunc, the ONNX runner, explain): how images are decoded
(resized, or at their own resolution), the batch a network sees for one image, and how an image
is scored. :func:`score_image` is the image-to-score function every scoring path shares, and
:func:`score_encoded` the bytes-to-scores one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from deepfake_detection.config import DataParams
from deepfake_detection.data.decode import decode_checked, decode_native, resize
from deepfake_detection.models.registry import SPECS

VIEWS = ("resize", "patches", "native")
NATIVE_VIEWS = ("patches", "native")
"""The views that decode an image at its own resolution (no resize before the network)."""
_EPS = 1e-7


def view_of(data: DataParams, model: str) -> DataParams:
    """The data settings model ``model`` sees: ``data``, with ``view: native`` for a network whose
    spec asks for it (the forensic family), whatever ``data.view`` says."""
    spec = SPECS.get(model)
    if spec is not None and spec.view is not None:
        return data.model_copy(update={"view": spec.view})
    return data


def is_native(view: str) -> bool:
    """Whether images are decoded at their own resolution for this view."""
    return scorer(view).native


def model_input_size(data: DataParams) -> int:
    """The side of the square a model of this view takes: ``image_size`` or ``patch_size``."""
    return scorer(data.view).input_size(data)


def grid_origins(length: int, patch: int) -> list[int]:
    """Start offsets of ``ceil(length / patch)`` crops of ``patch`` pixels, evenly spread from 0
    to ``length - patch`` (overlapping where ``patch`` does not divide ``length``), so that the
    crops cover every pixel. A side no longer than a patch has one crop at 0."""
    if length < 1 or patch < 1:
        raise ValueError(f"length and patch must be positive, got {length} and {patch}")
    if length <= patch:
        return [0]
    n = math.ceil(length / patch)
    return [round(i * (length - patch) / (n - 1)) for i in range(n)]


def pad_to_patch(image: tf.Tensor, patch: int) -> tf.Tensor:
    """Zero-pad ``(h, w, 3)`` on the bottom/right to at least ``patch`` on each side."""
    shape = tf.shape(image)
    height, width = tf.maximum(shape[0], patch), tf.maximum(shape[1], patch)
    return tf.image.pad_to_bounding_box(image, 0, 0, height, width)


def grid_crops(image: tf.Tensor | np.ndarray, patch: int) -> tf.Tensor:
    """The grid of :func:`grid_origins` crops of one ``(h, w, 3)`` image: ``(n, patch, patch, 3)``,
    row by row."""
    image = pad_to_patch(tf.convert_to_tensor(image), patch)
    height, width = (int(v) for v in image.shape[:2])
    return tf.stack(
        [image[y : y + patch, x : x + patch] for y in grid_origins(height, patch) for x in grid_origins(width, patch)]
    )


def random_crop(image: tf.Tensor, patch: int, seed: tf.Tensor) -> tf.Tensor:
    """One seeded random ``patch`` crop of ``(h, w, 3)`` (graph-safe, for tf.data)."""
    return tf.image.stateless_random_crop(pad_to_patch(image, patch), [patch, patch, 3], seed=seed)


def center_crop(image: tf.Tensor, patch: int) -> tf.Tensor:
    """The central ``patch`` crop of ``(h, w, 3)`` (graph-safe; validation during training)."""
    image = pad_to_patch(image, patch)
    shape = tf.shape(image)
    top, left = (shape[0] - patch) // 2, (shape[1] - patch) // 2
    return image[top : top + patch, left : left + patch]


def combine_crop_scores(probabilities: np.ndarray) -> float:
    """P(fake) of an image from its crops' P(fake): the sigmoid of the mean crop logit."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64).reshape(-1), _EPS, 1 - _EPS)
    mean_logit = float(np.mean(np.log(p) - np.log1p(-p)))
    return float(1.0 / (1.0 + math.exp(-mean_logit)))


def score_image(predict: Callable[[np.ndarray], np.ndarray], image: tf.Tensor | np.ndarray, data: DataParams) -> float:
    """P(fake) of one decoded ``(h, w, 3)`` float32 image in [0, 255] under ``data.view``.

    ``predict`` maps a batch ``(n, s, s, 3)`` to P(fake) ``(n,)`` or ``(n, 1)``. With ``resize``
    the image must already be at ``image_size`` (the decoders resize); with ``patches`` it is at
    native resolution and is scored by :func:`grid_crops` and :func:`combine_crop_scores`; with
    ``native`` it is at native resolution and goes to ``predict`` whole (:data:`SCORERS`).
    """
    view = scorer(data.view)
    return view.score_image(predict, image, view.input_size(data))


def score_encoded(predict: Callable[[np.ndarray], np.ndarray], contents, data: DataParams) -> np.ndarray:
    """P(fake) ``(n,)`` of encoded images (bytes) under ``data.view``: decoded and resized to
    ``image_size`` and scored ``data.batch_size`` at a time (``resize``), or each decoded at its
    own resolution and scored by :func:`score_image`. Raises ``ValueError`` if one does not decode."""
    view = scorer(data.view)
    return view.score_encoded(predict, contents, view.input_size(data), data.batch_size)


def score_crops(predict: Callable[[np.ndarray], np.ndarray], image: tf.Tensor | np.ndarray, patch: int):
    """P(fake) of one native-resolution ``(h, w, 3)`` image under the patch view: ``predict``
    on its :func:`grid_crops`, combined by :func:`combine_crop_scores`. Training's evaluation,
    the registered pyfunc and the ONNX runner all score patch-view images through this.
    A ``predict`` that returns one column per ensemble member ``(n, k)`` gets one score per
    member ``(k,)`` (each member's crops combined on their own, as evaluation scores members)."""
    P = np.asarray(predict(grid_crops(image, patch).numpy()), dtype=np.float64)
    if P.ndim == 2 and P.shape[1] > 1:
        return np.array([combine_crop_scores(P[:, m]) for m in range(P.shape[1])])
    return combine_crop_scores(P)


def stitch_crops(values: np.ndarray, height: int, width: int, patch: int) -> np.ndarray:
    """The inverse of :func:`grid_crops` for per-pixel maps: ``(n, patch, patch)`` values of the
    grid crops of an ``height`` x ``width`` image -> ``(height, width)``, averaging where crops
    overlap (a Grad-CAM heat map over the whole image, say)."""
    values = np.asarray(values, dtype=np.float64)
    ys, xs = grid_origins(max(height, patch), patch), grid_origins(max(width, patch), patch)
    if values.shape[0] != len(ys) * len(xs):
        raise ValueError(f"{values.shape[0]} crops given; the grid of a {height}x{width} image has {len(ys) * len(xs)}")
    total = np.zeros((max(height, patch), max(width, patch)))
    count = np.zeros_like(total)
    for value, (y, x) in zip(values, ((y, x) for y in ys for x in xs)):
        total[y : y + patch, x : x + patch] += value
        count[y : y + patch, x : x + patch] += 1
    return (total / count)[:height, :width]


# --------------------------------------------------------------------------- one scorer per view

Predict = Callable[[np.ndarray], np.ndarray]
"""A network's forward pass: a batch ``(n, s, s, 3)`` -> P(fake) ``(n,)`` or ``(n, 1)``."""


def _probabilities(predict: Predict, batch) -> np.ndarray:
    return np.asarray(predict(np.asarray(batch))).reshape(-1)


class Scorer:
    """How a model of one view turns images into P(fake): the one place that decides whether an
    image is resized, cut into its grid of crops or read whole (:data:`SCORERS`, :func:`scorer`).

    ``size`` is the side of the square the network takes (``input_size``: ``image_size`` under
    ``resize``, ``patch_size`` under ``patches``; unused under ``native``). ``native``: whether
    images are decoded at their own resolution (:func:`decode_at`'s ``None`` size) rather than
    resized to ``size`` on decode."""

    view: str = ""
    native: bool = True

    def input_size(self, data: DataParams) -> int:
        """The side of the square a model of this view is trained on."""
        return data.image_size

    def decoded_size(self, size: int | None) -> int | None:
        """The size images are decoded at for this view: ``size``, or ``None`` (native resolution)."""
        return None if self.native else size

    def decode(self, contents, size: int | None):
        """Encoded images -> what :meth:`score_decoded` takes, and one error (or None) per entry."""
        return decode_at(contents, self.decoded_size(size))

    def prepare(self, image, size: int | None) -> np.ndarray:
        """The batch the network sees for one native-resolution ``(h, w, 3)`` image."""
        return np.asarray(image)[np.newaxis]

    def score_image(self, predict: Predict, image, size: int | None) -> float:
        """P(fake) of one decoded image (at ``size`` under ``resize``, else at its own resolution)."""
        return float(_probabilities(predict, np.asarray(image)[np.newaxis])[0])

    def score_images(self, predict: Predict, images, size: int | None, batch_size: int | None = None) -> np.ndarray:
        """P(fake) ``(n,)`` of images decoded at their own resolution (whatever the view)."""
        return np.array([self.score_image(predict, image, size) for image in images], dtype=np.float64)

    def score_decoded(self, predict: Predict, decoded, size: int | None, batch_size: int | None = None) -> np.ndarray:
        """P(fake) ``(n,)`` of what :meth:`decode` gave (the entries that decoded)."""
        return self.score_images(predict, decoded, size, batch_size)

    def score_encoded(self, predict: Predict, contents, size: int | None, batch_size: int | None = None) -> np.ndarray:
        """P(fake) ``(n,)`` of encoded images; ``ValueError`` if one does not decode."""
        decoded, errors = self.decode(list(contents), size)
        bad = [e for e in errors if e]
        if bad:
            raise ValueError(f"{len(bad)} image(s) could not be decoded: {bad[0]}")
        return self.score_decoded(predict, decoded, size, batch_size)


class ResizeScorer(Scorer):
    """``resize``: the whole image resized to the network's input, scored ``batch_size`` at a time."""

    view, native = "resize", False

    def prepare(self, image, size: int | None) -> np.ndarray:

        return resize(image, size).numpy()[np.newaxis]

    def score_images(self, predict: Predict, images, size: int | None, batch_size: int | None = None) -> np.ndarray:
        pixels = np.stack([self.prepare(image, size)[0] for image in images]) if len(images) else np.zeros((0,))
        return self.score_decoded(predict, pixels, size, batch_size)

    def score_decoded(self, predict: Predict, decoded, size: int | None, batch_size: int | None = None) -> np.ndarray:
        step = int(batch_size or max(len(decoded), 1))
        batches = [_probabilities(predict, decoded[i : i + step]) for i in range(0, len(decoded), step)]
        return np.concatenate(batches).astype(np.float64) if batches else np.array([], dtype=np.float64)


class PatchScorer(Scorer):
    """``patches``: the image's grid of native-resolution crops, their logits averaged."""

    view = "patches"

    def input_size(self, data: DataParams) -> int:
        return data.patch_size

    def prepare(self, image, size: int | None) -> np.ndarray:
        return grid_crops(image, size).numpy()

    def score_image(self, predict: Predict, image, size: int | None) -> float:
        return score_crops(predict, image, size)


class WholeScorer(Scorer):
    """``native``: the whole image at its own resolution, one image per forward pass."""

    view = "native"


SCORERS: dict[str, Scorer] = {s.view: s for s in (ResizeScorer(), PatchScorer(), WholeScorer())}
"""The scorer of each view: the one lookup every scoring path (training's evaluation, the stages,
serving, ONNX, explain) goes through."""


def scorer(view: str | None) -> Scorer:
    """The :class:`Scorer` of ``view`` (``None``: ``resize``, what detectors logged before views had)."""
    try:
        return SCORERS[view or "resize"]
    except KeyError:
        raise ValueError(f"unknown view {view!r}; choose one of {VIEWS}") from None


def decode_at(contents, size: int | None):
    """Encoded images decoded at ``size`` (``decode_checked``: the training pipeline's
    ``decode_resize``) or at their own resolution (``size`` None: ``decode_native``)."""

    return decode_native(list(contents)) if size is None else decode_checked(list(contents), size)
