"""Test-time perturbations of encoded images, for the ``robustness`` stage.

A perturbation takes an encoded image (the file's bytes) and returns encoded bytes, so the
perturbed image goes through exactly the decode/resize path the model always uses
(:func:`deepfake_detection.data.decode.decode_checked`, or the patch view's scoring). Pure
Pillow/numpy/scipy: no TensorFlow.

One perturbation is a set of operations, applied in this fixed order whatever order they are
written in (the order an image meets them on its way to a viewer: resized, softened, noisy,
then compressed):

* ``downscale`` (factor in (0, 1)): resized to ``factor`` times its size (bicubic, antialiased)
  and back up to its original size (bicubic), so the size the model sees is unchanged;
* ``blur`` (sigma in pixels): Gaussian blur, ``scipy.ndimage.gaussian_filter`` per channel, as
  in CNNDetection (Wang et al., CVPR 2020), reflected at the borders;
* ``noise`` (standard deviation in 0..255 levels): additive Gaussian noise, drawn from a
  generator seeded per image (:func:`image_seed`), so the same seed gives the same bytes;
* ``jpeg`` (quality 1..100): re-encoded as JPEG at that quality (Pillow, 4:2:0 subsampling).

The result is JPEG when ``jpeg`` is set, else lossless PNG, so no operation but ``jpeg``
compresses. Images are taken as 8-bit RGB (:func:`deepfake_detection.data.images.to_rgb`; EXIF
orientation is not applied, as the TensorFlow decoder does not apply it either). Without any
operation the bytes are returned unchanged.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import numpy as np
from PIL import Image

from deepfake_detection.data import images
from deepfake_detection.data.images import encode

OPERATIONS = ("downscale", "blur", "noise", "jpeg")
"""The operations a perturbation may combine, in the order they are applied."""


def image_seed(seed: int, key: str) -> int:
    """A per-image seed from the run's ``seed`` and the image's ``key`` (its path): independent of
    the order and the chunking in which images are perturbed."""
    return (int(seed) * 1_000_003 + zlib.crc32(str(key).encode("utf-8"))) % 2**63


def decode_rgb(contents: bytes) -> np.ndarray:
    """Encoded bytes -> ``uint8`` ``(h, w, 3)`` RGB (:func:`deepfake_detection.data.images.decode_rgb`:
    its checks and colour conversion), without EXIF rotation: the TensorFlow decoder applies none."""
    return images.decode_rgb(contents, exif_transpose=False)


def downscale(pixels: np.ndarray, factor: float) -> np.ndarray:
    """``factor`` times smaller (bicubic, antialiased) and back to the original size (bicubic)."""
    if not 0 < factor < 1:
        raise ValueError(f"downscale factor must lie in (0, 1), got {factor}")
    h, w = pixels.shape[:2]
    small = (max(1, round(w * factor)), max(1, round(h * factor)))
    img = Image.fromarray(pixels).resize(small, Image.Resampling.BICUBIC, reducing_gap=None)
    return np.asarray(img.resize((w, h), Image.Resampling.BICUBIC), dtype=np.uint8).copy()


def blur(pixels: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of standard deviation ``sigma`` pixels (each channel on its own)."""
    from scipy.ndimage import gaussian_filter  # scipy: only when an image is blurred (slow to import)

    if sigma <= 0:
        raise ValueError(f"blur sigma must be positive, got {sigma}")
    out = gaussian_filter(pixels.astype(np.float64), sigma=(sigma, sigma, 0), mode="reflect")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def add_noise(pixels: np.ndarray, std: float, seed: int) -> np.ndarray:
    """Additive Gaussian noise of standard deviation ``std`` levels, seeded."""
    if std <= 0:
        raise ValueError(f"noise std must be positive, got {std}")
    noise = np.random.default_rng(seed).normal(0.0, std, pixels.shape)
    return np.clip(np.rint(pixels.astype(np.float64) + noise), 0, 255).astype(np.uint8)


def check_operations(ops: Mapping[str, float | int | None]) -> dict[str, float]:
    """The operations that are set (not ``None``), checked; ValueError naming an unknown one."""
    unknown = sorted(set(ops) - set(OPERATIONS))
    if unknown:
        raise ValueError(f"unknown perturbation operation(s) {unknown}: use {list(OPERATIONS)}")
    return {k: ops[k] for k in OPERATIONS if ops.get(k) is not None}


def perturb(contents: bytes, ops: Mapping[str, float | int | None], seed: int = 0) -> bytes:
    """``contents`` (an encoded image) under the operations ``ops`` (``{"downscale": 0.5,
    "blur": 1.0, "jpeg": 75}``; ``None`` values are off), as encoded bytes of the same size.
    ``seed`` seeds the random operations (``noise``): pass :func:`image_seed` of the image."""
    active = check_operations(ops)
    if not active:
        return contents
    pixels = decode_rgb(contents)
    if "downscale" in active:
        pixels = downscale(pixels, float(active["downscale"]))
    if "blur" in active:
        pixels = blur(pixels, float(active["blur"]))
    if "noise" in active:
        pixels = add_noise(pixels, float(active["noise"]), seed)
    if "jpeg" in active:
        return encode(pixels, "jpeg", quality=int(active["jpeg"]))
    return encode(pixels, "png")


def high_frequency_energy(pixels: np.ndarray) -> float:
    """Mean squared difference between horizontally and vertically adjacent pixels (gray): what
    blur and down-scaling take away. For tests and sanity checks."""
    gray = np.asarray(pixels, dtype=np.float64)
    gray = gray.mean(axis=2) if gray.ndim == 3 else gray
    return float((np.diff(gray, axis=0) ** 2).mean() + (np.diff(gray, axis=1) ** 2).mean())
