"""Image checks and conversions shared by ingest, the ``prepare`` stage and inference.

One place decides what counts as a readable image:

* :func:`inspect_image` opens a file (or encoded bytes: a shard's record), refuses oversized
  images from their header (before any pixel memory is allocated), fully decodes the rest and
  reports why an image is unusable with one word of :data:`REASONS`.
* :func:`open_image` does the same checks and returns the decoded :class:`PIL.Image.Image`,
  raising :class:`ImageError` (``.reason`` is one of :data:`REASONS`).
* :func:`to_rgb` turns every mode in :data:`SUPPORTED_MODES` into 8-bit RGB.
* :func:`load_rgb` = :func:`open_image` + EXIF orientation + :func:`to_rgb` as a ``uint8``
  ``H x W x 3`` array (:func:`decode_rgb`: the same from encoded bytes); :func:`encode` writes
  an image as JPEG or PNG bytes.
* The limits inference checks encoded bytes against from their header
  (:func:`deepfake_detection.data.decode.check_encoded`): :data:`DECODABLE_FORMATS`,
  :data:`MAX_PIXELS` (:func:`budget_error`), :data:`MIN_SIDE`; a warning under
  :data:`SMALL_SIDE` or beyond :data:`MAX_ASPECT_RATIO`; :data:`MAX_IMAGE_BYTES` caps what
  inference reads.

Conversion choices
------------------
* Transparency (``RGBA``, ``LA``, ``PA``, palette images with a transparent index, and the
  premultiplied ``RGBa``/``La``) is composited over **white**. Dropping alpha instead would
  expose whatever colour the encoder left under fully transparent pixels (often black or
  garbage), so white is what a viewer shows and what the network sees.
* 16-bit grayscale (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``) is **scaled** to 8 bit with
  ``round(v / 257)`` (65535 -> 255, 32768 -> 128, 0 -> 0), not clipped. Mode ``I`` (32-bit
  integer, what Pillow gives for some 16-bit PNG/TIFF/PGM files) is taken as the same
  0..65535 range: values outside it are clipped first.
* ``F`` (32-bit float) is refused as ``unsupported_mode``: its value range (0..1? 0..255?
  physical units?) is not knowable from the file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

MAX_PIXELS = 8192 * 8192
"""Largest accepted decoding cost: frames x width x height (67 M pixels, ~200 MB as RGB; an
animated file counts every frame, since the model's decoder decodes them all). Checked from the
header, before decoding, so a file that merely *declares* a huge size costs nothing."""

MAX_IMAGE_BYTES = 64 * 1024 * 1024
"""Largest encoded image (file or base64 payload) inference reads: 64 MiB. A bigger file is
refused from its size, without reading it."""

MIN_SIDE = 8
"""Inference refuses an image whose shorter side is below this many pixels (nothing to score)."""

SMALL_SIDE = 32
"""Inference scores an image whose shorter side is below this, but with a warning (upscaled)."""

MAX_ASPECT_RATIO = 4.0
"""Inference scores an image longer than this ratio (long side / short side), with a warning:
it is squashed into the model's square input."""

DECODABLE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP"})
"""Pillow format names whose files the TensorFlow decoder of the model pipeline reads."""

REASONS = ("zero_bytes", "not_an_image", "truncated", "unsupported_mode", "too_large", "too_small", "unreadable")
"""Every value :attr:`ImageInfo.reason` / :attr:`ImageError.reason` can take."""

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_DIRECT_MODES = frozenset({"1", "L", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"})

SUPPORTED_MODES = frozenset({"RGB", "P"}) | _ALPHA_MODES | _SIXTEEN_BIT_MODES | _DIRECT_MODES
"""Modes :func:`to_rgb` converts; any other mode is ``unsupported_mode``."""

_FORMATS = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG"}
EXTENSIONS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png"}
"""File suffix written for a Pillow format name."""

_ORIENTATION_TAG = 0x0112


class ImageError(ValueError):
    """A file that is not a usable image; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str, path: str | os.PathLike | None = None):
        assert reason in REASONS, reason
        self.reason = reason
        self.detail = detail
        self.path = None if path is None else str(path)
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{reason} ({detail})")


class UnsupportedModeError(ImageError):
    """:func:`to_rgb` cannot convert this Pillow mode."""

    def __init__(self, mode: str, path: str | os.PathLike | None = None):
        super().__init__("unsupported_mode", f"mode {mode!r} cannot be converted to RGB", path)
        self.mode = mode


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`inspect_image` found. ``reason`` is ``None`` exactly when ``ok``."""

    ok: bool
    reason: str | None
    format: str | None = None
    mode: str | None = None
    width: int | None = None
    height: int | None = None
    detail: str | None = None  # the underlying error message, for the report
    orientation: int = 1  # EXIF orientation tag (1 = upright, no rotation needed)


@contextmanager
def _strict_decoding() -> Iterator[None]:
    """Make Pillow raise on truncated files even if someone set ``LOAD_TRUNCATED_IMAGES``.

    The flag is a Pillow global; it is restored afterwards (not thread-safe against code that
    flips the flag concurrently, which nothing in this project does)."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except Exception:  # a broken EXIF block must not make a good picture unreadable
        return 1


def _decode_error(err: BaseException) -> tuple[str, str]:
    text = f"{type(err).__name__}: {err}"
    if isinstance(err, EOFError) or (isinstance(err, OSError) and "truncated" in str(err).lower()):
        return "truncated", text
    return "unreadable", text


def _open(path: Path | bytes, max_pixels: int) -> tuple[Image.Image, int]:
    """Checked, fully decoded image and its EXIF orientation, or :class:`ImageError`; ``path``
    may also be the encoded bytes themselves (then errors name no path)."""
    if isinstance(path, bytes):
        size, source, path = len(path), io.BytesIO(path), None
    else:
        try:
            size = path.stat().st_size
        except OSError as err:
            raise ImageError("unreadable", f"{type(err).__name__}: {err}", path) from None
        source = path
    if size == 0:
        raise ImageError("zero_bytes", "the file is empty" if path else "the content is empty", path)
    with _strict_decoding():
        try:
            img = Image.open(source)
        except UnidentifiedImageError:
            raise ImageError("not_an_image", "no image format recognises this file", path) from None
        except Image.DecompressionBombError as err:
            # Pillow's own guard (2 x Image.MAX_IMAGE_PIXELS), raised from the header alone.
            raise ImageError("too_large", str(err), path) from None
        except Exception as err:
            reason, detail = _decode_error(err)
            raise ImageError(reason, detail, path) from None
        try:
            width, height = img.size
            if width <= 0 or height <= 0:
                raise ImageError("unreadable", f"declares an empty size {width}x{height}", path)
            too_large = budget_error(width, height, frame_count(img, path), max_pixels)
            if too_large:
                raise ImageError("too_large", f"declares {too_large}", path)
            if img.mode not in SUPPORTED_MODES:
                raise UnsupportedModeError(img.mode, path)
            orientation = _orientation(img)
            try:
                img.load()
            except Image.DecompressionBombError as err:
                raise ImageError("too_large", str(err), path) from None
            except MemoryError:
                raise ImageError("too_large", "ran out of memory decoding it", path) from None
            except Exception as err:
                reason, detail = _decode_error(err)
                raise ImageError(reason, detail, path) from None
        except BaseException:
            img.close()
            raise
    return img, orientation


def frame_count(img: Image.Image, path: str | os.PathLike | None = None) -> int:
    """How many frames ``img`` holds (animated GIF, PNG or WebP), read from the file's frame
    headers without decoding any pixels; 1 for a still image."""
    try:
        return max(1, int(getattr(img, "n_frames", 1)))
    except Exception as err:  # a frame header Pillow cannot parse
        raise ImageError("unreadable", f"cannot count its frames: {type(err).__name__}: {err}", path) from None


def budget_error(width: int, height: int, frames: int, max_pixels: int) -> str | None:
    """Why an image of ``frames`` frames of ``width`` x ``height`` is over the decoding budget
    ``max_pixels`` (``None`` when it fits). Decoding costs frames x pixels: the model's decoder
    (``tf.io.decode_image``) decodes every frame of an animated file, then keeps the first."""
    if frames * width * height <= max_pixels:
        return None
    if frames == 1:
        return f"{width}x{height} = {width * height:,} pixels > the limit of {max_pixels:,}"
    return (
        f"{frames} frames of {width}x{height} = {frames * width * height:,} pixels to decode > the limit of "
        f"{max_pixels:,} (an animated image is scored on its first frame, but every frame is decoded)"
    )


def open_image(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open and fully decode ``path`` with the checks of :func:`inspect_image`.

    Returns the loaded image (pixels in memory, mode unchanged). Raises :class:`ImageError`
    whose ``reason`` is one of :data:`REASONS`."""
    img, _ = _open(Path(path), max_pixels)
    return img


def inspect_image(source: str | os.PathLike | bytes, *, max_pixels: int = MAX_PIXELS) -> ImageInfo:
    """Decode ``source`` (a path, or the encoded bytes themselves: a shard's record) completely
    and say whether it is a usable image (never raises for a bad image; an unreadable path is
    ``reason="unreadable"``).

    Refused, with ``reason``: ``zero_bytes`` (empty file), ``not_an_image`` (no format
    recognises it, e.g. text named ``.jpg``), ``too_large`` (declared width x height above
    ``max_pixels``, decided from the header before any pixel memory is allocated, or
    Pillow's decompression-bomb guard), ``unsupported_mode`` (mode outside
    :data:`SUPPORTED_MODES`), ``truncated`` (data ends early; ``LOAD_TRUNCATED_IMAGES`` is
    forced off while decoding), ``too_small`` (a side under :data:`MIN_SIDE`, which inference
    refuses), ``unreadable`` (any other decoder or I/O error)."""
    source = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else Path(source)
    try:
        img, orientation = _open(source, max_pixels)
    except ImageError as err:
        info = _header(source) if err.reason in ("too_large", "unsupported_mode") else {}
        return ImageInfo(ok=False, reason=err.reason, detail=err.detail, **info)
    with img:
        found = {"format": img.format, "mode": img.mode, "width": img.width, "height": img.height}
    if min(found["width"], found["height"]) < MIN_SIDE:
        too_small = f"{found['width']}x{found['height']} pixels: inference refuses images under {MIN_SIDE} px a side"
        return ImageInfo(ok=False, reason="too_small", detail=too_small, orientation=orientation, **found)
    return ImageInfo(ok=True, reason=None, orientation=orientation, **found)


def _header(source: Path | bytes) -> dict:
    """Format, mode and size from the header alone (for the report of a refused image)."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            return {"format": img.format, "mode": img.mode, "width": img.width, "height": img.height}
    except Exception:  # e.g. Pillow's own bomb guard refuses even to open it
        return {}


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB version of ``img`` (an ``RGB`` image is returned as is).

    Alpha is composited over white; 16-bit grayscale is scaled (``round(v / 257)``), not
    clipped; see the module docstring. Raises :class:`UnsupportedModeError` (a
    ``ValueError``) for modes outside :data:`SUPPORTED_MODES` such as ``F``."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(img).astype(np.float64)
        gray = np.rint(np.clip(values, 0, 65535) / 257.0).astype(np.uint8)
        return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "La":  # premultiplied: Pillow converts it only to LA
        img, mode = img.convert("LA"), "LA"
    if mode == "P":
        if not img.has_transparency_data:
            return img.convert("RGB")
        mode = "PA"
    if mode in _ALPHA_MODES:
        return _composite_on_white(img.convert("RGBA"))
    if mode in _DIRECT_MODES:
        return img.convert("RGB")
    raise UnsupportedModeError(mode)


def load_rgb(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS, exif_transpose: bool = True) -> np.ndarray:
    """``uint8`` array ``H x W x 3`` of the image at ``path``.

    Applies the EXIF orientation tag (as a photo viewer would) unless ``exif_transpose`` is
    false. Raises :class:`ImageError` for a file :func:`inspect_image` would refuse."""
    img = open_image(path, max_pixels=max_pixels)
    with img:
        if exif_transpose:
            img = ImageOps.exif_transpose(img)
        return np.asarray(to_rgb(img), dtype=np.uint8).copy()


def decode_rgb(data: bytes, *, max_pixels: int = MAX_PIXELS, exif_transpose: bool = True) -> np.ndarray:
    """:func:`load_rgb` for encoded bytes (inference's face path: the photo in which faces are
    found, decoded as ``ingest --faces`` decodes a file). Raises :class:`ImageError`."""
    img, _ = _open(bytes(data), max_pixels)
    with img:
        if exif_transpose:
            img = ImageOps.exif_transpose(img)
        return np.asarray(to_rgb(img), dtype=np.uint8).copy()


def encode(img: Image.Image | np.ndarray, fmt: str = "jpeg", quality: int = 95) -> bytes:
    """Encode ``img`` (any supported mode, or a ``uint8`` array ``H x W x 3`` / ``H x W``) as
    RGB ``"jpeg"`` (``quality`` 1..100, Pillow's default 4:2:0 subsampling) or lossless
    ``"png"``. No metadata is written, so the bytes depend only on the pixels."""
    pil_format = _FORMATS.get(str(fmt).lower())
    if pil_format is None:
        raise ValueError(f"format must be one of {sorted(set(_FORMATS))}, not {fmt!r}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100, not {quality}")
    if isinstance(img, np.ndarray):
        if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
            raise ValueError(f"expected a uint8 H x W x 3 or H x W array, got {img.dtype} {img.shape}")
        img = Image.fromarray(img)
    rgb = to_rgb(img)
    buffer = io.BytesIO()
    if pil_format == "JPEG":
        rgb.save(buffer, "JPEG", quality=int(quality))
    else:
        rgb.save(buffer, "PNG")
    return buffer.getvalue()
