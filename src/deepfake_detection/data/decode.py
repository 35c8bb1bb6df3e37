"""Decoding encoded images (JPEG, PNG, ...) to model pixels, shared by serving, ``explain`` and
the ``evaluate`` stage's Grad-CAM examples.

Every image is first checked from its header (:func:`check_images`, the limits of
:mod:`deepfake_detection.data.images`), then decoded and resized by
:func:`deepfake_detection.data.pipeline.decode_resize`, the very function the training pipeline
uses, so prediction sees the pixels training saw. This module reads no file and imports no
MLflow code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from deepfake_detection.data.images import MAX_PIXELS, check_encoded


def _decoder(image_size: int):
    """A compiled ``bytes -> float32 (s, s, 3)`` function: the training pipeline's decode_resize."""
    import tensorflow as tf

    from deepfake_detection.data.pipeline import decode_resize

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)], reduce_retracing=True)
    def decode(contents):
        return decode_resize(contents, image_size)

    return decode


_DECODERS: dict[int | str, Any] = {}  # image size (or "native") -> compiled decoder


def check_images(
    contents: Sequence[bytes | None], max_pixels: int = MAX_PIXELS
) -> tuple[list[str | None], list[str | None]]:
    """One error and one warning (or ``None``) per encoded image, from its header alone
    (:func:`deepfake_detection.data.images.check_encoded`); ``None`` entries get neither."""
    errors: list[str | None] = []
    warnings_: list[str | None] = []
    for data in contents:
        found = check_encoded(data, max_pixels=max_pixels) if data is not None else None
        errors.append(found.error if found else None)
        warnings_.append(found.warning if found else None)
    return errors, warnings_


def decode_images(
    contents: Sequence[bytes | None], image_size: int, *, max_pixels: int = MAX_PIXELS
) -> tuple[np.ndarray, list[str | None]]:
    """Decode encoded images to float32 RGB ``(n, s, s, 3)`` in [0, 255] (rows that fail are zeros).

    ``None`` entries are skipped. Returns the pixels and one error message per entry (``None``
    where the image decoded). Each image is first checked from its header
    (:func:`check_images`: format, ``max_pixels``, smallest side), so an oversized one is
    refused before any pixel memory is allocated.
    """
    errors, _ = check_images(contents, max_pixels)
    pixels, decode_errors = decode_checked([None if e else c for c, e in zip(contents, errors)], image_size)
    return pixels, [e or d for e, d in zip(errors, decode_errors)]


def decode_checked(contents: Sequence[bytes | None], image_size: int) -> tuple[np.ndarray, list[str | None]]:
    """:func:`decode_images` without the header checks (the caller made them). Images go one by
    one through the compiled ``decode_resize``, so each failure has its own message; on 2 busy
    cores this was as fast as a parallel tf.data map over chunks of 64 (whose set-up costs
    ~30 ms a chunk)."""
    if image_size not in _DECODERS:
        _DECODERS[image_size] = _decoder(image_size)
    decoded, errors = _decode_each(contents, _DECODERS[image_size])
    pixels = np.zeros((len(contents), image_size, image_size, 3), dtype=np.float32)
    for i, image in enumerate(decoded):
        if image is not None:
            pixels[i] = image
    return pixels, errors


def decode_native(contents: Sequence[bytes | None]) -> tuple[list[np.ndarray | None], list[str | None]]:
    """:func:`decode_checked` at native resolution (the patch view; the caller made the header
    checks): float32 RGB ``(h, w, 3)`` in [0, 255] per entry, by the training pipeline's
    ``decode_image``; ``None`` where an entry is ``None`` or failed (its error says why)."""
    if "native" not in _DECODERS:
        import tensorflow as tf

        from deepfake_detection.data.pipeline import decode_image

        _DECODERS["native"] = tf.function(
            decode_image, input_signature=[tf.TensorSpec([], tf.string)], reduce_retracing=True
        )
    return _decode_each(contents, _DECODERS["native"])


def _decode_each(contents: Sequence[bytes | None], decode) -> tuple[list[np.ndarray | None], list[str | None]]:
    """Each entry through the compiled ``decode`` (bytes -> pixels): the pixels or ``None``, and
    one error per entry (``None`` entries are skipped and get neither)."""
    import tensorflow as tf

    images: list[np.ndarray | None] = [None] * len(contents)
    errors: list[str | None] = [None] * len(contents)
    for i, data in enumerate(contents):
        if data is None:
            continue
        if len(data) == 0:
            errors[i] = "not a decodable image: empty content"
            continue
        try:
            images[i] = decode(tf.constant(data)).numpy()
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError, ValueError) as err:
            errors[i] = f"not a decodable image: {_tf_error_message(err)}"
    return images, errors


def _tf_error_message(err: Exception) -> str:
    """The op's own message out of a TensorFlow graph-execution error (no traceback lines)."""
    text = getattr(err, "message", None) or str(err)
    skip = ("Graph execution error", "Detected at node", "File ", "[[", "{{")
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(skip)]
    return lines[-1] if lines else type(err).__name__
