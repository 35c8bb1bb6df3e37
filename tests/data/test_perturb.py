"""Test-time perturbations (data/perturb.py) and the training-time degradation augmentation
(data.augment.degrade in data/pipeline.py): seeded, and each does what its name says."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from deepfake_detection.config import AugmentParams, ConfigError, DegradeParams, parse_params
from deepfake_detection.data.perturb import (
    decode_rgb,
    high_frequency_energy,
    image_seed,
    perturb,
)
from deepfake_detection.data.pipeline import degrade, gaussian_blur, make_dataset

NO_AUG = dict(flip=False, rotation=0.0, zoom=0.0, brightness=0.0, contrast=0.0)


def _noisy(seed: int = 0, h: int = 40, w: int = 48) -> np.ndarray:
    """A smooth gradient with sharp noise on top: plenty of high-frequency energy to lose."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(40, 200, w)[None, :, None] * np.ones((h, 1, 3))
    return np.clip(ramp + rng.normal(0, 35, (h, w, 3)), 0, 255).astype(np.uint8)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _format(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as img:
        return img.format


# ---------------------------------------------------------------- perturbations


def test_each_perturbation_is_deterministic_and_keeps_the_size():
    clean = _png(_noisy())
    for ops in (
        {"jpeg": 50},
        {"blur": 1.0},
        {"downscale": 0.5},
        {"noise": 8.0},
        {"downscale": 0.5, "blur": 1.0, "jpeg": 75},
    ):
        a, b = perturb(clean, ops, seed=3), perturb(clean, ops, seed=3)
        assert a == b, ops
        assert decode_rgb(a).shape == (40, 48, 3), ops
    assert perturb(clean, {}, seed=0) is clean  # nothing to do: the very bytes


def test_jpeg_changes_the_bytes_and_loses_detail_with_lower_quality():
    pixels = _noisy()
    clean = _png(pixels)
    q90, q50 = perturb(clean, {"jpeg": 90}), perturb(clean, {"jpeg": 50})
    assert _format(q50) == "JPEG" and q50 != clean and q50 != q90
    err90 = np.abs(decode_rgb(q90).astype(float) - pixels).mean()
    err50 = np.abs(decode_rgb(q50).astype(float) - pixels).mean()
    assert 0 < err90 < err50


def test_blur_and_downscaling_remove_high_frequencies_and_stay_lossless():
    pixels = _noisy()
    clean = _png(pixels)
    energy = high_frequency_energy(pixels)
    blur1, blur2 = (decode_rgb(perturb(clean, {"blur": s})) for s in (1.0, 2.0))
    assert high_frequency_energy(blur2) < high_frequency_energy(blur1) < 0.5 * energy
    down = perturb(clean, {"downscale": 0.5})
    assert _format(down) == "PNG" and _format(perturb(clean, {"blur": 1.0})) == "PNG"  # no hidden compression
    assert decode_rgb(down).shape == pixels.shape
    assert high_frequency_energy(decode_rgb(down)) < 0.7 * energy
    # the mean colour survives each of them: they degrade, they do not replace the image
    for out in (blur2, decode_rgb(down)):
        assert abs(out.astype(float).mean() - pixels.astype(float).mean()) < 3


def test_noise_is_seeded_per_image_and_combinations_apply_in_order():
    clean = _png(_noisy())
    assert image_seed(42, "data/test/a.jpg") == image_seed(42, "data/test/a.jpg")
    assert image_seed(42, "data/test/a.jpg") != image_seed(42, "data/test/b.jpg") != image_seed(7, "data/test/b.jpg")
    assert perturb(clean, {"noise": 8.0}, seed=1) != perturb(clean, {"noise": 8.0}, seed=2)
    combined = perturb(clean, {"jpeg": 75, "blur": 1.0, "downscale": 0.5})  # written in any order
    assert _format(combined) == "JPEG"
    assert combined == perturb(clean, {"downscale": 0.5, "blur": 1.0, "jpeg": 75})
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb(clean, {"sharpen": 1.0})


def test_perturbations_read_jpeg_and_gray_inputs():
    gray = Image.fromarray(_noisy()[..., 0])
    buffer = io.BytesIO()
    gray.save(buffer, "JPEG", quality=95)
    out = perturb(buffer.getvalue(), {"blur": 1.0})
    assert decode_rgb(out).shape == (40, 48, 3)


def test_robustness_settings_are_validated():
    p = parse_params({})
    assert list(p.robustness.perturbations)[:3] == ["jpeg_90", "jpeg_75", "jpeg_50"]
    assert p.robustness.perturbations["combined"].model_dump() == {
        "downscale": 0.5,
        "blur": 1.0,
        "noise": None,
        "jpeg": 75,
    }
    for bad, word in (
        ({"perturbations": {"clean": {"jpeg": 50}}}, "clean"),
        ({"perturbations": {"q": {}}}, "at least one"),
        ({"perturbations": {"q": {"jpeg": 0}}}, "jpeg"),
        ({"perturbations": {"q": {"downscale": 1.5}}}, "downscale"),
        ({"perturbations": {"a.b": {"blur": 1}}}, "letters"),
    ):
        with pytest.raises(ConfigError, match=word):
            parse_params({"robustness": bad})


# ---------------------------------------------------------------- degradation augmentation


def test_degrade_settings_are_off_by_default_and_validated():
    d = AugmentParams().degrade
    assert d.blur_prob == 0 and d.jpeg_prob == 0
    assert parse_params({"data": {"augment": {"jpeg_quality": [70, 100]}}}).data.augment.jpeg_quality == (70, 100)
    for bad in ({"blur_prob": 1.5}, {"blur_sigma": [3, 1]}, {"jpeg_quality": [0, 50]}, {"jpeg_quality": [90, 40]}):
        with pytest.raises(ConfigError, match="degrade"):
            parse_params({"data": {"augment": {"degrade": bad}}})


def test_degrade_blurs_and_recompresses_seeded():
    image = tf.constant(_noisy().astype(np.float32))
    energy = high_frequency_energy(image.numpy())
    seed = tf.constant([4, 2], tf.int64)
    blur = DegradeParams(blur_prob=1.0, blur_sigma=(1.0, 3.0))
    a, b = degrade(image, seed, blur).numpy(), degrade(image, seed, blur).numpy()
    np.testing.assert_array_equal(a, b)
    assert high_frequency_energy(a) < 0.5 * energy
    other = degrade(image, tf.constant([5, 2], tf.int64), blur).numpy()
    assert not np.allclose(a, other, atol=1e-3), "another seed, another sigma"
    jpeg = degrade(image, seed, DegradeParams(jpeg_prob=1.0, jpeg_quality=(30, 40))).numpy()
    assert 2.0 < np.abs(jpeg - image.numpy()).mean() and jpeg.min() >= 0 and jpeg.max() <= 255
    np.testing.assert_array_equal(degrade(image, seed, DegradeParams()).numpy(), image.numpy())


def test_gaussian_blur_matches_scipy_inside_and_keeps_a_flat_image_flat():
    from deepfake_detection.data.perturb import blur

    pixels = _noisy()
    ours = gaussian_blur(tf.constant(pixels.astype(np.float32)), 2.0, 6).numpy()
    np.testing.assert_allclose(ours[8:-8, 8:-8], blur(pixels, 2.0)[8:-8, 8:-8], atol=0.6)
    flat = tf.fill([12, 10, 3], 77.0)
    np.testing.assert_allclose(gaussian_blur(flat, 3.0, 9).numpy(), 77.0, atol=1e-3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("degrade")
    rows = []
    for split, n in (("train", 6), ("valid", 2)):
        for i in range(n):
            label = ("real", "fake")[i % 2]
            rel = f"data/{split}/{label}/{i}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_noisy(seed=i + (100 if split == "valid" else 0), h=32, w=32)).save(root / rel)
            rows.append({"path": rel, "label": label, "split": split, "subgroup": ""})
    return root, pd.DataFrame(rows)


def _pixels(ds) -> np.ndarray:
    return np.concatenate([x.numpy() for x, _ in ds])


def test_degrade_acts_on_the_training_split_only_and_is_seeded(tiny):
    root, manifest = tiny
    both = AugmentParams(**NO_AUG, degrade=DegradeParams(blur_prob=1.0, blur_sigma=(1.0, 2.0), jpeg_prob=1.0))
    plain = _pixels(make_dataset(manifest, "train", 32, 8, root=root))
    off = _pixels(make_dataset(manifest, "train", 32, 8, root=root, augment=AugmentParams(**NO_AUG)))
    np.testing.assert_allclose(off, plain, atol=1e-3)  # off by default: the pipeline as it was
    degraded = _pixels(make_dataset(manifest, "train", 32, 8, root=root, augment=both, seed=5))
    again = _pixels(make_dataset(manifest, "train", 32, 8, root=root, augment=both, seed=5))
    np.testing.assert_array_equal(degraded, again)
    for i in range(len(plain)):
        assert high_frequency_energy(degraded[i]) < 0.6 * high_frequency_energy(plain[i]), i
    # validation and test never see it: the pipeline refuses augmentation there, and the
    # evaluation datasets (no augment) are the plain decode
    with pytest.raises(ValueError, match="training split only"):
        make_dataset(manifest, "valid", 32, 2, root=root, augment=both)
    valid = _pixels(make_dataset(manifest, "valid", 32, 2, root=root))
    for rel, x in zip(manifest[manifest.split == "valid"].path, valid):
        np.testing.assert_allclose(x, np.asarray(Image.open(root / rel), dtype=np.float32), atol=1e-3)


def test_degrade_probability_draws_vary_per_image(tiny):
    root, manifest = tiny
    half = AugmentParams(**NO_AUG, degrade=DegradeParams(blur_prob=0.5, blur_sigma=(2.0, 2.0)))
    plain = _pixels(make_dataset(manifest, "train", 32, 8, root=root))
    out = _pixels(make_dataset(manifest, "train", 32, 8, root=root, augment=half, seed=11))
    blurred = [not np.allclose(a, b, atol=1e-3) for a, b in zip(out, plain)]
    assert 0 < sum(blurred) < len(blurred), blurred  # with 6 images, p = 0.5: some, not all (seed 11)
