"""The forensic family's fixed features against the same statistics computed by hand (numpy,
loops over pixels, no Keras): the residual co-occurrence histograms and the block-DCT statistics
of tiny images, and the closed-form head."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
from scipy.fft import dctn

from deepfake_detection.explain.maps import energy_map
from deepfake_detection.models import forensic
from deepfake_detection.models.zoo import build_model

T = 2  # truncation
FILTERS_1D = {"first": [-1, 1], "second": [1, -2, 1], "third": [1, -3, 3, -1]}
KB = np.array([[-1, 2, -1], [2, -4, 2], [-1, 2, -1]]) / 4
KV = np.array([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]]) / 12
# The doc's filter set (../shared/docs/forensic-features.md), in the network's feature order.
FEATURES = [
    ("Y", "first"), ("Y", "second"), ("Y", "third"), ("Y", "kb"), ("Y", "kv"),
    ("Cb", "first"), ("Cb", "second"), ("Cb", "kb"),
    ("Cr", "first"), ("Cr", "second"), ("Cr", "kb"),
]  # fmt: skip


def features_of(model, image: np.ndarray) -> np.ndarray:
    extract = keras.Model(model.input, model.get_layer(forensic.FEATURES_LAYER).output)
    return np.asarray(extract(image[np.newaxis].astype("float32")))[0]


def ycbcr_by_hand(rgb: np.ndarray) -> dict[str, np.ndarray]:
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    return {
        "Y": 0.299 * r + 0.587 * g + 0.114 * b,
        "Cb": 128 - 0.168736 * r - 0.331264 * g + 0.5 * b,
        "Cr": 128 + 0.5 * r - 0.418688 * g - 0.081312 * b,
    }


def residuals_by_hand(x: np.ndarray, name: str) -> list[np.ndarray]:
    """Every residual map of one filter on an ``(h, w)`` plane, each on the image's own grid
    (NaN where the filter does not fit), by explicit sums."""
    h, w = x.shape
    maps = []
    if name in FILTERS_1D:
        f = FILTERS_1D[name]
        left = (len(f) - 1) // 2  # r[i] = sum_k f[k] x[i + k - left]
        for transpose in (False, True):
            plane = x.T if transpose else x
            r = np.full(plane.shape, np.nan)
            for i, j in itertools.product(range(plane.shape[0]), range(plane.shape[1])):
                cols = [j + k - left for k in range(len(f))]
                if min(cols) >= 0 and max(cols) < plane.shape[1]:
                    r[i, j] = sum(fk * plane[i, c] for fk, c in zip(f, cols))
            maps.append(r.T if transpose else r)
        return maps
    kernel = KB if name == "kb" else KV
    k = kernel.shape[0] // 2
    r = np.full((h, w), np.nan)
    for i, j in itertools.product(range(k, h - k), range(k, w - k)):
        r[i, j] = float((kernel * x[i - k : i + k + 1, j - k : j + k + 1]).sum())
    return [r]


def cooccurrence_by_hand(r: np.ndarray, border: int = 4) -> np.ndarray:
    """Normalised counts of (left, middle, right) and of (top, middle, bottom) quantised residual
    triples inside the image less ``border`` pixels a side, averaged: 125 bins, a*25 + b*5 + c."""
    q = np.clip(np.round(r[border:-border, border:-border]), -T, T).astype(int) + T
    hists = []
    for dy, dx in ((0, 1), (1, 0)):
        counts = np.zeros(125)
        for i, j in itertools.product(range(q.shape[0] - 2 * dy), range(q.shape[1] - 2 * dx)):
            a, b, c = q[i, j], q[i + dy, j + dx], q[i + 2 * dy, j + 2 * dx]
            counts[a * 25 + b * 5 + c] += 1
        hists.append(counts / counts.sum())
    return np.mean(hists, axis=0)


def test_residual_cooccurrence_equals_the_histograms_computed_by_hand():
    rgb = np.random.default_rng(0).integers(90, 140, size=(14, 13, 3)).astype(np.float64)
    model = build_model("residual_cooc", 64, _models())
    got = features_of(model, rgb)
    planes = ycbcr_by_hand(rgb)
    expected = [
        np.mean([cooccurrence_by_hand(r) for r in residuals_by_hand(planes[channel], name)], axis=0)
        for channel, name in FEATURES
    ]
    assert forensic.residual_features() == [f"{c}_{n}" for c, n in FEATURES]
    assert got.shape == (11 * 125,)
    np.testing.assert_allclose(got, np.concatenate(expected), atol=1e-6)


def test_a_flat_image_has_every_residual_triple_at_zero():
    model = build_model("residual_cooc", 64, _models())
    got = features_of(model, np.full((20, 24, 3), 77.0)).reshape(11, 125)
    zero = 2 * 25 + 2 * 5 + 2  # (0, 0, 0) after the +T shift
    assert np.allclose(got[:, zero], 1.0, atol=1e-6) and np.allclose(np.delete(got, zero, axis=1), 0.0)


def block_dct_by_hand(plane: np.ndarray) -> np.ndarray:
    """The 201 statistics of one plane's whole 8x8 blocks (scipy's orthonormal DCT-II)."""
    rows, cols = plane.shape[0] // 8 * 8, plane.shape[1] // 8 * 8
    blocks = np.array(
        [
            dctn(plane[by : by + 8, bx : bx + 8], norm="ortho").reshape(64)
            for by in range(0, rows, 8)
            for bx in range(0, cols, 8)
        ]
    )
    eps = 1e-3
    magnitude = np.abs(blocks)
    ac = magnitude[:, 1:][magnitude[:, 1:] >= 1]
    digits = np.array([int(f"{v:e}"[0]) for v in ac])
    return np.concatenate(
        [
            np.log(magnitude.mean(axis=0) + eps),
            np.log(blocks.std(axis=0) + eps),
            (magnitude < 1).mean(axis=0),
            np.bincount(digits, minlength=10)[1:] / len(digits),
        ]
    )


@pytest.mark.parametrize("planes", ["y", "ycbcr"])
def test_block_dct_statistics_equal_scipy_dct_by_hand(planes):
    from deepfake_detection.models.networks import BlockDCTParams

    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(24, 17, 3)).astype(np.float64)  # 3 x 2 whole blocks; the rest dropped
    params = _models().model_copy(update={"block_dct": BlockDCTParams(planes=planes)})
    got = features_of(build_model("block_dct", 64, params), rgb)
    by_hand = ycbcr_by_hand(rgb)
    expected = np.concatenate(
        [block_dct_by_hand(by_hand[p] - 128) for p in (("Y",) if planes == "y" else ("Y", "Cb", "Cr"))]
    )
    assert got.shape == ((201,) if planes == "y" else (603,))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def spam_by_hand(y: np.ndarray, t: int = 3) -> np.ndarray:
    """SPAM-686 of a plane, each of the 8 directions walked explicitly (Pevny et al. 2010)."""

    def direction(dy, dx):
        n = 2 * t + 1
        counts = np.zeros((n * n, n))
        h, w = y.shape
        for i, j in itertools.product(range(h), range(w)):
            window = [(i + k * dy, j + k * dx) for k in range(4)]
            if all(0 <= r < h and 0 <= c < w for r, c in window):
                d = [int(np.clip(np.round(y[window[k]] - y[window[k + 1]]), -t, t)) + t for k in range(3)]
                counts[d[0] * n + d[1], d[2]] += 1
        total = counts.sum(axis=1, keepdims=True)
        return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0).ravel()

    straight = np.mean([direction(*d) for d in ((0, 1), (0, -1), (1, 0), (-1, 0))], axis=0)
    diagonal = np.mean([direction(*d) for d in ((1, 1), (-1, -1), (1, -1), (-1, 1))], axis=0)
    return np.concatenate([straight, diagonal])


def test_spam_features_equal_the_transition_probabilities_walked_by_hand():
    from deepfake_detection.models.networks import ResidualParams

    rgb = np.random.default_rng(4).integers(100, 108, size=(15, 12, 3)).astype(np.float64)
    params = _models().model_copy(update={"residual_cooc": ResidualParams(spam=True)})
    got = features_of(build_model("residual_cooc", 64, params), rgb)
    assert got.shape == (11 * 125 + 686,)
    np.testing.assert_allclose(got[11 * 125 :], spam_by_hand(ycbcr_by_hand(rgb)["Y"]), atol=1e-6)


def test_forensic_networks_take_any_size_and_the_head_is_a_standardised_logistic_regression():
    model = build_model("block_dct", 64, _models())
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, size=s + (3,)).astype("float32") for s in ((32, 40), (57, 33))]
    feats = np.stack([features_of(model, im) for im in images])
    mean, var = feats.mean(axis=0), feats.var(axis=0) + 1.0
    coef, intercept = rng.normal(size=feats.shape[1]), 0.3
    forensic.set_linear_head(model, mean, var, coef, intercept)
    expected = 1 / (1 + np.exp(-(((feats - mean) / np.sqrt(var)) @ coef + intercept)))
    got = [float(np.asarray(model(im[np.newaxis]))[0, 0]) for im in images]
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_energy_map_has_the_image_size_and_is_flat_on_a_flat_image():
    model = build_model("residual_cooc", 64, _models())
    image = np.full((30, 22, 3), 50.0)
    image[10:20, 5:15] = np.random.default_rng(3).integers(0, 256, size=(10, 10, 3))
    heat = energy_map(model, image)
    assert heat.shape == (30, 22) and heat.max() == pytest.approx(1.0)
    assert heat[:4, :].max() < 1e-6 and heat[12:18, 7:13].min() > 0.01  # energy where the noise is only


def _models():
    from deepfake_detection.config import ModelsParams

    return ModelsParams()
