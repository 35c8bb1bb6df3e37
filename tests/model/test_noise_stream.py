"""The light CNN's SRM noise stream (``models.light_se_cnn.stream``): fixed high-pass residuals of
every colour channel, truncated, as a first layer beside or instead of the pixels."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest

from deepfake_detection.config import parse_params
from deepfake_detection.models.blocks import SRM_KERNELS, SRM_TRUNCATION
from deepfake_detection.models.zoo import build_model, last_conv_layer_name


def _models(stream: str):
    return parse_params({"models": {"light_se_cnn": {"stream": stream, "filters": [8, 16]}}}).models


def _by_hand(image: np.ndarray) -> np.ndarray:
    """Each SRM kernel on each channel ('same' zero padding), clipped to [-T, T], divided by T:
    channel c * 3 + k, as a depthwise convolution orders them."""
    h, w, _ = image.shape
    padded = np.pad(image.astype(np.float64), ((2, 2), (2, 2), (0, 0)))
    out = np.zeros((h, w, 3 * len(SRM_KERNELS)))
    for c in range(3):
        for k, kernel in enumerate(SRM_KERNELS):
            for i in range(h):
                for j in range(w):
                    out[i, j, c * len(SRM_KERNELS) + k] = np.sum(padded[i : i + 5, j : j + 5, c] * kernel)
    return np.clip(out, -SRM_TRUNCATION, SRM_TRUNCATION) / SRM_TRUNCATION


def test_the_noise_stream_equals_truncated_srm_residuals_computed_by_hand():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(32, 32, 3)).astype(np.float32)
    image[:, :16] = 128  # a flat half: zero residuals away from its edges
    model = build_model("light_se_cnn", 32, _models("noise"), seed=1)
    stream = keras.Model(model.input, model.get_layer("noise_scale").output)
    got = np.asarray(stream(image[np.newaxis]))[0]
    np.testing.assert_allclose(got, _by_hand(image), atol=1e-5)
    assert np.abs(got[2:-2, 2:14]).max() < 1e-5  # inside the flat half
    assert not model.get_layer("noise_srm").trainable


@pytest.mark.parametrize(("stream", "channels"), [("rgb", 3), ("noise", 9), ("both", 12)])
def test_the_first_convolution_sees_the_chosen_stream(stream, channels):
    model = build_model("light_se_cnn", 32, _models(stream), seed=1)
    first = next(layer for layer in model.layers if layer.name.endswith("_conv"))
    assert first.kernel.shape[2] == channels
    assert last_conv_layer_name(model)  # Grad-CAM still finds its layer


def test_a_noise_stream_model_loads_without_our_package(tmp_path):
    model = build_model("light_se_cnn", 32, _models("both"), seed=1)
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys, numpy as np, keras\n"
        "m = keras.models.load_model('m.keras', safe_mode=True)\n"
        "assert not any(n.startswith('deepfake_detection') for n in sys.modules)\n"
        "np.save('y.npy', np.asarray(m(np.load('x.npy'), training=False)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), np.asarray(model(x, training=False)), atol=1e-5)
