"""The forensic family: fixed high-pass statistics of an image at its native resolution, read by
a linear head (``../shared/docs/forensic-features.md`` for what they score on real sets).

A forensic network is an ordinary Keras model - raw RGB in [0, 255] in, ``probability_fake``
out - so every stage, the pyfunc, ``predict``, ``robustness`` and ``external`` run it like a CNN.
Its input has no fixed size (``(None, None, 3)``): it is always fed the whole image, never resized
(the ``native`` view, :mod:`deepfake_detection.data.views`). Everything before the head is fixed:

* :func:`ycbcr`: JFIF full-range YCbCr (a frozen ``Dense`` on the channel axis).
* ``residual_cooc`` (Fridrich and Kodovsky's rich models, simplified): 11 high-pass filters
  (:data:`RESIDUAL_FILTERS`: first, second and third order, the 3x3 "KB" and 5x5 "KV" kernels on Y;
  first, second order and KB on Cb and Cr), each 1-D filter applied along rows and along columns
  (a frozen 5x5 ``Conv2D``, no padding); 4 px of border dropped; residuals rounded and clipped to
  [-2, 2]; :class:`CooccurrenceHistogram` counts triples of horizontally and of vertically
  adjacent residuals (125 bins, index ``25 a + 5 b + c`` for the left/top value ``a``), the
  histograms of one filter averaged: 11 x 125 = 1,375 features.
* ``block_dct``: the 8x8 block DCT of ``Y - 128`` (with ``planes: ycbcr``, of Cb and Cr too;
  orthonormal DCT-II, blocks aligned at the top-left corner as JPEG's are; a frozen stride-8
  ``Conv2D``) and :class:`BlockDCTStatistics`: per plane and coefficient log mean |c|, log
  standard deviation and the share with |c| < 1, plus the first-digit (Benford) histogram of the
  AC coefficients with |c| >= 1: 64 x 3 + 9 = 201 features per plane.

Heads: :func:`linear_head` or :func:`gated_head`, fitted in closed form by ``linear_fit``; the custom
layers are registered with Keras (:func:`deepfake_detection.models.saved.load_model` loads them)."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

PACKAGE = "deepfake_detection"
FEATURES_LAYER = "features"  # the layer whose output is a forensic network's feature vector
TRUNCATION = 2  # residuals clipped to [-T, T]
BORDER = 4  # pixels dropped on each side of the residual maps
KERNEL = 5  # every residual filter is embedded in a 5x5 kernel (the KV kernel's size)

# name -> (kernel, channels it is applied to). 1-D kernels are applied along rows and columns.
RESIDUAL_FILTERS: dict[str, tuple[np.ndarray, tuple[str, ...]]] = {
    "first": (np.array([[-1.0, 1.0]]), ("Y", "Cb", "Cr")),
    "second": (np.array([[1.0, -2.0, 1.0]]), ("Y", "Cb", "Cr")),
    "third": (np.array([[1.0, -3.0, 3.0, -1.0]]), ("Y",)),
    "kb": (np.array([[-1.0, 2.0, -1.0], [2.0, -4.0, 2.0], [-1.0, 2.0, -1.0]]) / 4.0, ("Y", "Cb", "Cr")),
    "kv": (
        np.array(
            [
                [-1.0, 2.0, -2.0, 2.0, -1.0],
                [2.0, -6.0, 8.0, -6.0, 2.0],
                [-2.0, 8.0, -12.0, 8.0, -2.0],
                [2.0, -6.0, 8.0, -6.0, 2.0],
                [-1.0, 2.0, -2.0, 2.0, -1.0],
            ]
        )
        / 12.0,
        ("Y",),
    ),
}
CHANNELS = ("Y", "Cb", "Cr")
# JFIF full-range RGB -> YCbCr (ITU-R BT.601): rows are Y, Cb, Cr.
YCBCR_MATRIX = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float64
)
YCBCR_OFFSET = np.array([0.0, 128.0, 128.0])


def residual_maps() -> list[tuple[str, str, np.ndarray]]:
    """Every residual map as ``(feature name, channel, 5x5 kernel)``: the 1-D filters twice (along
    rows, and transposed along columns), the 2-D (symmetric) ones once. A 1-D kernel of length n
    sits in the centre row from column ``2 - (n - 1) // 2``: ``r[i] = sum_k f[k] x[i + k - (n-1)//2]``."""
    out = []
    for channel in CHANNELS:
        for name, (kernel, channels) in RESIDUAL_FILTERS.items():
            if channel not in channels:
                continue
            feature = f"{channel}_{name}"
            if kernel.shape[0] == 1:
                row = np.zeros((KERNEL, KERNEL))
                n = kernel.shape[1]
                start = KERNEL // 2 - (n - 1) // 2
                row[KERNEL // 2, start : start + n] = kernel[0]
                out += [(feature, channel, row), (feature, channel, row.T.copy())]
            else:
                full = np.zeros((KERNEL, KERNEL))
                pad = (KERNEL - kernel.shape[0]) // 2
                full[pad : pad + kernel.shape[0], pad : pad + kernel.shape[1]] = kernel
                out.append((feature, channel, full))
    return out


def residual_features() -> list[str]:
    """The residual co-occurrence features' filter names, in feature order (125 bins each)."""
    return list(dict.fromkeys(feature for feature, _, _ in residual_maps()))


@keras.saving.register_keras_serializable(package=PACKAGE)
class CooccurrenceHistogram(layers.Layer):
    """Quantised residual maps ``(batch, h, w, maps)`` -> co-occurrence features ``(batch, groups * 125)``.

    Drops ``border`` pixels on each side, rounds (half to even) and clips to ``[-T, T]``; per map
    the normalised histograms of horizontal and of vertical triples of neighbours (index
    ``(a + T) (2T + 1)^2 + (b + T) (2T + 1) + (c + T)``, ``a`` the left/top one); the histograms
    of the maps in one group (``groups[i]``: the map indices of feature ``i``) averaged.
    """

    def __init__(
        self, groups: list[list[int]], truncation: int = TRUNCATION, border: int = BORDER, sqrt: bool = False, **kwargs
    ):
        super().__init__(**kwargs)
        self.groups = [list(map(int, g)) for g in groups]
        self.truncation = int(truncation)
        self.border = int(border)
        self.sqrt = bool(sqrt)

    def _triples(self, q, axis: int):
        """The normalised (2T+1)^3 histogram of the triples of neighbours of ``q`` ``(batch, h, w)``
        along ``axis`` (2: horizontal, 1: vertical)."""
        bins = 2 * self.truncation + 1
        if axis == 2:
            a, b, c = q[:, :, :-2], q[:, :, 1:-1], q[:, :, 2:]
        else:
            a, b, c = q[:, :-2], q[:, 1:-1], q[:, 2:]
        index = ops.reshape((a * bins + b) * bins + c, (ops.shape(a)[0], -1))  # (batch, N)
        counts = ops.cast(ops.bincount(index, minlength=bins**3), "float32")  # one histogram per row
        total = ops.cast(ops.shape(index)[1], counts.dtype)
        return counts / ops.maximum(total, 1.0)

    def call(self, residuals):
        t, e = self.truncation, self.border
        q = ops.clip(ops.round(residuals[:, e:-e, e:-e, :]), -t, t)
        q = ops.cast(q + t, "int32")
        per_map = [
            0.5 * (self._triples(q[..., m], axis=2) + self._triples(q[..., m], axis=1))
            for m in range(int(residuals.shape[-1]))
        ]
        features = [ops.mean(ops.stack([per_map[m] for m in group], axis=0), axis=0) for group in self.groups]
        features = ops.concatenate(features, axis=-1)
        return ops.sqrt(features) if self.sqrt else features

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(self.groups) * (2 * self.truncation + 1) ** 3)

    def get_config(self):
        return {
            **super().get_config(),
            "groups": self.groups,
            "truncation": self.truncation,
            "border": self.border,
            "sqrt": self.sqrt,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class BlockDCTStatistics(layers.Layer):
    """8x8 block-DCT coefficients of ``planes`` planes ``(batch, h/8, w/8, 64 * planes)`` ->
    ``(batch, planes * (64 * 3 + 9))``, per plane: per coefficient log(mean |c| + eps),
    log(std + eps), share of |c| < 1; then the first-digit histogram (digits 1-9, normalised) of
    the AC coefficients (all but the first) with |c| >= 1."""

    def __init__(self, eps: float = 1e-3, planes: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.eps, self.planes = float(eps), int(planes)

    def call(self, coefficients):
        c = ops.reshape(coefficients, (ops.shape(coefficients)[0], -1, self.planes, 64))
        magnitude = ops.abs(c)
        mean_abs = ops.log(ops.mean(magnitude, axis=1) + self.eps)
        std = ops.log(ops.std(c, axis=1) + self.eps)
        small = ops.mean(ops.cast(magnitude < 1.0, c.dtype), axis=1)
        ac = magnitude[..., 1:]
        counted = ops.cast(ac >= 1.0, c.dtype)
        safe = ops.maximum(ac, 1.0)
        leading = ops.floor(safe / ops.power(10.0, ops.floor(ops.log(safe) / math.log(10.0))))
        digits = ops.one_hot(ops.cast(ops.clip(leading, 1, 9) - 1, "int32"), 9) * counted[..., None]
        benford = ops.sum(digits, axis=(1, 3)) / ops.maximum(ops.sum(counted, axis=(1, 3))[..., None], 1.0)
        per_plane = ops.concatenate([mean_abs, std, small, benford], axis=-1)  # (batch, planes, 201)
        return ops.reshape(per_plane, (ops.shape(coefficients)[0], self.planes * (64 * 3 + 9)))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.planes * (64 * 3 + 9))

    def get_config(self):
        return {**super().get_config(), "eps": self.eps, "planes": self.planes}


SPAM_T = 3  # SPAM's truncation: differences clipped to [-3, 3]


@keras.saving.register_keras_serializable(package=PACKAGE)
class SPAMFeatures(layers.Layer):
    """SPAM-686 (Pevny, Bas and Fridrich 2010; second order, T = 3) of a plane ``(batch, h, w, 1)``:
    for each of 8 directions ``d``, the differences ``D(p) = x(p) - x(p + d)`` rounded (half to even)
    and clipped to [-3, 3], and the Markov transition probabilities ``P(D(p + 2d) | D(p), D(p + d))``
    (343 values, index ``49 a + 7 b + c``; 0 where a pair never occurs); the 4 straight directions
    averaged, then the 4 diagonal ones: 686 features. A direction and its opposite see the same
    windows of four pixels, their triples reversed and negated, so the opposite's counts are the
    forward counts with the axes reversed and flipped (a rounding that is symmetric about 0)."""

    def __init__(self, sqrt: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.sqrt = bool(sqrt)

    @staticmethod
    def _counts(a, b, c):
        n = 2 * SPAM_T + 1
        q = [ops.cast(ops.clip(ops.round(v), -SPAM_T, SPAM_T) + SPAM_T, "int32") for v in (a, b, c)]
        index = ops.reshape((q[0] * n + q[1]) * n + q[2], (ops.shape(a)[0], -1))
        return ops.reshape(ops.cast(ops.bincount(index, minlength=n**3), "float32"), (-1, n, n, n))

    @staticmethod
    def _transitions(counts):
        n = 2 * SPAM_T + 1
        total = ops.sum(counts, axis=-1, keepdims=True)
        return ops.reshape(ops.where(total > 0, counts / ops.maximum(total, 1.0), 0.0), (-1, n**3))

    def _both_ways(self, d, slices):
        """Transition features of a direction and of its opposite, from its differences ``d``."""
        counts = self._counts(*(d[:, rows, cols] for rows, cols in slices))
        opposite = ops.flip(ops.transpose(counts, (0, 3, 2, 1)), axis=(1, 2, 3))
        return [self._transitions(counts), self._transitions(opposite)]

    def call(self, plane):
        x = plane[..., 0]
        whole, head, mid, tail = slice(None), slice(None, -2), slice(1, -1), slice(2, None)
        straight = self._both_ways(x[:, :, :-1] - x[:, :, 1:], [(whole, head), (whole, mid), (whole, tail)])
        straight += self._both_ways(x[:, :-1, :] - x[:, 1:, :], [(head, whole), (mid, whole), (tail, whole)])
        diagonal = self._both_ways(x[:, :-1, :-1] - x[:, 1:, 1:], [(head, head), (mid, mid), (tail, tail)])
        diagonal += self._both_ways(x[:, :-1, 1:] - x[:, 1:, :-1], [(head, tail), (mid, mid), (tail, head)])
        features = ops.concatenate([ops.mean(ops.stack(straight), axis=0), ops.mean(ops.stack(diagonal), axis=0)], -1)
        return ops.sqrt(features) if self.sqrt else features

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * (2 * SPAM_T + 1) ** 3)

    def get_config(self):
        return {**super().get_config(), "sqrt": self.sqrt}


# --------------------------------------------------------------------------- blocks


def native_input() -> keras.KerasTensor:
    """RGB of any size, float32 in [0, 255]: a forensic network sees the image's own pixels."""
    return keras.Input(shape=(None, None, 3), dtype="float32", name="image")


def ycbcr(x, name: str = "preprocess_ycbcr"):
    """JFIF full-range YCbCr, as a frozen ``Dense(3)`` over the channel axis."""
    layer = layers.Dense(3, trainable=False, name=name)
    out = layer(x)
    layer.set_weights([YCBCR_MATRIX.T.astype("float32"), YCBCR_OFFSET.astype("float32")])
    return out


def residual_block(x, name: str = "residual", *, sqrt: bool = False):
    """YCbCr ``(b, h, w, 3)`` -> :class:`CooccurrenceHistogram` features of every residual map."""
    maps = residual_maps()
    kernel = np.zeros((KERNEL, KERNEL, len(CHANNELS), len(maps)), dtype="float32")
    for m, (_, channel, k) in enumerate(maps):
        kernel[:, :, CHANNELS.index(channel), m] = k
    conv = layers.Conv2D(len(maps), KERNEL, padding="valid", use_bias=False, trainable=False, name=f"{name}_filters")
    residuals = conv(x)
    conv.set_weights([kernel])
    names = [feature for feature, _, _ in maps]
    groups = [[m for m, n in enumerate(names) if n == feature] for feature in residual_features()]
    # The 5x5 valid convolution already dropped 2 px a side; 2 more make BORDER.
    return CooccurrenceHistogram(groups, border=BORDER - KERNEL // 2, sqrt=sqrt, name=f"{name}_cooccurrence")(residuals)


def ycbcr_planes(x, name: str, planes: tuple[str, ...] = ("Y",), offset: float | None = None):
    """The ``planes`` of YCbCr ``(b, h, w, 3)`` as ``(b, h, w, len(planes))`` (a frozen 1x1
    ``Conv2D``), plus ``offset`` if given."""
    layer = layers.Conv2D(len(planes), 1, use_bias=offset is not None, trainable=False, name=name)
    out, kernel = layer(x), np.zeros((1, 1, 3, len(planes)), "float32")
    for k, plane in enumerate(planes):
        kernel[0, 0, CHANNELS.index(plane), k] = 1.0
    layer.set_weights([kernel] if offset is None else [kernel, np.full(len(planes), offset, "float32")])
    return out


def spam_block(x, name: str = "spam", *, sqrt: bool = False):
    """YCbCr ``(b, h, w, 3)`` -> :class:`SPAMFeatures` of Y."""
    luma = ycbcr_planes(x, f"{name}_luma")
    return SPAMFeatures(sqrt=sqrt, name=f"{name}_transitions")(luma)


def multiscale_residual_block(x, scales=(1,), *, sqrt: bool = False):
    """:func:`residual_block` at each scale: 1 is the image itself, ``s`` > 1 its ``s`` x ``s``
    block average (a lower-frequency view that blur, down-scaling and JPEG change less)."""
    features = []
    for scale in scales:
        y = x if scale == 1 else layers.AveragePooling2D(scale, name=f"residual_x{scale}_pool")(x)
        features.append(residual_block(y, "residual" if scale == 1 else f"residual_x{scale}", sqrt=sqrt))
    return features[0] if len(features) == 1 else layers.Concatenate(name="residual_scales")(features)


def dct_basis() -> np.ndarray:
    """The orthonormal 8x8 DCT-II basis as conv kernels ``(8, 8, 1, 64)``, coefficient ``8 u + v``."""
    k = np.arange(8)
    c = np.sqrt(2.0 / 8) * np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / 16)  # c[u, y]
    c[0] /= np.sqrt(2.0)
    basis = np.einsum("uy,vx->yxuv", c, c).reshape(8, 8, 64)
    return basis[:, :, None, :].astype("float32")


def block_dct_block(x, name: str = "dct", planes: tuple[str, ...] = ("Y",)):
    """YCbCr ``(b, h, w, 3)`` -> :class:`BlockDCTStatistics` of each of ``planes`` - 128 (blocks from
    the top-left; plane ``k``'s coefficients are channels ``64 k`` to ``64 k + 63``)."""
    shifted = ycbcr_planes(x, f"{name}_planes", planes, offset=-128.0)
    n, basis = len(planes), dct_basis()[:, :, 0, :]
    conv = layers.Conv2D(64 * n, 8, strides=8, padding="valid", use_bias=False, trainable=False, name=f"{name}_blocks")
    coefficients = conv(shifted)
    kernel = np.zeros((8, 8, n, 64 * n), "float32")
    for k in range(n):
        kernel[:, :, k, 64 * k : 64 * (k + 1)] = basis
    conv.set_weights([kernel])
    return BlockDCTStatistics(planes=n, name=f"{name}_statistics")(coefficients)


def linear_head(features, name: str = "head"):
    """Standardise (``head_standardize``) -> ``Dense(1, sigmoid)`` ``probability_fake``; both are set
    by :func:`set_linear_head` when the network is fitted."""
    x = layers.Normalization(axis=-1, name=f"{name}_standardize")(features)
    return layers.Dense(1, activation="sigmoid", dtype="float32", name="probability_fake")(x)


@keras.saving.register_keras_serializable(package=PACKAGE)
class GatedCombine(layers.Layer):
    """``[clean logit, degraded logit, gate logit]`` -> P(fake). The gate (a logistic regression that
    tells degraded copies from clean images) routes each image to the clean expert (gate P < 0.5) or
    to the expert fitted with degraded copies; each expert's logit is standardised by the mean and
    standard deviation of its logits on its own training rows (``standardization``: mean_c, std_c,
    mean_d, std_d, set at fitting), so both speak on one scale; then a sigmoid."""

    def build(self, input_shape):
        self.standardization = self.add_weight(
            shape=(4,),
            initializer=keras.initializers.Constant([0.0, 1.0, 0.0, 1.0]),
            trainable=False,
            name="standardization",
        )

    def call(self, inputs):
        clean, degraded, gate = inputs
        m = self.standardization
        z_clean, z_degraded = (clean - m[0]) / m[1], (degraded - m[2]) / m[3]
        return ops.sigmoid(ops.where(gate >= 0.0, z_degraded, z_clean))

    def compute_output_shape(self, input_shape):
        return input_shape[0]


GATED_HEADS = ("clean", "degraded", "gate")


def gated_head(features):
    """A standardised linear logit per head of :data:`GATED_HEADS` (``<head>_standardize``,
    ``<head>_logit``), combined by :class:`GatedCombine` into ``probability_fake``."""
    logits = []
    for head in GATED_HEADS:
        z = layers.Normalization(axis=-1, name=f"{head}_standardize")(features)
        logits.append(layers.Dense(1, dtype="float32", name=f"{head}_logit")(z))
    return GatedCombine(dtype="float32", name="probability_fake")(logits)


def set_linear_head(model: keras.Model, mean, variance, coef, intercept: float, name: str = "head") -> None:
    """Write a standardised logistic regression into a head: the features' ``mean`` and
    ``variance`` (``<name>_standardize``), then ``coef . z + intercept`` of the standardised
    features ``z`` (``<name>_logit``, or ``probability_fake`` for the single head ``head``)."""
    norm = model.get_layer(f"{name}_standardize")
    count = norm.get_weights()[2:]
    norm.set_weights([np.asarray(mean, "float32"), np.asarray(variance, "float32"), *count])
    norm.finalize_state()
    dense = model.get_layer("probability_fake" if name == "head" else f"{name}_logit")
    dense.set_weights([np.asarray(coef, "float32").reshape(-1, 1), np.asarray([intercept], "float32")])


def set_gate_standardization(model: keras.Model, clean: tuple[float, float], degraded: tuple[float, float]) -> None:
    """The experts' logit mean and standard deviation on their training rows, for :class:`GatedCombine`."""
    model.get_layer("probability_fake").set_weights([np.asarray([*clean, *degraded], "float32")])


def forensic_model(name: str, extract, head: str = "single") -> keras.Model:
    """``native_input -> ycbcr -> extract -> head`` (``single``: :func:`linear_head`; ``gated``:
    :func:`gated_head`), named ``name``."""
    inputs = native_input()
    features = layers.Identity(name=FEATURES_LAYER)(extract(ycbcr(inputs)))
    return keras.Model(inputs, (gated_head if head == "gated" else linear_head)(features), name=name)
