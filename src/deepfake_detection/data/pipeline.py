"""The tf.data input pipeline: manifest rows -> batches of ``(pixels, label)``.

Images stream from disk (only the list of paths is held in memory): read, decode to RGB,
resize to ``image_size`` x ``image_size`` (bilinear, antialiased) and hand over float32
pixels in [0, 255]; the models rescale inside themselves. Labels are float32, 1.0 = fake.
A dataset written by ``ingest --shards`` streams from its TFRecord shards instead (data/shards.py:
the manifest's paths name records, ``<shard>#<name>``), through the same decode, resize and
augmentation; shuffling then interleaves the shards and shuffles a bounded buffer of records.

Decoding and resizing are :mod:`deepfake_detection.data.decode`'s (``decode_image``, ``resize``,
``decode_resize``, re-exported here), the functions serving decodes with.

Training augmentation (``augment=AugmentParams(...)``) is stateless and seeded per element:
every element draws its own seed from ``tf.data.Dataset.random(seed)``, so the same seed
gives the same batches whatever the parallelism, and each new pass over the dataset (each
epoch) draws new seeds, as the shuffle draws a new order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from deepfake_detection import LABELS, SPLITS
from deepfake_detection.config import AugmentParams, DegradeParams
from deepfake_detection.data import shards, views
from deepfake_detection.data.decode import decode_image, decode_resize, resize  # also imported from here
from deepfake_detection.data.manifest import class_weights  # noqa: F401  (re-exported for training code)
from deepfake_detection.data.synthetic import maybe_region_swap, maybe_self_blend

AUTOTUNE = tf.data.AUTOTUNE
REQUIRED_COLUMNS = ("path", "label", "split")
_N_OP_SEEDS = 6  # geometry, flip, brightness, contrast, jpeg, (spare)


# ---------------------------------------------------------------- manifest access


def _check_manifest(manifest: pd.DataFrame, split: str) -> pd.DataFrame:
    """The rows of ``split``, in manifest order; ValueError naming what to fix otherwise."""
    if not isinstance(manifest, pd.DataFrame):
        raise ValueError(
            f"manifest must be a pandas DataFrame (read artifacts/manifest.csv), not {type(manifest).__name__}"
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in manifest.columns]
    if missing:
        raise ValueError(
            f"manifest lacks the column(s) {missing}; it needs {list(REQUIRED_COLUMNS)} "
            f"(has {list(manifest.columns)}): re-run the prepare stage"
        )
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {list(SPLITS)}")
    rows = manifest[manifest["split"] == split]
    if rows.empty:
        counts = manifest["split"].value_counts().to_dict()
        raise ValueError(
            f"split {split!r} has no rows in the manifest (rows per split: {counts}): "
            "re-run prepare, or check data.split in params.yaml and the data folder"
        )
    bad = sorted(set(rows["label"].astype(str)) - set(LABELS))
    if bad:
        raise ValueError(f"split {split!r} has unknown labels {bad}: labels must be one of {list(LABELS)}")
    return rows


def labels_of(manifest: pd.DataFrame, split: str) -> np.ndarray:
    """Class ids (0 = real, 1 = fake) of the rows of ``split``, in manifest order."""
    rows = _check_manifest(manifest, split)
    return rows["label"].astype(str).map(LABELS.index).to_numpy(dtype=np.int64)


def paths_of(manifest: pd.DataFrame, split: str, root: Path = Path(".")) -> list[str]:
    """Image file paths (``root / path``) of the rows of ``split``, in manifest order."""
    rows = _check_manifest(manifest, split)
    return [str(Path(root) / p) for p in rows["path"].astype(str)]


# ---------------------------------------------------------------- decode / resize


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


def _check_files_exist(paths: Sequence[str], hint: str) -> None:
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise FileNotFoundError(f"{len(missing)} of {len(paths)} image files not found ({shown}): {hint}")


def _load(path: tf.Tensor, image_size: int) -> tf.Tensor:
    return decode_resize(tf.io.read_file(path), image_size)


def _view(contents: tf.Tensor, image_size: int, patch_size: int | None) -> tf.Tensor:
    """Encoded bytes resized to ``image_size``, or (patch view) their central ``patch_size`` crop
    at native size."""
    if patch_size is None:
        return decode_resize(contents, image_size)
    return views.center_crop(decode_image(contents), patch_size)


# ---------------------------------------------------------------- augmentation


def _rotate_zoom(image: tf.Tensor, seed: tf.Tensor, rotation: float, zoom: float) -> tf.Tensor:
    """Rotate by U(-rotation, rotation) of a turn and scale by U(1 - zoom, 1 + zoom) about the
    centre (scale > 1 zooms out), reflecting at the borders as Keras' RandomRotation/RandomZoom."""
    u = tf.random.stateless_uniform([2], seed=seed, minval=-1.0, maxval=1.0)
    angle = u[0] * rotation * 2.0 * math.pi
    scale = 1.0 + u[1] * zoom
    size = tf.cast(tf.shape(image)[0], tf.float32)  # square after resize
    c = (size - 1.0) / 2.0
    cos, sin = scale * tf.cos(angle), scale * tf.sin(angle)
    # output (x, y) samples input (cos*(x-c) - sin*(y-c) + c, sin*(x-c) + cos*(y-c) + c)
    transform = tf.stack([cos, -sin, c - cos * c + sin * c, sin, cos, c - sin * c - cos * c, 0.0, 0.0])
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[tf.newaxis],
        transforms=transform[tf.newaxis],
        output_shape=tf.shape(image)[:2],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    return out[0]


def gaussian_blur(image: tf.Tensor, sigma: tf.Tensor | float, radius: int) -> tf.Tensor:
    """Gaussian blur of one float32 ``(h, w, 3)`` image, standard deviation ``sigma`` pixels (a
    tensor is fine), kernel truncated at ``radius`` pixels (a Python int, >= 3 sigma). Separable;
    at the borders the kernel is renormalised over the pixels inside the image, so any image
    size works and a flat image stays flat. ``sigma`` near 0 leaves the image as it is."""
    sigma = tf.maximum(tf.cast(sigma, tf.float32), 1e-3)
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * tf.square(x / sigma))
    kernel = kernel / tf.reduce_sum(kernel)
    rows = tf.tile(kernel[:, tf.newaxis, tf.newaxis, tf.newaxis], [1, 1, 3, 1])
    cols = tf.tile(kernel[tf.newaxis, :, tf.newaxis, tf.newaxis], [1, 1, 3, 1])

    def conv(x):
        x = tf.nn.depthwise_conv2d(x, rows, [1, 1, 1, 1], "SAME")
        return tf.nn.depthwise_conv2d(x, cols, [1, 1, 1, 1], "SAME")

    batch = image[tf.newaxis]
    return (conv(batch) / conv(tf.ones_like(batch)))[0]


def _jpeg_recompress(image: tf.Tensor, seed: tf.Tensor, low: int, high: int) -> tf.Tensor:
    """Re-encode a float32 [0, 255] image as JPEG at a quality ~ U{low..high} (seeded)."""
    quality = tf.random.stateless_uniform([], seed=seed, minval=low, maxval=high + 1, dtype=tf.int32)
    encoded = tf.image.adjust_jpeg_quality(tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8), quality)
    return tf.cast(encoded, tf.float32)


def degrade(image: tf.Tensor, seed: tf.Tensor, params: DegradeParams) -> tf.Tensor:
    """CNNDetection's degradation (Wang et al., CVPR 2020) of one float32 ``(h, w, 3)`` image in
    [0, 255]: with probability ``blur_prob`` a Gaussian blur of sigma ~ U(``blur_sigma``), then with
    probability ``jpeg_prob`` a JPEG re-compression at quality ~ U{``jpeg_quality``}. Seeded: the
    same seed, the same result."""
    seeds = tf.random.split(seed, 4)
    if params.blur_prob > 0:
        low, high = params.blur_sigma
        sigma = tf.random.stateless_uniform([], seed=seeds[1], minval=low, maxval=high)
        radius = max(1, math.ceil(3 * high))
        image = tf.cond(
            tf.random.stateless_uniform([], seed=seeds[0]) < params.blur_prob,
            lambda: tf.clip_by_value(gaussian_blur(image, sigma, radius), 0.0, 255.0),
            lambda: image,
        )
    if params.jpeg_prob > 0:
        low, high = params.jpeg_quality
        image = tf.cond(
            tf.random.stateless_uniform([], seed=seeds[2]) < params.jpeg_prob,
            lambda: _jpeg_recompress(image, seeds[3], low, high),
            lambda: image,
        )
    return image


def _train_element(
    data: tf.Tensor,
    label: tf.Tensor,
    seed: tf.Tensor,
    image_size: int,
    augment: AugmentParams,
    patch_size: int | None,
    donor: tf.Tensor | None = None,
):
    """One training element: decode at native size, maybe self-blend, maybe region-swap with the
    encoded ``donor`` (another real training image), maybe degrade (blur, JPEG), bring to the view
    (resize, or a random patch), augment."""
    seeds = tf.random.split(seed, 3)
    image = decode_image(data)
    if augment.self_blend > 0:
        image, label = maybe_self_blend(image, label, seeds[0], augment.self_blend)
    if donor is not None:  # its own seed: the others stay as they were
        swap_seed = tf.random.experimental.stateless_fold_in(seed, 4)
        image, label = maybe_region_swap(image, label, decode_image(donor), swap_seed, augment.region_swap)
    if augment.degrade.blur_prob > 0 or augment.degrade.jpeg_prob > 0:  # its own seed: the others stay as they were
        image = degrade(image, tf.random.experimental.stateless_fold_in(seed, 3), augment.degrade)
    image = resize(image, image_size) if patch_size is None else views.random_crop(image, patch_size, seeds[1])
    return augment_image(image, seeds[2], augment), label


def augment_image(image: tf.Tensor, seed: tf.Tensor, params: AugmentParams) -> tf.Tensor:
    """Seeded light augmentation of one float32 [0, 255] image; returns the same shape and range.
    ``seed`` is a shape-[2] int tensor: the same seed gives the same result."""
    seeds = tf.random.split(seed, _N_OP_SEEDS)
    if params.rotation > 0 or params.zoom > 0:
        image = _rotate_zoom(image, seeds[0], params.rotation, params.zoom)
    if params.flip:
        image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    if params.brightness > 0:
        image = tf.image.stateless_random_brightness(image, params.brightness * 255.0, seeds[2])
    if params.contrast > 0:
        image = tf.image.stateless_random_contrast(image, 1.0 - params.contrast, 1.0 + params.contrast, seeds[3])
    image = tf.clip_by_value(image, 0.0, 255.0)
    if params.jpeg_quality is not None:  # every image; augment.degrade's JPEG is the probabilistic one
        image = _jpeg_recompress(image, seeds[4], *params.jpeg_quality)
    return image


# ---------------------------------------------------------------- datasets


def make_dataset(
    manifest: pd.DataFrame,
    split: str,
    image_size: int,
    batch_size: int,
    *,
    augment: AugmentParams | None = None,
    shuffle: bool = False,
    seed: int = 42,
    root: Path = Path("."),
    repeat: bool = False,
    patch_size: int | None = None,
) -> tf.data.Dataset:
    """Batches ``(pixels float32 (b, s, s, 3) in [0, 255], labels float32 (b,), 1.0 = fake)`` of
    the ``split`` rows of the manifest, in manifest order unless ``shuffle``.

    ``augment`` turns on the seeded training augmentation; ``shuffle`` reshuffles every pass
    (seeded, so the same seed gives the same sequence of epochs); ``repeat`` makes it endless.
    Paths in the manifest are relative to ``root``. ``patch_size`` (the ``patches`` view, see
    data/views.py): no resize; training elements are random ``patch_size`` crops at native
    resolution, the others their central crop (scoring a whole image is views.score_image's).
    ``augment.self_blend`` turns some real training images into fakes (label 1).
    Manifest paths that name shard records (``ingest --shards``) are read from the shards
    (:func:`~deepfake_detection.data.shards.records_dataset`), in manifest order unless ``shuffle``.
    """
    _check_positive(image_size=image_size, batch_size=batch_size)
    if augment is not None and not isinstance(augment, AugmentParams):
        raise ValueError(f"augment must be an AugmentParams or None, not {type(augment).__name__}")
    if augment is not None and split != "train":  # self-blending relabels images: never outside training
        raise ValueError(f"augmentation is for the training split only, not {split!r}: pass augment=None")
    paths = paths_of(manifest, split, root)
    labels = labels_of(manifest, split).astype(np.float32)
    if shards.split_ref(paths[0]) is not None:  # `ingest --shards`: (encoded bytes, label) from the shards
        ds, read = shards.records_dataset(paths, labels, shuffle=shuffle, seed=seed), tf.identity
    else:
        _check_files_exist(
            paths, f"manifest paths are relative to root={str(root)!r}: run from the project root or re-run prepare"
        )
        ds, read = tf.data.Dataset.from_tensor_slices((np.asarray(paths, dtype=object), labels)), tf.io.read_file
        if shuffle:  # shuffle paths, not pixels: a full-size buffer costs only the strings
            ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    if augment is None:
        ds = ds.map(
            lambda p, y: (_view(read(p), image_size, patch_size), y), num_parallel_calls=AUTOTUNE, deterministic=True
        )
    else:
        # one [2] seed per element, new ones on each pass over the dataset
        element_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        donors = (_donors(paths, labels, seed),) if augment.region_swap > 0 else ()  # a real image per element
        ds = tf.data.Dataset.zip(ds, element_seeds, *donors)
        ds = ds.map(
            lambda py, s, *d: _train_element(
                read(py[0]), py[1], s, image_size, augment, patch_size, donor=read(d[0]) if d else None
            ),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def _donors(paths: list[str], labels: np.ndarray, seed: int) -> tf.data.Dataset:
    """Endless references (paths, or shard records) of the real images among ``paths``, reshuffled
    on every pass: the donors of region-swap fakes."""
    real = [p for p, y in zip(paths, labels) if y == 0]
    if not real:
        raise ValueError("augment.region_swap needs real training images to take regions from; there are none")
    if shards.split_ref(real[0]) is not None:
        donors = shards.records_dataset(real, np.zeros(len(real), np.float32), shuffle=True, seed=seed + 1)
        return donors.map(lambda data, _: data).repeat()
    donors = tf.data.Dataset.from_tensor_slices(np.asarray(real, dtype=object))
    return donors.shuffle(len(real), seed=seed + 1, reshuffle_each_iteration=True).repeat()


def image_dataset_from_paths(paths: Sequence[str], image_size: int, batch_size: int) -> tf.data.Dataset:
    """Batches of float32 ``(b, s, s, 3)`` pixels in [0, 255] of arbitrary image files, in the
    given order, decoded and resized as :func:`make_dataset` does (for prediction)."""
    _check_positive(image_size=image_size, batch_size=batch_size)
    if isinstance(paths, (str, Path)):
        raise ValueError("paths must be a list of image paths, not a single path")
    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError("paths is empty: give at least one image file")
    _check_files_exist(paths, "check the paths (relative ones are taken from the current directory)")
    ds = tf.data.Dataset.from_tensor_slices(np.asarray(paths, dtype=object))
    ds = ds.map(lambda p: _load(p, image_size), num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(AUTOTUNE)
