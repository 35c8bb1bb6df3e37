"""The patch view (data/views.py): the grid covers every pixel, an image's score is the mean
of its crops' scores (in logit space), and stitched crop maps rebuild the whole image."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from deepfake_detection.config import DataParams
from deepfake_detection.data import views


@pytest.mark.parametrize("length,patch", [(256, 64), (256, 96), (250, 64), (64, 64), (65, 64), (40, 64), (1000, 96)])
def test_grid_covers_every_pixel_and_stays_inside(length, patch):
    origins = views.grid_origins(length, patch)
    covered = np.zeros(max(length, patch), dtype=bool)
    for o in origins:
        assert 0 <= o and o + patch <= max(length, patch)
        covered[o : o + patch] = True
    assert covered[:length].all()
    assert len(origins) == max(1, -(-length // patch)), "no more crops than needed"
    assert origins == sorted(set(origins))


def test_grid_origins_reject_bad_sizes():
    with pytest.raises(ValueError, match="positive"):
        views.grid_origins(0, 64)


@pytest.mark.parametrize("shape", [(256, 256), (250, 190), (40, 100)])
def test_grid_crops_cover_the_image_and_stitch_back(shape):
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, size=(*shape, 3)).astype(np.float32)
    crops = views.grid_crops(image, 64).numpy()
    ny = len(views.grid_origins(max(shape[0], 64), 64))
    nx = len(views.grid_origins(max(shape[1], 64), 64))
    assert crops.shape == (ny * nx, 64, 64, 3)
    for channel in range(3):  # every pixel comes back from the crops that hold it
        rebuilt = views.stitch_crops(crops[..., channel], *shape, 64)
        np.testing.assert_allclose(rebuilt, image[..., channel], atol=1e-4)


def test_stitch_checks_the_number_of_crops():
    with pytest.raises(ValueError, match="grid"):
        views.stitch_crops(np.zeros((3, 64, 64)), 256, 256, 64)


def test_image_score_is_the_mean_of_the_crop_scores_in_logit_space():
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 255, size=(200, 150, 3)).astype(np.float32)
    data = DataParams(view="patches", patch_size=64)
    seen = []

    def predict(batch):  # a stand-in network: P(fake) from each crop's mean brightness
        seen.append(batch.shape)
        return 1 / (1 + np.exp(-(batch.mean(axis=(1, 2, 3)) - 127.5) / 10))

    score = views.score_image(predict, image, data)
    crops = views.grid_crops(image, 64).numpy()
    crop_p = predict(crops)
    logits = np.log(crop_p) - np.log1p(-crop_p)
    assert score == pytest.approx(1 / (1 + np.exp(-logits.mean())), abs=1e-9)
    assert seen[0] == (len(crops), 64, 64, 3), "one batch of all the grid's crops"
    assert views.combine_crop_scores([0.2, 0.2, 0.2]) == pytest.approx(0.2, abs=1e-9)


def test_resize_view_scores_the_whole_image_once():
    image = np.full((64, 64, 3), 10.0, dtype=np.float32)
    score = views.score_image(lambda b: np.full((len(b), 1), 0.3), image, DataParams(view="resize", image_size=64))
    assert score == pytest.approx(0.3)


def test_model_input_size_follows_the_view():
    assert views.model_input_size(DataParams(image_size=96, view="resize", patch_size=64)) == 96
    assert views.model_input_size(DataParams(image_size=96, view="patches", patch_size=64)) == 64


def test_random_and_center_crops_pad_small_images():
    small = tf.ones((40, 50, 3))
    assert views.random_crop(small, 64, tf.constant([1, 2])).shape == (64, 64, 3)
    assert views.center_crop(tf.ones((256, 256, 3)), 96).shape == (96, 96, 3)


def test_threshold_and_evaluate_score_the_patch_view_on_the_whole_grid(in_tmp):
    """stages.scoring.predict_split (what threshold and evaluate call) scores each image by the mean
    logit of its grid of native-resolution crops: the same number as views.score_image."""
    import keras
    import pandas as pd
    from PIL import Image

    from deepfake_detection import paths
    from deepfake_detection.config import parse_params
    from deepfake_detection.stages.scoring import predict_split

    rng = np.random.default_rng(5)
    rows = []
    for i, (label, shape) in enumerate([("real", (80, 48)), ("fake", (32, 100)), ("real", (20, 20))]):
        rel = f"data/valid/{label}/{i}.png"
        (in_tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (*shape, 3), dtype=np.uint8)).save(in_tmp / rel)
        rows.append(
            {
                "path": rel,
                "label": label,
                "split": "valid",
                "md5": str(i),
                "width": shape[1],
                "height": shape[0],
                "subgroup": "",
            }
        )
    paths.MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(paths.MANIFEST, index=False)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255.0)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    params = parse_params({"data": {"view": "patches", "patch_size": 32}})

    out = predict_split("toy", "valid", params, model=model)
    for row, p in zip(rows, out.probability):
        image = np.asarray(Image.open(in_tmp / row["path"]), dtype=np.float32)
        crops = views.grid_crops(image, 32).numpy()
        assert len(crops) == len(views.grid_origins(max(row["height"], 32), 32)) * len(
            views.grid_origins(max(row["width"], 32), 32)
        )
        crop_p = model.predict(crops, verbose=0).reshape(-1)
        assert p == pytest.approx(views.combine_crop_scores(crop_p), abs=1e-5)
    assert (in_tmp / paths.predictions("toy", "valid")).is_file()


def test_every_view_has_one_scorer_and_an_unknown_view_fails():
    assert set(views.SCORERS) == set(views.VIEWS)
    assert views.scorer(None) is views.SCORERS["resize"]  # detectors logged before views: resize
    assert [v for v in views.VIEWS if views.scorer(v).native] == list(views.NATIVE_VIEWS)
    with pytest.raises(ValueError, match="unknown view"):
        views.scorer("crops")


def test_each_scorer_gives_the_batch_its_network_sees():
    image = np.random.default_rng(2).uniform(0, 255, size=(100, 70, 3)).astype(np.float32)
    assert views.scorer("resize").prepare(image, 32).shape == (1, 32, 32, 3)
    assert views.scorer("patches").prepare(image, 64).shape == views.grid_crops(image, 64).numpy().shape
    assert views.scorer("native").prepare(image, None).shape == (1, 100, 70, 3)


def test_native_images_score_under_each_view_as_score_image_does():
    rng = np.random.default_rng(3)
    images = [rng.uniform(0, 255, size=shape).astype(np.float32) for shape in ((90, 80, 3), (64, 120, 3))]

    def predict(batch):
        return 1 / (1 + np.exp(-(np.asarray(batch).mean(axis=(1, 2, 3)) - 127.5) / 10))

    for view, size in (("patches", 64), ("native", None)):
        got = views.scorer(view).score_images(predict, images, size, 8)
        data = DataParams(patch_size=64).model_copy(update={"view": view})  # native: a network's own view
        want = [views.score_image(predict, im, data) for im in images]
        assert got == pytest.approx(want, abs=1e-12)
    resized = views.scorer("resize").score_images(predict, images, 32, 1)
    prepared = [float(predict(views.scorer("resize").prepare(im, 32))[0]) for im in images]
    assert resized == pytest.approx(prepared, abs=1e-12)
