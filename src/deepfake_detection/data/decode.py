"""Decoding encoded images (JPEG, PNG, ...) to model pixels, shared by serving, ``explain`` and
the ``evaluate`` stage's Grad-CAM examples.

Every image is first checked from its header (:func:`check_encoded`, :func:`check_images`: the
limits of :mod:`deepfake_detection.data.images`), then decoded and resized by :func:`decode_resize`, the
very function the training pipeline (:mod:`deepfake_detection.data.pipeline`) uses, so
prediction sees the pixels training saw. This module reads no file and imports no MLflow code;
TensorFlow is imported only when an image is decoded (serving imports this module at start-up).

Decoding accepts what the project accepts: JPEG, and PNG in any mode (RGB, grayscale, RGBA,
palette, 8 or 16 bits per channel). Grayscale becomes three equal channels, alpha is dropped,
a palette is expanded to its colours, and a 16-bit PNG is mapped to [0, 255] by ``v / 257``
(``tf.io.decode_image`` to uint8 would keep only the high byte).
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from deepfake_detection.data.images import (
    DECODABLE_FORMATS,
    MAX_ASPECT_RATIO,
    MAX_PIXELS,
    MIN_SIDE,
    SMALL_SIDE,
    ImageError,
    budget_error,
    frame_count,
)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decode_image(contents):
    """Encoded JPEG/PNG bytes (a scalar string tensor) -> float32 RGB ``(h, w, 3)`` in [0, 255],
    at native resolution. Graph-safe: the training pipeline maps it over tf.data."""
    import tensorflow as tf  # TensorFlow: only when an image is decoded, not when serving imports this module

    is_png = tf.equal(tf.strings.substr(contents, 0, len(_PNG_SIGNATURE)), _PNG_SIGNATURE)

    def png():  # decoded at 16 bits, so 16-bit files keep their precision; 8-bit ones are v * 257
        image = tf.io.decode_image(contents, channels=3, dtype=tf.uint16, expand_animations=False)
        return tf.cast(image, tf.float32) / 257.0

    def other():  # JPEG (and GIF/BMP): 8 bits
        image = tf.io.decode_image(contents, channels=3, dtype=tf.uint8, expand_animations=False)
        return tf.cast(image, tf.float32)

    image = tf.cond(is_png, png, other)
    image.set_shape([None, None, 3])
    return image


def resize(image, image_size: int):
    """``(h, w, 3)`` -> ``(image_size, image_size, 3)``, bilinear and antialiased, in [0, 255]."""
    import tensorflow as tf  # TensorFlow: only when an image is resized

    image = tf.image.resize(image, [image_size, image_size], method="bilinear", antialias=True)
    return tf.clip_by_value(image, 0.0, 255.0)


def decode_resize(contents, image_size: int):
    """Encoded JPEG/PNG bytes -> float32 RGB ``(image_size, image_size, 3)`` in [0, 255]."""
    return resize(decode_image(contents), image_size)


def _decoder(image_size: int):
    """A compiled ``bytes -> float32 (s, s, 3)`` function: the training pipeline's decode_resize."""
    import tensorflow as tf  # TensorFlow: only when an image is decoded

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)], reduce_retracing=True)
    def decode(contents):
        return decode_resize(contents, image_size)

    return decode


_DECODERS: dict[int | str, Any] = {}  # image size (or "native") -> compiled decoder


@dataclass(frozen=True)
class EncodedCheck:
    """What :func:`check_encoded` found out from an encoded image's header (no pixel decoded).

    ``error`` is ``None`` when the image may be decoded; ``warning`` says why its score is less
    reliable (a small or very elongated image), ``None`` when nothing is odd."""

    error: str | None
    warning: str | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None
    frames: int = 1

    @property
    def pixels(self) -> int:
        """What decoding costs: frames x width x height (0 when the header was unreadable)."""
        return self.frames * (self.width or 0) * (self.height or 0)


def check_encoded(data: bytes, *, max_pixels: int = MAX_PIXELS) -> EncodedCheck:
    """Check encoded image bytes from their header alone, before anything decodes the pixels.

    Refused (``error``): bytes no format recognises, a format the model's decoder cannot read
    (:data:`DECODABLE_FORMATS`; TIFF for instance), more than ``max_pixels`` pixels to decode
    (frames x width x height, :func:`budget_error`; or
    Pillow's own decompression-bomb guard), a side below :data:`MIN_SIDE`. Scored with a
    ``warning``: a shorter side below :data:`SMALL_SIDE`, a ratio of the sides above
    :data:`MAX_ASPECT_RATIO`. Pillow's ``Image.open`` reads the header only."""
    if not data:
        return EncodedCheck("not a decodable image: empty content")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt, (width, height) = img.format, img.size
                frames = frame_count(img) if fmt in DECODABLE_FORMATS else 1
    except Image.DecompressionBombError as err:
        return EncodedCheck(f"image too large: {err}")
    except UnidentifiedImageError:
        return EncodedCheck("not a decodable image: no image format recognises it")
    except ImageError as err:
        return EncodedCheck(f"not a decodable image: {err.detail}")
    except Exception as err:  # a header Pillow cannot parse
        return EncodedCheck(f"not a decodable image: {type(err).__name__}: {err}")
    found = {"format": fmt, "width": width, "height": height, "frames": frames}
    if fmt not in DECODABLE_FORMATS:
        readable = ", ".join(sorted(DECODABLE_FORMATS - {"MPO"}))
        return EncodedCheck(f"unsupported image format {fmt}: the model reads {readable}", **found)
    too_large = budget_error(width, height, frames, max_pixels)
    if too_large:
        return EncodedCheck(f"image too large: {too_large}", **found)
    if min(width, height) < MIN_SIDE:
        return EncodedCheck(f"image too small: {width}x{height} pixels, at least {MIN_SIDE} a side needed", **found)
    notes = []
    if min(width, height) < SMALL_SIDE:
        notes.append(
            f"small image ({width}x{height} pixels, under {SMALL_SIDE} a side): upscaled, a less reliable score"
        )
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        notes.append(
            f"elongated image ({width}x{height} pixels, sides {ratio:.1f}:1 > {MAX_ASPECT_RATIO:g}:1): "
            "squashed to a square, a less reliable score"
        )
    return EncodedCheck(None, "; ".join(notes) or None, **found)


def check_images(
    contents: Sequence[bytes | None], max_pixels: int = MAX_PIXELS, request_pixels: int | None = None
) -> tuple[list[str | None], list[str | None]]:
    """One error and one warning (or ``None``) per encoded image, from its header alone
    (:func:`check_encoded`); ``None`` entries get neither.

    ``request_pixels`` (a server's per-request budget, ``None``: none): the images' decoding
    costs (frames x width x height) are summed in order, and an image that would take the sum
    past it is refused (its error says so), so one request cannot keep the server decoding."""
    errors: list[str | None] = []
    warnings_: list[str | None] = []
    spent = 0
    for data in contents:
        found = check_encoded(data, max_pixels=max_pixels) if data is not None else None
        error = found.error if found else None
        if found and error is None and request_pixels is not None:
            if spent + found.pixels > request_pixels:
                error = (
                    f"request pixel budget spent: this image ({found.pixels:,} pixels to decode) would take the "
                    f"request past {request_pixels:,} pixels; send it in another request"
                )
            else:
                spent += found.pixels
        errors.append(error)
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
    """:func:`decode_images` without the header checks (the caller made them). Images go through
    the compiled ``decode_resize`` one per call, in parallel threads (:func:`_decode_each`), so
    each failure has its own message."""
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
    checks): float32 RGB ``(h, w, 3)`` in [0, 255] per entry, by :func:`decode_image` (the
    training pipeline's); ``None`` where an entry is ``None`` or failed (its error says why)."""
    if "native" not in _DECODERS:
        import tensorflow as tf  # TensorFlow: only when an image is decoded

        _DECODERS["native"] = tf.function(
            decode_image, input_signature=[tf.TensorSpec([], tf.string)], reduce_retracing=True
        )
    return _decode_each(contents, _DECODERS["native"])


class PixelGate:
    """A process-wide bound on the pixels being decoded at once, by every thread together (a
    server answers requests in threads): decoding an image holds its frames x width x height
    (at most the whole capacity, so an image as large as the gate decodes alone) until done.
    Decoding memory is then bounded whatever the number of requests or threads."""

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.free = int(capacity)
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        n = min(max(int(pixels), 1), self.capacity)
        with self._cond:
            self._cond.wait_for(lambda: self.free >= n)
            self.free -= n
        try:
            yield
        finally:
            with self._cond:
                self.free += n
                self._cond.notify_all()


DECODE_GATE = PixelGate(MAX_PIXELS)
"""Pixels decoded at once in this process: one image of ``MAX_PIXELS`` (~1.3 GB while it is
decoded), or many smaller ones in parallel."""

DECODE_THREADS = min(8, os.cpu_count() or 1)
"""Threads a batch is decoded with (TensorFlow's decode and resize ops release the GIL)."""


def _decode_each(contents: Sequence[bytes | None], decode) -> tuple[list[np.ndarray | None], list[str | None]]:
    """Each entry through the compiled ``decode`` (bytes -> pixels), in :data:`DECODE_THREADS`
    threads under :data:`DECODE_GATE`: the pixels or ``None``, and one error per entry, in the
    order given (``None`` entries are skipped and get neither)."""
    import tensorflow as tf  # TensorFlow: only when an image is decoded

    def one(data: bytes | None) -> tuple[np.ndarray | None, str | None]:
        if data is None:
            return None, None
        if len(data) == 0:
            return None, "not a decodable image: empty content"
        try:
            with DECODE_GATE.hold(check_encoded(data, max_pixels=1 << 62).pixels):
                return decode(tf.constant(data)).numpy(), None
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError, ValueError) as err:
            return None, f"not a decodable image: {_tf_error_message(err)}"

    busy = [c for c in contents if c]
    if len(busy) < 2 or DECODE_THREADS < 2:
        done = [one(data) for data in contents]
    else:
        with ThreadPoolExecutor(min(DECODE_THREADS, len(busy)), thread_name_prefix="decode") as pool:
            done = list(pool.map(one, contents))
    return [d[0] for d in done], [d[1] for d in done]


def _tf_error_message(err: Exception) -> str:
    """The op's own message out of a TensorFlow graph-execution error (no traceback lines)."""
    text = getattr(err, "message", None) or str(err)
    skip = ("Graph execution error", "Detected at node", "File ", "[[", "{{")
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(skip)]
    return lines[-1] if lines else type(err).__name__
