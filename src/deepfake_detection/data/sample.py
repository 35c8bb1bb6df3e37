"""The bundled synthetic sample dataset: small, deterministic, offline.

Real images are random crops of the two photographs that ship inside scikit-learn
(``china.jpg``, ``flower.jpg``) with random flips and mild colour shifts. Fake images are made
exactly like real ones and then locally manipulated the way face swaps and image generators
leave traces:

* splicing: a region of another random crop pasted in through a feathered elliptical mask,
  colour-matched to its surroundings (face-swap-like);
* generator up-sampling artifacts in the region: down-sample 2-4x then nearest-neighbour
  up-sample, or a faint stride-2 (transposed-convolution-like) checkerboard;
* local blur and/or low-quality JPEG re-compression of the region before blending.

Every manipulation is local with soft edges, so no global statistic (file size, mean
intensity, channel means) separates the classes. Both classes are encoded identically (JPEG,
same quality, same chroma subsampling, no metadata): detectors readily learn a file-format
difference instead of the manipulation.

Each image has its own random generator, seeded by ``(seed, class id, index)``: the output is
byte-identical for the same arguments and does not depend on the order images are made in.
"""

from __future__ import annotations

import io
import math
from functools import lru_cache
from numbers import Real
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from deepfake_detection import LABELS, SPLITS
from deepfake_detection.data.split import split_sizes

SUBSAMPLING = 0  # 4:4:4 for both classes; fixed so real and fake are encoded alike
MIN_SIZE = 32
MAX_SIZE = 1024

# Manipulation kinds of a fake image.
SPLICE, UPSAMPLE, DEGRADE = "splice", "upsample", "degrade"
KINDS = (SPLICE, UPSAMPLE, DEGRADE)


def generate(
    out: Path,
    images_per_class: int = 600,
    size: int = 96,
    quality: int = 90,
    seed: int = 42,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    progress: bool = True,
) -> dict[str, dict[str, int]]:
    """Write out/{train,valid,test}/{real,fake}/NNNNN.jpg; return counts[split][label].

    ``fractions`` are the (train, valid, test) shares of each class; the valid and test counts
    are rounded and the remainder goes to train. ``out`` must not exist or be an empty folder.
    """
    out = Path(out)
    _validate(out, images_per_class, size, quality, seed, progress)
    counts = split_counts(images_per_class, fractions)

    for split in SPLITS:
        for label in LABELS:
            (out / split / label).mkdir(parents=True, exist_ok=True)

    # The k-th image of a class goes to the split whose range holds k (train, valid, test).
    bounds = np.cumsum([counts[s] for s in SPLITS])
    with tqdm(total=2 * images_per_class, desc="sample data", unit="img", disable=not progress) as bar:
        for class_id, label in enumerate(LABELS):
            for index in range(images_per_class):
                split_id = int(np.searchsorted(bounds, index, side="right"))
                split = SPLITS[split_id]
                number = index - (int(bounds[split_id - 1]) if split_id else 0)
                rng = np.random.default_rng([seed, class_id, index])
                image = make_fake(rng, size) if label == "fake" else make_real(rng, size)
                save_jpeg(image, out / split / label / f"{number:05d}.jpg", quality)
                bar.update()

    return {split: {label: counts[split] for label in LABELS} for split in SPLITS}


def split_counts(images_per_class: int, fractions: tuple[float, float, float]) -> dict[str, int]:
    """Images per class in each split, by the project's one counting rule
    (:func:`~deepfake_detection.data.split.split_sizes`: valid and test rounded half up, the
    remainder to train); an error if a split with a positive fraction would stay empty."""
    _validate_fractions(fractions)
    counts = split_sizes(images_per_class, float(fractions[1]), float(fractions[2]))
    empty = [s for s, f in zip(SPLITS, fractions) if f > 0 and counts[s] < 1]
    if empty:
        needed = max(math.ceil(0.5 / f) for f in fractions if f > 0)  # n * f rounds up to 1 from 0.5
        raise ValueError(
            f"images_per_class={images_per_class} with fractions={tuple(fractions)} leaves no "
            f"image in split(s) {', '.join(empty)}; use images_per_class >= {needed} or set "
            "those fractions to 0"
        )
    return counts


# --- validation ---------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _validate(out: Path, images_per_class, size, quality, seed, progress) -> None:
    if not _is_int(images_per_class) or images_per_class < 1:
        raise ValueError(f"images_per_class must be a positive integer, got {images_per_class!r}")
    if not _is_int(size) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be an integer number of pixels from {MIN_SIZE} to {MAX_SIZE}, got {size!r}")
    if not _is_int(quality) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be a JPEG quality integer from 1 to 100, got {quality!r}")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(progress, bool):
        raise ValueError(f"progress must be True or False, got {progress!r}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {str(out)!r} is a file; give a folder path that does not exist yet")
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(
            f"out folder {str(out)!r} is not empty; remove it or choose a new folder "
            "(the sample dataset is never written over existing files)"
        )


def _validate_fractions(fractions) -> None:
    try:
        values = tuple(fractions)
    except TypeError:
        values = ()
    if len(values) != 3 or not all(
        isinstance(f, Real) and not isinstance(f, bool) and math.isfinite(f) for f in values
    ):
        raise ValueError(
            f"fractions must be three numbers (train, valid, test), e.g. (0.7, 0.15, 0.15), got {fractions!r}"
        )
    if any(f < 0 for f in values):
        raise ValueError(f"fractions must not be negative, got {values}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"fractions (train, valid, test) must sum to 1, got {values} (sum {sum(values):g})")
    if values[0] <= 0:
        raise ValueError(f"the train fraction must be positive, got {values}")


# --- image synthesis ----------------------------------------------------------------------


@lru_cache(maxsize=1)
def _sources() -> tuple[Image.Image, ...]:
    """The photographs bundled with scikit-learn (no network access)."""
    from sklearn.datasets import load_sample_images  # only when sample data are drawn

    return tuple(Image.fromarray(np.ascontiguousarray(a)) for a in load_sample_images().images)


def _random_crop(rng: np.random.Generator, size: int) -> np.ndarray:
    """A square crop of random scale and position, maybe flipped, as float32 in [0, 1]."""
    sources = _sources()
    src = sources[int(rng.integers(len(sources)))]
    w, h = src.size
    side = rng.uniform(0.3, 1.0) * min(w, h)
    x0 = rng.uniform(0, w - side)
    y0 = rng.uniform(0, h - side)
    crop = src.resize((size, size), Image.Resampling.BICUBIC, box=(x0, y0, x0 + side, y0 + side))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(crop, dtype=np.float32) / 255.0


def _colour_shift(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Mild per-channel gain, gamma and brightness changes."""
    gain = rng.uniform(0.92, 1.08, size=3).astype(np.float32)
    gamma = np.float32(rng.uniform(0.85, 1.18))
    brightness = np.float32(rng.uniform(-0.05, 0.05))
    return np.clip(np.power(x, gamma) * gain + brightness, 0.0, 1.0)


def _real_float(rng: np.random.Generator, size: int) -> np.ndarray:
    return _colour_shift(rng, _random_crop(rng, size))


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def make_real(rng: np.random.Generator, size: int) -> np.ndarray:
    """A real image: ``size`` x ``size`` x 3 uint8."""
    return _to_uint8(_real_float(rng, size))


def _soft_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """A feathered ellipse covering roughly 25-60% of the side, at a random position."""
    side = rng.uniform(0.25, 0.6) * size
    rx = side / 2 * rng.uniform(0.8, 1.0)
    ry = side / 2 * rng.uniform(0.95, 1.2)
    cx = rng.uniform(rx, size - rx)
    cy = rng.uniform(ry, size - ry)
    scale = 4  # draw supersampled for a smooth outline
    mask = Image.new("L", (size * scale, size * scale), 0)
    ImageDraw.Draw(mask).ellipse(((cx - rx) * scale, (cy - ry) * scale, (cx + rx) * scale, (cy + ry) * scale), fill=255)
    mask = mask.resize((size, size), Image.Resampling.BOX)
    mask = mask.filter(ImageFilter.GaussianBlur(radius=side * rng.uniform(0.06, 0.12)))
    return (np.asarray(mask, dtype=np.float32) / 255.0)[..., None]


def _textured_mask(rng: np.random.Generator, base: np.ndarray, candidates: int = 3) -> np.ndarray:
    """The most detailed of a few random soft masks: like a face, the manipulated region holds
    detail, so its traces do not vanish in a flat patch of sky."""
    grey = base.mean(axis=2)
    detail = np.zeros_like(grey)
    detail[1:-1, 1:-1] = np.abs(
        4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    )
    masks = [_soft_mask(rng, base.shape[0]) for _ in range(candidates)]
    scores = [float((m[..., 0] * detail).sum() / (m.sum() + 1e-6)) for m in masks]
    return masks[int(np.argmax(scores))]


def _upsample_artifacts(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Generator up-sampling traces: coarse nearest-neighbour blocks or a stride-2 checkerboard."""
    size = x.shape[0]
    if rng.random() < 0.5:
        factor = int(rng.integers(2, 5))
        small = max(1, round(size / factor))
        img = Image.fromarray(_to_uint8(x))
        img = img.resize((small, small), Image.Resampling.BOX)
        img = img.resize((size, size), Image.Resampling.NEAREST)
        return np.asarray(img, dtype=np.float32) / 255.0
    # Transposed convolution with stride 2: a faint zero-mean 2x2 periodic pattern.
    kernel = rng.normal(size=(2, 2, 3)).astype(np.float32)
    kernel -= kernel.mean(axis=(0, 1), keepdims=True)
    kernel /= np.abs(kernel).max() + 1e-6
    pattern = np.tile(kernel, (size // 2 + 1, size // 2 + 1, 1))[:size, :size]
    amplitude = np.float32(rng.uniform(0.025, 0.05))
    return np.clip(x + amplitude * pattern, 0.0, 1.0)


def _degrade(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Local blur and/or low-quality JPEG re-compression."""
    choice = int(rng.integers(3))  # 0 blur, 1 JPEG, 2 both
    img = Image.fromarray(_to_uint8(x))
    if choice in (0, 2):
        img = img.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.6, 1.5)))
    if choice in (1, 2):
        buffer = io.BytesIO()
        img.save(buffer, format="JPEG", quality=int(rng.integers(30, 61)), optimize=False)
        buffer.seek(0)
        img = Image.open(buffer).convert("RGB")
    return np.asarray(img, dtype=np.float32) / 255.0


def make_fake(rng: np.random.Generator, size: int) -> np.ndarray:
    """A fake image: a real-like image with one or two local manipulations, uint8 HxWx3."""
    base = _real_float(rng, size)
    n_kinds = 1 if rng.random() < 0.6 else 2
    kinds = {KINDS[i] for i in rng.choice(len(KINDS), size=n_kinds, replace=False)}
    mask = _textured_mask(rng, base)

    region = base
    if SPLICE in kinds:
        donor = _real_float(rng, size)
        # Face swaps colour-correct the pasted face: move the donor's channel means inside the
        # mask towards the base's, by a random amount.
        weight = mask.sum() + 1e-6
        shift = ((base - donor) * mask).sum(axis=(0, 1)) / weight
        region = np.clip(donor + np.float32(rng.uniform(0.6, 1.0)) * shift, 0.0, 1.0)
    if UPSAMPLE in kinds:
        region = _upsample_artifacts(rng, region)
    if DEGRADE in kinds:
        region = _degrade(rng, region)
    return _to_uint8(base * (1.0 - mask) + region * mask)


def save_jpeg(image: np.ndarray, path: Path, quality: int) -> None:
    """The one encoder for both classes: JPEG, fixed quality and subsampling, no metadata."""
    Image.fromarray(image).save(path, format="JPEG", quality=quality, subsampling=SUBSAMPLING, optimize=False)
