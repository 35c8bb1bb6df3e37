"""The tf.data input pipeline on a tiny manifest of images of every accepted kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from deepfake_detection.config import AugmentParams
from deepfake_detection.data.pipeline import (
    class_weights,
    image_dataset_from_paths,
    labels_of,
    make_dataset,
    paths_of,
)

SIZE = 16
RED, BLUE = (255, 0, 0), (0, 0, 255)


def _rgb(seed: int, h: int = SIZE, w: int = SIZE) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(30, 220, (h, w, 3), dtype=np.uint8), "RGB")


def _write_images(root: Path) -> list[tuple[str, str]]:
    """(relative path, label) of one file of each accepted kind, plus a few plain JPEGs."""
    files: list[tuple[str, str, Image.Image, dict]] = []
    files.append(("data/train/real/rgb.jpg", "real", _rgb(0, 20, 12), {"quality": 95}))  # not square
    files.append(("data/train/fake/gray.png", "fake", _rgb(1).convert("L"), {}))
    rgba = _rgb(2).convert("RGBA")
    rgba.putalpha(77)
    files.append(("data/train/real/rgba.png", "real", rgba, {}))
    palette = Image.new("P", (SIZE, SIZE))
    palette.putpalette([*RED, *BLUE] + [0, 0, 0] * 254)
    palette.paste(1, (SIZE // 2, 0, SIZE, SIZE))  # left half index 0 (red), right half 1 (blue)
    files.append(("data/train/fake/palette.png", "fake", palette, {}))
    deep = np.full((SIZE, SIZE), 65535, dtype=np.uint16)  # rows: white / 128 * 257 / 0x00FF
    deep[6:11] = 32896
    deep[11:] = 255  # 255 / 257 = 0.99; keeping only the high byte would give 0
    files.append(("data/train/real/deep16.png", "real", Image.fromarray(deep), {}))
    for i in range(3):
        files.append((f"data/train/fake/more{i}.jpg", "fake", _rgb(10 + i), {"quality": 90}))
    files.append(("data/valid/real/v0.jpg", "real", _rgb(20), {}))
    out = []
    for rel, label, image, kw in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / rel, **kw)
        out.append((rel, label))
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    files = _write_images(root)
    assert Image.open(root / "data/train/real/deep16.png").mode.startswith("I;16")  # really 16-bit
    assert Image.open(root / "data/train/fake/palette.png").mode == "P"
    manifest = pd.DataFrame(
        {
            "path": [p for p, _ in files],
            "label": [lab for _, lab in files],
            "split": [p.split("/")[1] for p, _ in files],
            "md5": "",
            "width": SIZE,
            "height": SIZE,
            "subgroup": "",
        }
    )
    return root, manifest


def _first(ds):
    return next(iter(ds))


def _all(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def _one_image(root: Path, rel: str) -> np.ndarray:
    return _first(image_dataset_from_paths([str(root / rel)], SIZE, 1)).numpy()[0]


def test_batches_have_the_promised_shapes_dtypes_and_range(data):
    root, manifest = data
    x, y = _first(make_dataset(manifest, "train", SIZE, 3, root=root))
    assert x.shape == (3, SIZE, SIZE, 3) and y.shape == (3,)
    assert x.dtype.name == "float32" and y.dtype.name == "float32"
    xs, _ = _all(make_dataset(manifest, "train", SIZE, 3, root=root))
    assert xs.shape == (8, SIZE, SIZE, 3)  # the last batch is partial, not dropped
    assert xs.min() >= 0 and xs.max() <= 255
    assert xs.max() > 1.5  # pixels in [0, 255], not already rescaled to [0, 1]


def test_labels_follow_the_manifest_order_when_not_shuffled(data):
    root, manifest = data
    _, ys = _all(make_dataset(manifest, "train", SIZE, 3, root=root))
    expected = (manifest.loc[manifest.split == "train", "label"] == "fake").to_numpy(np.float32)
    np.testing.assert_array_equal(ys, expected)
    np.testing.assert_array_equal(labels_of(manifest, "train"), expected.astype(int))
    assert paths_of(manifest, "valid", root) == [str(root / "data/valid/real/v0.jpg")]


def test_images_come_out_in_manifest_order(data):
    root, manifest = data
    xs, _ = _all(make_dataset(manifest, "train", SIZE, 4, root=root))
    singles = np.stack([_one_image(root, p) for p in manifest.loc[manifest.split == "train", "path"]])
    np.testing.assert_allclose(xs, singles, rtol=0, atol=1e-3)  # batched vs one by one: same pixels


def test_sixteen_bit_png_maps_to_0_255(data):
    root, _ = data
    image = _one_image(root, "data/train/real/deep16.png")
    assert image.max() == pytest.approx(255.0, abs=0.01)  # 65535 -> 255
    np.testing.assert_allclose(image[:5], 255.0, atol=0.01)
    np.testing.assert_allclose(image[7:10], 128.0, atol=0.01)  # 128 * 257 -> 128
    np.testing.assert_allclose(image[12:], 255 / 257, atol=0.01)  # v / 257, not v >> 8


def test_gray_rgba_and_palette_become_rgb(data):
    root, _ = data
    gray = _one_image(root, "data/train/fake/gray.png")
    assert gray.shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
    expected = np.asarray(Image.open(root / "data/train/fake/gray.png"), dtype=np.float32)
    np.testing.assert_allclose(gray[..., 0], expected, atol=0.5)

    rgba = _one_image(root, "data/train/real/rgba.png")
    expected = np.asarray(Image.open(root / "data/train/real/rgba.png").convert("RGB"), dtype=np.float32)
    np.testing.assert_allclose(rgba, expected, atol=0.5)  # alpha dropped, colours kept

    pal = _one_image(root, "data/train/fake/palette.png")
    np.testing.assert_allclose(pal[:, : SIZE // 2 - 1], np.broadcast_to(RED, (SIZE, SIZE // 2 - 1, 3)), atol=0.5)
    np.testing.assert_allclose(pal[:, SIZE // 2 + 1 :], np.broadcast_to(BLUE, (SIZE, SIZE // 2 - 1, 3)), atol=0.5)


def test_other_sizes_are_resized(data):
    root, manifest = data
    x, _ = _first(make_dataset(manifest, "train", 24, 2, root=root))
    assert x.shape == (2, 24, 24, 3)  # a 12 x 20 JPEG and a 16 x 16 PNG


def test_augmentation_changes_pixels_but_keeps_shape_and_range(data):
    root, manifest = data
    plain, _ = _all(make_dataset(manifest, "train", SIZE, 8, root=root))
    aug = AugmentParams(rotation=0.05, zoom=0.2, brightness=0.2, contrast=0.2, jpeg_quality=(50, 90))
    changed, ys = _all(make_dataset(manifest, "train", SIZE, 8, root=root, augment=aug))
    assert changed.shape == plain.shape and changed.dtype == np.float32
    assert changed.min() >= 0 and changed.max() <= 255
    assert np.abs(changed - plain).mean() > 1.0
    np.testing.assert_array_equal(ys, labels_of(manifest, "train"))  # augmentation leaves labels alone


def test_same_seed_same_first_batch_and_new_draws_each_epoch(data):
    root, manifest = data

    def train(seed):
        return make_dataset(manifest, "train", SIZE, 4, root=root, augment=AugmentParams(), shuffle=True, seed=seed)

    ds = train(7)
    first, labels = _first(ds)
    again, labels_again = _first(train(7))
    np.testing.assert_allclose(first.numpy(), again.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_array_equal(labels.numpy(), labels_again.numpy())
    other, _ = _first(train(8))
    assert not np.allclose(first.numpy(), other.numpy(), rtol=0, atol=1e-4)
    epoch2, _ = _first(ds)  # a second pass draws a new order and new augmentations
    assert not np.allclose(first.numpy(), epoch2.numpy(), rtol=0, atol=1e-4)


def test_repeat_makes_it_endless(data):
    root, manifest = data
    batches = list(make_dataset(manifest, "valid", SIZE, 1, root=root, repeat=True).take(3))
    assert len(batches) == 3


def test_class_weights_are_inverse_frequency():
    labels = np.array([0] * 30 + [1] * 10)
    weights = class_weights(labels)
    assert weights == pytest.approx({0: 40 / (2 * 30), 1: 40 / (2 * 10)})
    assert set(weights) == {0, 1} and all(isinstance(k, int) for k in weights)
    with pytest.raises(ValueError, match="every class"):
        class_weights(np.zeros(5))


def test_bad_inputs_raise_value_errors_that_say_what_to_fix(data):
    root, manifest = data
    with pytest.raises(ValueError, match="unknown split 'training'"):
        make_dataset(manifest, "training", SIZE, 2, root=root)
    with pytest.raises(ValueError, match="split 'test' has no rows"):
        make_dataset(manifest, "test", SIZE, 2, root=root)
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['label'\]"):
        make_dataset(manifest.drop(columns="label"), "train", SIZE, 2, root=root)
    with pytest.raises(ValueError, match="batch_size"):
        make_dataset(manifest, "train", SIZE, 0, root=root)
    with pytest.raises(FileNotFoundError, match="root="):
        make_dataset(manifest, "train", SIZE, 2, root=root / "elsewhere")
    with pytest.raises(ValueError, match="empty"):
        image_dataset_from_paths([], SIZE, 2)


# ---------------------------------------------------------------- self-blended fakes

NO_AUG = dict(flip=False, rotation=0.0, zoom=0.0, brightness=0.0, contrast=0.0)


def test_self_blend_turns_every_real_training_image_into_a_fake_and_leaves_fakes_alone(data):
    root, manifest = data
    plain, labels = _all(make_dataset(manifest, "train", SIZE, 8, root=root))
    blended, new_labels = _all(
        make_dataset(manifest, "train", SIZE, 8, root=root, augment=AugmentParams(**NO_AUG, self_blend=1.0))
    )
    real = labels == 0
    assert real.any() and (~real).any()
    assert (new_labels == 1).all(), "every real training image became a fake (label 1)"
    np.testing.assert_allclose(blended[~real], plain[~real], atol=1e-3)  # fakes pass unchanged
    for i in np.flatnonzero(real):
        assert np.abs(blended[i] - plain[i]).max() > 1.0, "a self-blended image differs from its source"


def test_self_blend_probability_zero_changes_nothing(data):
    root, manifest = data
    plain, labels = _all(make_dataset(manifest, "train", SIZE, 8, root=root))
    same, same_labels = _all(make_dataset(manifest, "train", SIZE, 8, root=root, augment=AugmentParams(**NO_AUG)))
    np.testing.assert_array_equal(same_labels, labels)
    np.testing.assert_allclose(same, plain, atol=1e-3)


def test_self_blend_never_reaches_validation_or_test(data):
    root, manifest = data
    with pytest.raises(ValueError, match="training split only"):
        make_dataset(manifest, "valid", SIZE, 2, root=root, augment=AugmentParams(self_blend=1.0))
    _, labels = _all(make_dataset(manifest, "valid", SIZE, 2, root=root))
    np.testing.assert_array_equal(labels, labels_of(manifest, "valid"))


def test_self_blend_is_seeded_and_blends_only_the_centre():
    from deepfake_detection.data.synthetic import self_blend

    rng = np.random.default_rng(3)
    image = tf.constant(rng.uniform(20, 230, size=(64, 64, 3)).astype(np.float32))
    a = self_blend(image, tf.constant([7, 8])).numpy()
    b = self_blend(image, tf.constant([7, 8])).numpy()
    c = self_blend(image, tf.constant([9, 1])).numpy()
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.abs(a - c).max() > 1.0, "another seed, another fake"
    diff = np.abs(a - image.numpy()).mean(axis=-1)
    assert diff[24:40, 24:40].mean() > 1.0, "the centre is blended"
    np.testing.assert_allclose(a[:4, :4], image.numpy()[:4, :4], atol=1e-4)  # corners are outside the mask
    assert 0.0 <= a.min() and a.max() <= 255.0


# ---------------------------------------------------------------- region-swap fakes


def test_region_swap_pastes_colour_matched_facial_regions_of_the_donor_and_nothing_else():
    from deepfake_detection.data.synthetic import FACE_REGIONS, region_swap

    rng = np.random.default_rng(4)
    image = tf.constant(rng.uniform(60, 120, size=(64, 64, 3)).astype(np.float32))
    donor = tf.constant(rng.uniform(150, 250, size=(64, 64, 3)).astype(np.float32))  # brighter, wider
    centres = {name: (int(cy * 64), int(cx * 64)) for name, (cy, cx, _, _) in FACE_REGIONS.items()}
    seen = set()
    for s in range(16):
        seed = tf.constant([s, 5])
        out = region_swap(image, donor, seed).numpy()
        np.testing.assert_allclose(out, region_swap(image, donor, seed).numpy(), atol=1e-5)  # seeded
        changed = np.abs(out - image.numpy()).max(axis=-1) > 1e-3
        assert 0 < changed.mean() < 0.35, "some regions, not the face"
        assert not changed[:20].any() and not changed[-4:].any(), "forehead and chin rows stay"
        assert not changed[:, :10].any() and not changed[:, -10:].any(), "the cheeks' outer edges stay"
        seen |= {name for name, (y, x) in centres.items() if changed[y, x]}
        inside = out[changed]  # colour-matched: the image's level, not the donor's
        assert abs(inside.mean() - image.numpy()[changed].mean()) < 15
        assert 0.0 <= out.min() and out.max() <= 255.0
    assert seen == set(FACE_REGIONS), f"every region is drawn: {seen}"


def test_region_swap_turns_every_real_training_image_into_a_fake_with_another_face(tmp_path):
    from deepfake_detection.data.sample import generate

    generate(tmp_path / "data", images_per_class=10, size=32, seed=2, progress=False)
    files = sorted((tmp_path / "data" / "train").rglob("*.jpg"))
    manifest = pd.DataFrame(
        {
            "path": [str(f.relative_to(tmp_path)) for f in files],
            "label": [f.parent.name for f in files],
            "split": "train",
        }
    )
    plain, labels = _all(make_dataset(manifest, "train", 32, 8, root=tmp_path))
    swapped, new_labels = _all(
        make_dataset(manifest, "train", 32, 8, root=tmp_path, augment=AugmentParams(**NO_AUG, region_swap=1.0))
    )
    real = labels == 0
    assert real.sum() >= 5 and (new_labels == 1).all(), "every real training image became a fake (label 1)"
    np.testing.assert_allclose(swapped[~real], plain[~real], atol=1e-3)  # fakes pass unchanged
    changed = [np.abs(swapped[i] - plain[i]).max() > 1.0 for i in np.flatnonzero(real)]
    assert np.mean(changed) > 0.5, "a real image with another face's region differs from its source"
    with pytest.raises(ValueError, match="training split only"):
        make_dataset(manifest, "valid", 32, 2, root=tmp_path, augment=AugmentParams(region_swap=1.0))
    fakes_only = manifest[manifest.label == "fake"]
    with pytest.raises(ValueError, match="region_swap needs real training images"):
        make_dataset(fakes_only, "train", 32, 2, root=tmp_path, augment=AugmentParams(region_swap=1.0))


def test_patch_view_trains_on_native_crops(data):
    root, manifest = data
    x, _ = _first(
        make_dataset(manifest, "train", 999, 2, root=root, patch_size=8, augment=AugmentParams(**NO_AUG), shuffle=True)
    )
    assert x.shape[1:] == (8, 8, 3)
    v, _ = _first(make_dataset(manifest, "valid", 999, 1, root=root, patch_size=8))
    assert v.shape[1:] == (8, 8, 3)
