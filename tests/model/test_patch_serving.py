"""The patch view (`data.view: patches`) served: the registered pyfunc, an ensemble of patch
models, ONNX export and Grad-CAM all score an image as evaluation does, on the grid of its
native-resolution crops (`views.score_image` / `views.score_crops`), never on a resize."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image
from test_pyfunc import tiny_model, use_store

from deepfake_detection.config import DataParams
from deepfake_detection.data.pipeline import decode_image
from deepfake_detection.data.views import grid_crops, score_image, stitch_crops
from deepfake_detection.serving import export, pyfunc
from deepfake_detection.serving import io as serving_io
from deepfake_detection.serving.predict import OnnxDetector

PATCH = 32
PATCHES = DataParams(view="patches", patch_size=PATCH)
SIZES = [(80, 56), (32, 32), (100, 40), (20, 44)]  # (width, height): grids of 3x2, 1, 4x2; one padded


@pytest.fixture(scope="module")
def patch_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("patch_serving")
    use_store(root, "test-patch-serving")
    files = []
    rng = np.random.default_rng(0)
    for k, (w, h) in enumerate(SIZES):
        files.append(root / "images" / f"im{k}.png")
        files[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(files[-1])
    models = [tiny_model(PATCH, seed=0), tiny_model(PATCH, seed=5)]
    paths = []
    for k, model in enumerate(models):
        paths.append(root / f"m{k}.keras")
        model.save(paths[-1])
    ensemble = {"kind": "weighted", "members": ["a", "b"], "weights": [0.3, 0.7]}
    with mlflow.start_run():
        single = pyfunc.log_detector([paths[0]], 0.5, 96, view="patches", name="single")
        both = pyfunc.log_detector(paths, 0.5, 96, view="patches", ensemble=ensemble, name="both")
    images = [decode_image(tf.constant(f.read_bytes())).numpy() for f in files]
    reference = np.array([[score_image(m.predict_on_batch, im, PATCHES) for m in models] for im in images])
    return {
        "root": root,
        "files": files,
        "models": models,
        "images": images,
        "reference": reference,  # (images, members): evaluation's own scores
        "single": single,
        "both": both,
    }


def _predict(uri, files, **kw):
    model = mlflow.pyfunc.load_model(uri)
    with serving_io.local_files():
        return model.predict(pd.DataFrame({"path": [str(f) for f in files]}), **kw)


def test_the_pyfunc_scores_the_crop_grid_as_evaluation_does(patch_models):
    out = _predict(patch_models["single"].model_uri, patch_models["files"])
    np.testing.assert_allclose(out["probability_fake"], patch_models["reference"][:, 0], atol=1e-5)
    assert out["error"].isna().all()
    metadata = mlflow.models.get_model_info(patch_models["single"].model_uri).metadata
    assert metadata["view"] == "patches" and metadata["patch_size"] == PATCH
    # not the resized image's score: the grid is what the model was evaluated on
    resized = patch_models["models"][0].predict(
        np.stack([tf.image.resize(im, (PATCH, PATCH)).numpy() for im in patch_models["images"]]), verbose=0
    )
    assert not np.allclose(out["probability_fake"], resized.ravel(), atol=1e-3)


def test_an_ensemble_of_patch_models_combines_each_members_image_score(patch_models):
    out = _predict(patch_models["both"].model_uri, patch_models["files"])
    expected = patch_models["reference"] @ np.array([0.3, 0.7])
    np.testing.assert_allclose(out["probability_fake"], expected, atol=1e-5)


def test_a_patch_detector_refuses_faces_and_odd_members(patch_models, tmp_path):
    with pytest.raises(serving_io.InvalidInputError, match="does not score face crops"):
        _predict(patch_models["single"].model_uri, patch_models["files"][:1], params={"faces": True})
    other = tiny_model(48)
    other.save(tmp_path / "m48.keras")
    with mlflow.start_run():
        with pytest.raises(ValueError, match="does not combine with faces"):
            pyfunc.log_detector([patch_models["root"] / "m0.keras"], 0.5, 96, view="patches", faces=True)
        with pytest.raises(ValueError, match="one input size"):
            pyfunc.log_detector(
                [patch_models["root"] / "m0.keras", tmp_path / "m48.keras"],
                0.5,
                96,
                view="patches",
                ensemble={"kind": "soft_vote", "members": ["a", "b"]},
            )
        with pytest.raises(ValueError, match="view must be one of"):
            pyfunc.log_detector([patch_models["root"] / "m0.keras"], 0.5, 96, view="tiles")


def test_onnx_export_records_the_view_and_its_runner_scores_the_grid(patch_models, tmp_path):
    out = export.export_model(patch_models["single"].model_uri, "onnx", tmp_path / "p.onnx")
    sidecar = json.loads(export.onnx_sidecar(out).read_text())
    assert sidecar["view"] == "patches" and sidecar["patch_size"] == PATCH and sidecar["image_size"] == PATCH
    frame = pd.DataFrame({"path": [str(f) for f in patch_models["files"]]})
    scored = OnnxDetector(out).predict(frame)
    np.testing.assert_allclose(scored["probability_fake"], patch_models["reference"][:, 0], atol=1e-4)


def test_grad_cam_of_a_patch_detector_is_stitched_over_the_whole_image(patch_models, tmp_path):
    from deepfake_detection.explain import explain_files, gradcam_with_scores, patch_gradcam

    model, image = patch_models["models"][0], patch_models["images"][0]  # 80 x 56: six crops
    heat, p, P = patch_gradcam([model], None, image, PATCH, threshold=0.5)
    assert heat.shape == image.shape[:2] and heat.max() == pytest.approx(1.0)
    assert p == pytest.approx(patch_models["reference"][0, 0], abs=1e-5) and P.shape == (1,)
    crops = grid_crops(image, PATCH).numpy()
    maps = gradcam_with_scores(model, crops, target=np.full(len(crops), p >= 0.5))[0]
    stitched = stitch_crops(maps, *image.shape[:2], PATCH)
    np.testing.assert_allclose(heat, stitched / stitched.max(), atol=1e-4)

    written = explain_files(patch_models["both"].model_uri, patch_models["files"], tmp_path / "cam")
    assert len(written) == len(SIZES) and all(p.is_file() for p in written)
