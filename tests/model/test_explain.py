"""Grad-CAM on the four architectures (small inputs, random weights) and the overlay plots."""

from __future__ import annotations

import re

import mlflow
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from deepfake_detection.config import ModelsParams
from deepfake_detection.explain import explain_files, gradcam, gradcam_with_scores, overlay, overlay_grid


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Noise plus a bright square at a different place in each image."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 120, (n, size, size, 3)).astype(np.float32)
    for i in range(n):
        r, c = rng.integers(0, size // 2, 2)
        x[i, r : r + size // 3, c : c + size // 3] = 250.0
    return x


def _save_images(folder, pixels: np.ndarray, ext: str) -> list:
    """``face<i>.<ext>`` files of ``pixels`` (n, S, S, 3) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / f"face{i}.{ext}" for i in range(len(pixels))]
    for f, x in zip(files, pixels.astype(np.uint8)):
        Image.fromarray(x).save(f)
    return files


def _use_store(root) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("test-explain", (root / "mlartifacts").as_uri()))


def _build(name: str, size: int, seed: int = 0):
    from deepfake_detection.models.zoo import build_model

    return build_model(name, size, ModelsParams(), seed=seed)


# EfficientNetB0 divides by 32: at 32 px its last feature map is 1 x 1 and any Grad-CAM of it is
# constant, so the EfficientNet models are explained at 64 px (2 x 2 maps), like ResNet50.
@pytest.mark.parametrize(
    ("name", "size"),
    [("light_se_cnn", 32), ("efficientnet_b0_dual_attention", 64), ("efficientnet_b0", 64), ("resnet50", 64)],
)
def test_gradcam_heatmaps_have_the_image_shape_lie_in_0_1_and_vary(name, size):
    model = _build(name, size)
    x = _images(3, size)
    heat, probs = gradcam_with_scores(model, x)
    assert heat.shape == (3, size, size) and heat.dtype == np.float32
    assert np.isfinite(heat).all() and heat.min() >= 0.0 and heat.max() <= 1.0
    assert all(h.max() == pytest.approx(1.0) and h.std() > 1e-3 for h in heat), "a heatmap is constant"
    np.testing.assert_allclose(probs, model.predict(x, verbose=0).ravel(), atol=1e-5)


def test_gradcam_targets_and_layer_choice():
    model = _build("light_se_cnn", 32)
    x = _images(2, 32, seed=1)
    fake, real = gradcam(model, x, target="fake"), gradcam(model, x, target="real")
    assert not np.allclose(fake, real)  # opposite evidence
    early = gradcam(model, x, layer_name="block1_se_scale")
    assert early.shape == (2, 32, 32) and not np.allclose(early, fake)
    with pytest.raises(ValueError, match="4-D feature map"):
        gradcam(model, x, layer_name="head_pool")
    with pytest.raises(ValueError, match="unknown target"):
        gradcam(model, x, target="both")
    assert gradcam(model, x[0]).shape == (1, 32, 32)  # a single image


def test_overlay_blends_jet_colours_at_alpha():
    image = np.full((20, 30, 3), 100, dtype=np.uint8)
    heat = np.zeros((5, 5), np.float32)
    heat[2, 2] = 1.0  # a different size: resized to the image
    out = overlay(image, heat, alpha=0.4)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert not np.array_equal(out[10, 15], out[0, 0])  # hot centre vs cold corner
    np.testing.assert_array_equal(overlay(image, heat, alpha=0.0), image)
    with pytest.raises(ValueError):
        overlay(image, heat, alpha=2.0)


def test_overlay_grid_is_a_figure_with_one_titled_panel_per_image():
    x = _images(3, 32)
    heat = np.random.default_rng(0).uniform(0, 1, (3, 32, 32))
    fig = overlay_grid(list(x), list(heat), ["TP p=0.91", "FP p=0.70", "TN p=0.10"], ncols=2)
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["TP p=0.91", "FP p=0.70", "TN p=0.10"]
    with pytest.raises(ValueError, match="as many"):
        overlay_grid(list(x), list(heat[:2]), ["a", "b", "c"])


def test_explain_files_writes_one_png_per_decodable_image(in_tmp):
    model = _build("light_se_cnn", 32)
    model.save(in_tmp / "light.keras")
    files = _save_images(in_tmp / "in", _images(2, 48), "jpg")
    broken = in_tmp / "in" / "broken.png"
    broken.write_bytes(b"nope")

    written = explain_files(in_tmp / "light.keras", [*files, broken], in_tmp / "out")
    assert [p.name for p in written] == ["face0_gradcam.png", "face1_gradcam.png"]
    for p in written:
        with Image.open(p) as png:
            assert png.format == "PNG" and png.width > png.height > 100

    # a logged detector: its first member is explained
    from deepfake_detection.serving.pyfunc import log_detector

    _use_store(in_tmp)
    with mlflow.start_run():
        info = log_detector([in_tmp / "light.keras"], 0.3, 32, input_example_image=files[0])
    written = explain_files(info.model_uri, files, in_tmp / "out_logged")
    assert len(written) == 2 and all(p.is_file() for p in written)


def test_an_ensemble_is_explained_by_its_members_weighted_by_their_influence():
    from deepfake_detection.evaluation.ensemble import Ensemble
    from deepfake_detection.explain import ensemble_gradcam, member_influence

    a, b = _build("light_se_cnn", 32, seed=0), _build("light_se_cnn", 32, seed=3)
    x = _images(3, 32, seed=2)
    pa, pb = (m.predict(x, verbose=0).ravel() for m in (a, b))
    weighted = Ensemble("weighted", ["a", "b"], weights=[0.25, 0.75])
    heat, p, P = ensemble_gradcam([a, b], weighted, x, threshold=0.5)
    np.testing.assert_allclose(P, np.stack([pa, pb], 1), atol=1e-5)
    np.testing.assert_allclose(p, 0.25 * pa + 0.75 * pb, atol=1e-5)
    # each member explains the ENSEMBLE's decision; the maps are mixed by the members' weights
    decision = p >= 0.5
    ha, hb = (gradcam_with_scores(m, x, target=decision)[0] for m in (a, b))
    mixed = 0.25 * ha + 0.75 * hb
    expected = mixed / mixed.reshape(3, -1).max(axis=1)[:, None, None]
    np.testing.assert_allclose(heat, expected, atol=1e-4)
    assert heat.shape == (3, 32, 32) and heat.max() <= 1.0

    only_a = Ensemble("weighted", ["a", "b"], weights=[1.0, 0.0])
    np.testing.assert_allclose(
        ensemble_gradcam([a, b], only_a, x)[0], gradcam_with_scores(a, x, target=pa >= 0.5)[0], atol=1e-4
    )
    np.testing.assert_allclose(member_influence(Ensemble("soft_vote", ["a", "b"]), P), 0.5)
    flat = Ensemble("majority", ["a", "b"], member_thresholds=[2.0, 2.0])  # never moved by a member
    np.testing.assert_allclose(member_influence(flat, P), 0.5)
    with pytest.raises(ValueError, match="one bool per image"):
        gradcam_with_scores(a, x, target=[True])


def test_explain_files_explains_a_logged_ensemble_as_a_whole(in_tmp):
    from deepfake_detection.explain import ensemble_gradcam
    from deepfake_detection.serving.pyfunc import log_detector

    a, b = _build("light_se_cnn", 32, seed=0), _build("light_se_cnn", 32, seed=3)
    a.save(in_tmp / "a.keras")
    b.save(in_tmp / "b.keras")
    files = _save_images(in_tmp / "in", _images(2, 32), "png")
    ensemble = {"kind": "weighted", "members": ["a", "b"], "weights": [0.0, 1.0]}
    _use_store(in_tmp)
    with mlflow.start_run():
        info = log_detector([in_tmp / "a.keras", in_tmp / "b.keras"], 0.5, 32, ensemble=ensemble)
    written = explain_files(info.model_uri, files, in_tmp / "out")
    assert [p.name for p in written] == ["face0_gradcam.png", "face1_gradcam.png"]
    # the overlay is b's map of b's decision (all the weight on b), not the first member's
    x = np.stack([np.asarray(Image.open(f), dtype=np.float32) for f in files])
    heat = ensemble_gradcam([a, b], ensemble, x)[0]
    pb = b.predict(x, verbose=0).ravel()
    np.testing.assert_allclose(heat, gradcam_with_scores(b, x, target=pb >= 0.5)[0], atol=1e-4)
    assert not np.allclose(heat, gradcam_with_scores(a, x, target=pb >= 0.5)[0], atol=1e-2)
    with pytest.raises(ValueError, match="explained at their own"):
        from deepfake_detection.explain import _Detector

        _Detector(info.model_uri).explain({32: x}, "block1_se_scale")


def test_explain_tells_inputs_with_one_name_apart_prints_each_score_and_draws_a_colour_bar(in_tmp):
    from click.testing import CliRunner

    from deepfake_detection.cli import cli
    from deepfake_detection.explain import distinct_labels

    assert distinct_labels([in_tmp / "fake/1.jpg", in_tmp / "real/1.jpg", in_tmp / "real/2.jpg"]) == [
        "fake/1.jpg",
        "real/1.jpg",
        "2.jpg",
    ]
    model = _build("light_se_cnn", 32)
    model.save(in_tmp / "light.keras")
    pixels = _images(2, 48)
    fake = _save_images(in_tmp / "fake", pixels[:1], "png")[0]  # both are face0.png
    real = _save_images(in_tmp / "real", pixels[1:], "png")[0]
    result = CliRunner().invoke(cli, ["explain", "--model", "light.keras", str(fake), str(real), "--out", "cam"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "P(fake)" in line]
    assert [line.split(":")[0] for line in lines] == ["fake/face0.png", "real/face0.png"], result.output
    assert all(re.search(r"P\(fake\) 0\.\d{3} -> (fake|real) \(threshold 0\.500\)", line) for line in lines)
    assert sorted(p.name for p in (in_tmp / "cam").iterdir()) == ["fake_face0_gradcam.png", "real_face0_gradcam.png"]
    with Image.open(in_tmp / "cam" / "fake_face0_gradcam.png") as png:  # the colour bar: jet's dark red and blue
        right = np.asarray(png.convert("RGB"))[:, int(png.width * 0.8) :]
    red = (right[..., 0] > 100) & (right[..., 1] < 30) & (right[..., 2] < 30)
    blue = (right[..., 2] > 100) & (right[..., 0] < 30) & (right[..., 1] < 30)
    assert red.sum() > 20 and blue.sum() > 20
    help_text = CliRunner().invoke(cli, ["explain", "--help"]).output
    assert "onnx" not in help_text.lower() and "colour bar" in help_text
