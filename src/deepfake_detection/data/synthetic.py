"""Synthesized fakes for training, made from real training images inside the input pipeline
(``data.augment``): self-blended fakes (a real face blended with a jittered copy of itself) and
region-swap fakes (a facial region of another real face pasted in). Both are stateless and seeded
per element, like the rest of the augmentation, and relabel the real image they change as fake."""

from __future__ import annotations

import tensorflow as tf


def _ellipse_mask(height: tf.Tensor, width: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """A soft elliptical mask ``(h, w, 1)`` in [0, 1] over the centre of the image (a face crop's
    inner region): centre jittered by up to 5%, radii 25-40% of the width and 30-45% of the
    height, an edge that fades over about a tenth of the radius."""
    u = tf.random.stateless_uniform([5], seed=seed)
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    cy, cx = h * (0.5 + (u[0] - 0.5) * 0.1), w * (0.5 + (u[1] - 0.5) * 0.1)
    ry, rx = h * (0.30 + 0.15 * u[2]), w * (0.25 + 0.15 * u[3])
    softness = 0.05 + 0.15 * u[4]
    y = (tf.range(h) + 0.5 - cy) / ry
    x = (tf.range(w) + 0.5 - cx) / rx
    r = tf.sqrt(y[:, tf.newaxis] ** 2 + x[tf.newaxis, :] ** 2)
    return tf.clip_by_value((1.0 - r) / softness, 0.0, 1.0)[..., tf.newaxis]


def self_blend(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """A self-blended fake (Shiohara & Yamasaki, CVPR 2022) of one float32 ``(h, w, 3)`` image in
    [0, 255]: a copy of it, colour-jittered (per-channel gain 0.9-1.1 and shift +-8, a little
    blur or sharpening) and geometry-jittered (scale 0.97-1.03, shift up to 2%), blended back in
    through :func:`_ellipse_mask` at a strength of 0.5 to 1. Seeded: the same seed, the same fake."""
    seeds = tf.random.split(seed, 4)
    u = tf.random.stateless_uniform([9], seed=seeds[0])
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    source = image * (0.9 + 0.2 * u[0:3]) + (u[3:6] - 0.5) * 16.0
    blurred = tf.nn.avg_pool2d(source[tf.newaxis], 3, 1, "SAME")[0]
    source = source + (u[6] - 0.5) * 2.0 * (source - blurred)  # blur (< 0) or sharpen (> 0)
    scale = 0.97 + 0.06 * u[7]
    shift = (tf.random.stateless_uniform([2], seed=seeds[1]) - 0.5) * 0.04 * tf.stack([w, h])
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    inv = 1.0 / scale  # output (x, y) samples input ((x - cx - dx) / s + cx, ...)
    transform = tf.stack([inv, 0.0, cx - inv * (cx + shift[0]), 0.0, inv, cy - inv * (cy + shift[1]), 0.0, 0.0])
    source = tf.raw_ops.ImageProjectiveTransformV3(
        images=source[tf.newaxis],
        transforms=transform[tf.newaxis],
        output_shape=shape[:2],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )[0]
    mask = _ellipse_mask(shape[0], shape[1], seeds[2]) * (0.5 + 0.5 * u[8])
    return tf.clip_by_value(mask * source + (1.0 - mask) * image, 0.0, 255.0)


def maybe_self_blend(image: tf.Tensor, label: tf.Tensor, seed: tf.Tensor, probability: float):
    """With ``probability``, a real image (label 0) becomes a :func:`self_blend` fake (label 1);
    fakes and the other reals pass unchanged."""
    seeds = tf.random.split(seed, 2)
    draw = tf.random.stateless_uniform([], seed=seeds[0])
    blend = tf.logical_and(tf.equal(label, 0.0), draw < probability)
    image = tf.cond(blend, lambda: self_blend(image, seeds[1]), lambda: image)
    return image, tf.where(blend, tf.constant(1.0, label.dtype), label)


# Where a facial region lies in an aligned face crop, as fractions of the crop's height and width:
# centre (y, x) and radii (y, x) of a soft ellipse (from the mean CIPLAB real face). CIPLAB's
# composites replace any of the left eye, right eye, nose and mouth (a 4-bit code in their names).
FACE_REGIONS = {
    "left_eye": (0.45, 0.38, 0.07, 0.11),
    "right_eye": (0.45, 0.64, 0.07, 0.11),
    "nose": (0.58, 0.51, 0.11, 0.09),
    "mouth": (0.77, 0.51, 0.07, 0.15),
}


def _ellipse(h: tf.Tensor, w: tf.Tensor, region: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
    """A soft ellipse ``(h, w)`` over ``region`` (centre y, x, radii y, x as fractions), its centre
    jittered by up to 4% of the crop, radii scaled by 0.85-1.15, edge feathered over 15-35%."""
    cy, cx = h * (region[0] + (u[0] - 0.5) * 0.08), w * (region[1] + (u[1] - 0.5) * 0.08)
    scale = 0.85 + 0.3 * u[2]
    ry, rx = h * region[2] * scale, w * region[3] * scale
    y = (tf.range(h) + 0.5 - cy) / ry
    x = (tf.range(w) + 0.5 - cx) / rx
    r = tf.sqrt(y[:, tf.newaxis] ** 2 + x[tf.newaxis, :] ** 2)
    return tf.clip_by_value((1.0 - r) / (0.15 + 0.2 * u[3]), 0.0, 1.0)


def _region_mask(height: tf.Tensor, width: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """A soft mask ``(h, w, 1)`` over some of :data:`FACE_REGIONS`: each region with probability
    1/2, at least one (as CIPLAB's composites replace one to four of them)."""
    n = len(FACE_REGIONS)
    u = tf.random.stateless_uniform([n, 5], seed=seed)
    chosen = u[:, 4] < 0.5
    chosen = tf.cond(
        tf.reduce_any(chosen), lambda: chosen, lambda: tf.equal(tf.range(n), tf.argmax(u[:, 4], output_type=tf.int32))
    )
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    table = tf.constant(list(FACE_REGIONS.values()), tf.float32)
    masks = tf.stack([_ellipse(h, w, table[i], u[i]) for i in range(n)])
    masks = masks * tf.cast(chosen, tf.float32)[:, tf.newaxis, tf.newaxis]
    return tf.reduce_max(masks, axis=0)[..., tf.newaxis]


def region_swap(image: tf.Tensor, donor: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """A region-swap fake of one float32 ``(h, w, 3)`` image in [0, 255]: the same facial regions
    (eyes, nose, mouth: :func:`_region_mask`) of ``donor``, another real face (resized to the
    image's size when it differs), colour-matched to the image inside the region (per-channel
    mean and standard deviation under the mask) and pasted through the feathered mask. Seeded."""
    shape = tf.shape(image)
    donor = tf.cond(
        tf.reduce_all(tf.equal(tf.shape(donor)[:2], shape[:2])),
        lambda: donor,
        lambda: tf.image.resize(donor, shape[:2], antialias=True),
    )
    mask = _region_mask(shape[0], shape[1], seed)
    weight = tf.reduce_sum(mask) + 1e-6

    def stats(x):
        mean = tf.reduce_sum(x * mask, axis=[0, 1]) / weight
        std = tf.sqrt(tf.reduce_sum(tf.square(x - mean) * mask, axis=[0, 1]) / weight + 1.0)
        return mean, std

    (mean_i, std_i), (mean_d, std_d) = stats(image), stats(donor)
    matched = (donor - mean_d) * (std_i / std_d) + mean_i
    return tf.clip_by_value(mask * matched + (1.0 - mask) * image, 0.0, 255.0)


def maybe_region_swap(image: tf.Tensor, label: tf.Tensor, donor: tf.Tensor, seed: tf.Tensor, probability: float):
    """With ``probability``, a real image (label 0) becomes a :func:`region_swap` fake (label 1)
    with a region of ``donor``; fakes and the other reals pass unchanged."""
    seeds = tf.random.split(seed, 2)
    draw = tf.random.stateless_uniform([], seed=seeds[0])
    swap = tf.logical_and(tf.equal(label, 0.0), draw < probability)
    image = tf.cond(swap, lambda: region_swap(image, donor, seeds[1]), lambda: image)
    return image, tf.where(swap, tf.constant(1.0, label.dtype), label)
