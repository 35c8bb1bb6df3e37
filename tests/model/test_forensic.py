"""A forensic network on its whole path, on a tiny project whose images have several sizes, none
of them ``data.image_size``: it must receive each image's own pixels (never resized) when it is
trained, evaluated, re-scored for robustness and served by the pyfunc. The pixels are decoded
here by Pillow from lossless PNG files, independently of the project's decoders."""

from __future__ import annotations

import os

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from project_commands import params_text
from test_pyfunc import use_store

from deepfake_detection import paths
from deepfake_detection.config import parse_params
from deepfake_detection.models.saved import load_model
from deepfake_detection.serving.io import local_files

MODEL = "residual_cooc"
SIZES = [(48, 40), (40, 56), (52, 52), (36, 44)]  # (height, width): none is data.image_size (32)
TINY = {
    "seed": 5,
    "data": {"image_size": 32, "batch_size": 8},
    "models": {MODEL: {"c_grid": [0.1, 1.0], "cv_folds": 3, "degrade": [{"jpeg": 80}], "head": "gated"}},
    "evaluate": {"gradcam_examples": 1},
    "robustness": {"perturbations": {"jpeg_75": {"jpeg": 75}}},
    "mlflow": {"experiment": "test-forensic"},
}


def _write_data(root):
    """train/valid/test {real,fake} PNG files of several sizes: sample images cropped (not resized)."""
    from deepfake_detection.data.sample import generate

    generate(root / "raw", images_per_class=30, size=56, seed=5, progress=False)
    for i, src in enumerate(sorted((root / "raw").rglob("*.jpg"))):
        h, w = SIZES[i % len(SIZES)]
        dest = root / "data" / src.relative_to(root / "raw").with_suffix(".png")
        dest.parent.mkdir(parents=True, exist_ok=True)
        Image.open(src).convert("RGB").crop((0, 0, w, h)).save(dest)


def native(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    from deepfake_detection.stages import evaluate, prepare, threshold, train

    root = tmp_path_factory.mktemp("forensic")
    before = os.getcwd()
    os.chdir(root)
    try:
        _write_data(root)
        (root / "params.yaml").write_text(params_text(TINY))
        params = parse_params(TINY)
        prepare.run(params, progress=False)
        trained = train.run(MODEL, params)
        threshold.run(MODEL, params)
        evaluated = evaluate.run(MODEL, params)
        model = load_model(root / paths.model_file(MODEL, "train"))
    finally:
        os.chdir(before)
    return root, params, trained, evaluated, model


def by_hand(model, files) -> np.ndarray:
    return np.array([float(np.asarray(model(native(f)[np.newaxis]))[0, 0]) for f in files])


def test_training_features_are_those_of_the_native_pixels(project, monkeypatch):
    root, params, trained, _, model = project
    from deepfake_detection.data.manifest import load_manifest
    from deepfake_detection.linear_fit import feature_extractor, split_features

    monkeypatch.chdir(root)
    manifest = load_manifest(paths.MANIFEST)
    features, y = split_features(model, manifest, "train", [], params.seed)
    files = manifest[manifest.split == "train"].path.tolist()
    extract = feature_extractor(model)
    expected = np.stack([extract(native(f)[np.newaxis])[0] for f in files])
    np.testing.assert_allclose(features[:, 0], expected, atol=1e-6)
    assert {native(f).shape[:2] for f in files} == set(SIZES)  # several sizes went through whole
    assert trained["train_images"] == len(files) and trained["train_vectors"] == 2 * len(files)  # + one JPEG copy
    for expert in ("", "degraded_"):  # the clean and the degraded expert, each with its C
        assert trained[f"{expert}C"] in (0.1, 1.0) and 0 <= trained[f"{expert}cv_auc"] <= 1


def test_evaluation_scores_the_native_pixels(project):
    root, _, _, evaluated, model = project
    test = pd.read_csv(root / paths.predictions(MODEL, "test"))
    np.testing.assert_allclose(test.probability, by_hand(model, [root / p for p in test.path]), atol=1e-5)
    assert evaluated["test_auc_ci95"]["low"] <= evaluated["test"]["tuned"]["auc"]
    assert (root / paths.eval_plots("evaluate", MODEL) / "roc.png").is_file()


def test_robustness_clean_scores_are_the_native_scores(project):
    from click.testing import CliRunner

    from deepfake_detection.cli import cli

    root, _, _, evaluated, model = project
    before = os.getcwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(cli, ["robustness", MODEL, "--params", "params.yaml"])
    finally:
        os.chdir(before)
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(root / paths.robustness_scores(MODEL))
    np.testing.assert_allclose(scores.clean, by_hand(model, [root / p for p in scores.path]), atol=1e-5)
    assert not np.allclose(scores.jpeg_75, scores.clean)  # the perturbation reached the pixels


def test_the_served_pyfunc_scores_native_pixels_with_its_threshold(project, tmp_path):
    from deepfake_detection.serving.pyfunc import log_detector

    root, _, _, evaluated, model = project
    use_store(tmp_path, "serve-forensic")  # artifacts under tmp_path, not ./mlruns
    files = sorted((root / "data" / "test").rglob("*.png"))[:6]
    with mlflow.start_run():
        info = log_detector(
            [root / paths.model_file(MODEL, "train")], evaluated["threshold"], 32, member_views=["native"]
        )
    detector = mlflow.pyfunc.load_model(info.model_uri)
    with local_files():
        out = detector.predict(pd.DataFrame({"path": [str(f) for f in files]}))
    expected = by_hand(model, files)
    np.testing.assert_allclose(out.probability_fake, expected, atol=1e-5)
    assert list(out.label) == ["fake" if p >= evaluated["threshold"] else "real" for p in expected]
    assert out.error.isna().all()


def test_threshold_scores_validation_under_the_perturbations_for_the_robust_auc(project):
    import json

    from sklearn.metrics import roc_auc_score

    root, *_ = project
    info = json.loads((root / paths.stage_metrics("threshold", MODEL)).read_text())
    val = pd.read_csv(root / paths.predictions(MODEL, "valid"))
    perturbed = pd.read_csv(root / paths.predictions(MODEL, "valid_perturbed"))
    assert list(perturbed.columns[-2:]) == ["clean", "jpeg_75"] and list(perturbed.path) == list(val.path)
    np.testing.assert_allclose(perturbed.clean, val.probability, atol=1e-5)  # one scoring path
    by_hand = (roc_auc_score(val.y, val.probability) + roc_auc_score(val.y, perturbed.jpeg_75)) / 2
    assert info["val"]["robust_auc"] == pytest.approx(by_hand, abs=1e-9)


def test_an_ensemble_with_a_forensic_member_is_served_and_explained(project, tmp_path):
    """A soft vote of the forensic network (native view) and a small CNN (resized): the pyfunc
    averages the two members' own scores, and explain draws one map per image."""
    from deepfake_detection.config import ModelsParams
    from deepfake_detection.data.pipeline import resize
    from deepfake_detection.explain import explain_files
    from deepfake_detection.models.networks import LightSECNNParams
    from deepfake_detection.models.zoo import build_model
    from deepfake_detection.serving.pyfunc import log_detector

    root, _, _, evaluated, forensic = project
    cnn = build_model("light_se_cnn", 32, ModelsParams(light_se_cnn=LightSECNNParams(filters=[4])), seed=1)
    cnn.save(tmp_path / "cnn.keras")
    use_store(tmp_path, "serve-forensic-ensemble")  # artifacts under tmp_path, not ./mlruns
    ensemble = {"kind": "soft_vote", "members": [MODEL, "light_se_cnn"], "threshold": 0.5}
    with mlflow.start_run():
        info = log_detector(
            [root / paths.model_file(MODEL, "train"), tmp_path / "cnn.keras"],
            0.5,
            32,
            ensemble=ensemble,
            member_views=["native", "resize"],
        )
    files = sorted((root / "data" / "test").rglob("*.png"))[:3]
    with local_files():
        out = mlflow.pyfunc.load_model(info.model_uri).predict(pd.DataFrame({"path": [str(f) for f in files]}))
    by_members = [
        (
            float(np.asarray(forensic(native(f)[np.newaxis]))[0, 0])
            + float(np.asarray(cnn(resize(native(f), 32)[np.newaxis]))[0, 0])
        )
        / 2
        for f in files
    ]
    np.testing.assert_allclose(out.probability_fake, by_members, atol=1e-5)
    written = explain_files(info.model_uri, files, tmp_path / "maps")
    assert len(written) == len(files) and all(p.stat().st_size > 1000 for p in written)


def test_deepfake_detect_serve_and_predict_score_a_forensic_detector_at_native_resolution(project, tmp_path):
    """The forensic detector through the two commands a user runs: `deepfake-detect predict` and
    `deepfake-detect serve` (REST over loopback), both against a real SQLite store."""
    import base64
    import json
    import subprocess
    import urllib.request

    from loopback import free_port, stop, wait_for
    from project_commands import command_env

    from deepfake_detection.serving.pyfunc import log_detector

    root, _, _, evaluated, model = project
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    use_store(tmp_path, "serve-forensic-rest")
    with mlflow.start_run() as run:
        log_detector([root / paths.model_file(MODEL, "train")], evaluated["threshold"], 32, member_views=["native"])
    uri = f"runs:/{run.info.run_id}/model"
    files = sorted((root / "data" / "test").rglob("*.png"))[:3]
    expected = by_hand(model, files)

    out = tmp_path / "p.json"
    done = subprocess.run(
        ["deepfake-detect", "predict", "--model", uri, *map(str, files), "--output", str(out)],
        env=command_env(store),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose([r["probability_fake"] for r in json.loads(out.read_text())], expected, atol=1e-5)

    port, log_path = free_port(), tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["deepfake-detect", "serve", "--model", uri, "--port", str(port)],
            env=command_env(store),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(f"http://127.0.0.1:{port}/ping", proc, log_path, 240)
        body = {"dataframe_records": [{"image": base64.b64encode(f.read_bytes()).decode()} for f in files]}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            rows = json.loads(response.read())["predictions"]
    finally:
        stop(proc)
    np.testing.assert_allclose([r["probability_fake"] for r in rows], expected, atol=1e-5)
