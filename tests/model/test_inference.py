"""The pyfunc detector, batch prediction on files and the SavedModel/ONNX exports, on a tiny
``light_se_cnn`` (32 px) logged to a throwaway SQLite MLflow store."""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from deepfake_detection import inference
from deepfake_detection.config import ModelsParams
from deepfake_detection.data.pipeline import image_dataset_from_paths

SIZE = 32


def use_store(root: Path, experiment: str = "test-inference") -> None:
    """Point MLflow at ``root/mlflow.db`` with artifacts in ``root/mlartifacts``."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment, (root / "mlartifacts").as_uri())
    mlflow.set_experiment(experiment_id=exp_id)


def tiny_model(size: int = SIZE, seed: int = 0):
    """A random ``light_se_cnn`` whose outputs spread over (0, 1) (the last kernel scaled up)."""
    from deepfake_detection.models.zoo import build_model

    model = build_model("light_se_cnn", size, ModelsParams(), seed=seed)
    last = model.get_layer("probability_fake")
    kernel, bias = last.get_weights()
    last.set_weights([kernel * 60.0, bias])
    return model


def write_images(root: Path) -> list[Path]:
    """Eight small images of mixed kinds in two sub-folders (sorted order = returned order)."""
    rng = np.random.default_rng(7)
    files = []
    for i in range(8):
        h, w = (40, 56) if i % 3 else (32, 32)
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        # a smooth gradient added, so images differ in more than noise
        pixels = np.clip(pixels // 2 + np.linspace(0, 120 * (i % 4), w)[None, :, None], 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels, "RGB")
        sub = "a" if i < 4 else "b"
        if i == 5:
            path, image = root / sub / f"img{i}.png", image.convert("L")  # grayscale PNG
        elif i == 6:
            path, image = root / sub / f"img{i}.PNG", image.convert("RGBA")  # upper-case suffix, alpha
        else:
            path = root / sub / f"img{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        files.append(path)
    (root / "b" / "notes.txt").write_text("not an image, not listed")
    return sorted(files)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """A logged single-model detector with its threshold between the images' probabilities."""
    root = tmp_path_factory.mktemp("inference")
    previous = mlflow.get_tracking_uri()
    use_store(root)
    model = tiny_model()
    keras_path = root / "light.keras"
    model.save(keras_path)
    files = write_images(root / "images")
    pixels = np.concatenate([x.numpy() for x in image_dataset_from_paths([str(f) for f in files], SIZE, 4)])
    reference = model.predict(pixels, verbose=0).ravel().astype(np.float64)  # the training pipeline's view
    ordered = np.sort(reference)
    assert ordered[-1] - ordered[0] > 0.05, f"the tiny model's outputs hardly differ: {reference}"
    threshold = float((ordered[3] + ordered[4]) / 2)
    with mlflow.start_run() as run:
        info = inference.log_detector([keras_path], threshold, SIZE, threshold_method="youden",
                                      input_example_image=files[0])
    yield {
        "root": root,
        "info": info,
        "run_id": run.info.run_id,
        "keras_path": keras_path,
        "model": model,
        "files": files,
        "pixels": pixels,
        "reference": reference,
        "threshold": threshold,
    }
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def pyfunc_model(detector):
    return mlflow.pyfunc.load_model(detector["info"].model_uri)


@pytest.fixture(autouse=True)
def _store_of_module(request):
    """Every test of this module talks to the module's own store (other modules set theirs)."""
    if "detector" in request.fixturenames:
        use_store(request.getfixturevalue("detector")["root"])


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def test_path_and_base64_rows_agree_with_the_training_pipeline(detector, pyfunc_model):
    files = detector["files"]
    by_path = pyfunc_model.predict(pd.DataFrame({"path": [str(f) for f in files]}))
    by_bytes = pyfunc_model.predict(pd.DataFrame({"image": [b64(f) for f in files]}))
    assert list(by_path.columns) == list(inference.OUTPUT_COLUMNS)
    assert by_path["error"].isna().all() and by_bytes["error"].isna().all()
    np.testing.assert_array_equal(by_path["probability_fake"], by_bytes["probability_fake"])
    np.testing.assert_allclose(by_path["probability_fake"], detector["reference"], atol=1e-6)
    assert by_path["label"].tolist() == by_bytes["label"].tolist()
    assert set(by_path["label"]) == {"real", "fake"}


def test_a_bad_row_gets_its_own_error_and_never_fails_the_batch(detector, pyfunc_model, tmp_path):
    good = detector["files"][0]
    not_image = tmp_path / "fake.jpg"
    not_image.write_text("this is text")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    rest = [str(f) for f in detector["files"][1:]]  # good rows after the bad ones keep their places
    frame = pd.DataFrame({"path": [str(good), str(tmp_path / "missing.jpg"), str(not_image), str(truncated), None, *rest]})
    out = pyfunc_model.predict(frame)
    assert len(out) == 5 + len(rest)
    np.testing.assert_allclose(out["probability_fake"].iloc[5:], detector["reference"][1:], atol=1e-6)
    assert out["error"].iloc[5:].isna().all()
    assert out.loc[0, "error"] is None and out.loc[0, "label"] in ("real", "fake")
    assert "file not found" in out.loc[1, "error"]
    assert out.loc[2, "error"].startswith("not a decodable image:")
    assert out.loc[3, "error"].startswith("not a decodable image:")
    assert "empty row" in out.loc[4, "error"]
    for i in range(1, 5):
        assert math.isnan(out.loc[i, "probability_fake"]) and out.loc[i, "label"] is None

    by_bytes = pyfunc_model.predict(pd.DataFrame({"image": [b64(good), "%%% not base64 %%%", b64(not_image)]}))
    assert by_bytes.loc[0, "error"] is None
    assert by_bytes.loc[0, "probability_fake"] == pytest.approx(out.loc[0, "probability_fake"], abs=1e-7)
    assert by_bytes.loc[1, "error"].startswith("not valid base64")
    assert by_bytes.loc[2, "error"].startswith("not a decodable image:")


def test_a_frame_without_path_or_image_is_a_clear_value_error(pyfunc_model):
    with pytest.raises(ValueError, match="'path' column .* or an 'image' column"):
        pyfunc_model.predict(pd.DataFrame({"file": ["x.jpg"]}))


def test_threshold_comes_from_the_metadata_and_labels_follow_it(detector, pyfunc_model):
    metadata = mlflow.models.get_model_info(detector["info"].model_uri).metadata
    t = detector["threshold"]
    assert metadata["threshold"] == pytest.approx(t)
    assert metadata["threshold_method"] == "youden" and metadata["image_size"] == SIZE
    out = pyfunc_model.predict(pd.DataFrame({"path": [str(f) for f in detector["files"]]}))
    assert (out["threshold"] == t).all()
    expected = np.where(detector["reference"] >= t, "fake", "real")
    assert out["label"].tolist() == expected.tolist()
    # the request may carry its own threshold (a signature param)
    strict = pyfunc_model.predict(pd.DataFrame({"path": [str(f) for f in detector["files"]]}), params={"threshold": 1.0})
    assert (strict["threshold"] == 1.0).all() and set(strict["label"]) == {"real"}


def test_the_signature_accepts_path_or_image(detector):
    signature = mlflow.models.get_model_info(detector["info"].model_uri).signature
    columns = {c.name: c for c in signature.inputs.inputs}
    assert set(columns) == {"path", "image"}
    assert not columns["path"].required and not columns["image"].required
    assert {p.name for p in signature.params.params} == {"threshold", "batch_size"}


def test_predict_files_expands_folders_in_order_and_takes_a_threshold(detector, tmp_path):
    files, root = detector["files"], detector["root"] / "images"
    bad = tmp_path / "zz_bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    uri = detector["info"].model_uri
    out = inference.predict_files(uri, [files[-1], root, bad], progress=False, batch_size=3)
    assert out["path"].tolist() == [str(files[-1])] + [str(f) for f in files] + [str(bad)]
    assert list(out.columns) == ["path", *inference.OUTPUT_COLUMNS]
    np.testing.assert_allclose(out["probability_fake"].iloc[1:-1], detector["reference"], atol=1e-6)
    assert out["error"].iloc[-1].startswith("not a decodable image") and out["label"].iloc[-1] is None
    assert (out["threshold"] == detector["threshold"]).all()

    low = inference.predict_files(uri, [root], threshold=0.0, progress=False)
    assert (low["threshold"] == 0.0).all() and set(low["label"]) == {"fake"}

    # runs:/ URIs and a local model folder work the same
    by_run = inference.predict_files(f"runs:/{detector['run_id']}/model", [root], progress=False)
    local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path / "local"))
    by_folder = inference.predict_files(local, [root], progress=False)
    for other in (by_run, by_folder):
        np.testing.assert_array_equal(other["probability_fake"], out["probability_fake"].iloc[1:-1])
        assert (other["threshold"] == detector["threshold"]).all()

    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        inference.predict_files(uri, [tmp_path / "nowhere"], progress=False)


def test_an_ensemble_detector_combines_its_members(detector, tmp_path):
    second = tiny_model(48, seed=1)
    second_path = tmp_path / "light48.keras"
    second.save(second_path)
    files = detector["files"]
    pixels48 = np.concatenate([x.numpy() for x in image_dataset_from_paths([str(f) for f in files], 48, 8)])
    p2 = second.predict(pixels48, verbose=0).ravel()
    ensemble = {"kind": "weighted", "members": ["light_se_cnn", "light_48"], "weights": [0.25, 0.75]}
    with mlflow.start_run():
        info = inference.log_detector([detector["keras_path"], second_path], 0.5, SIZE, ensemble=ensemble,
                                      input_example_image=files[0])
    model = mlflow.pyfunc.load_model(info.model_uri)
    out = model.predict(pd.DataFrame({"path": [str(f) for f in files]}))
    np.testing.assert_allclose(out["probability_fake"], 0.25 * detector["reference"] + 0.75 * p2, atol=1e-6)
    assert mlflow.models.get_model_info(info.model_uri).metadata["ensemble_kind"] == "weighted"
    with pytest.raises(ValueError, match="ensemble of 2 models"):
        inference.export_model(info.model_uri, "onnx", tmp_path / "ens.onnx")


def test_log_detector_checks_its_arguments(detector):
    path = detector["keras_path"]
    with pytest.raises(RuntimeError, match="inside mlflow.start_run"):
        inference.log_detector([path], 0.5, SIZE)
    with mlflow.start_run():
        with pytest.raises(ValueError, match="need an ensemble"):
            inference.log_detector([path, path], 0.5, SIZE)
        with pytest.raises(ValueError, match=r"threshold must lie in \[0, 1\]"):
            inference.log_detector([path], 1.5, SIZE)


def test_onnx_export_matches_keras_and_serves_the_same_labels(detector, tmp_path):
    out = inference.export_model(detector["info"].model_uri, "onnx", tmp_path / "detector.onnx")
    sidecar = json.loads((tmp_path / "detector.onnx.json").read_text())
    assert sidecar["threshold"] == pytest.approx(detector["threshold"]) and sidecar["image_size"] == SIZE
    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [sidecar["input_name"]]
    onnx_p = session.run(None, {sidecar["input_name"]: detector["pixels"]})[0].ravel()
    np.testing.assert_allclose(onnx_p, detector["reference"], atol=1e-4)

    root = detector["root"] / "images"
    keras_out = inference.predict_files(detector["info"].model_uri, [root], progress=False)
    onnx_out = inference.predict_files(str(out), [root], runtime="onnx", progress=False)
    assert onnx_out["path"].tolist() == keras_out["path"].tolist()
    assert onnx_out["label"].tolist() == keras_out["label"].tolist()
    np.testing.assert_allclose(onnx_out["probability_fake"], keras_out["probability_fake"], atol=1e-4)
    assert (onnx_out["threshold"] == detector["threshold"]).all()

    (tmp_path / "detector.onnx.json").unlink()
    with pytest.warns(UserWarning, match="using 0.5"):
        bare = inference.predict_files(str(out), [root], runtime="onnx", progress=False)
    assert (bare["threshold"] == 0.5).all()


def test_savedmodel_export_gives_the_same_outputs(detector, tmp_path):
    import tensorflow as tf

    out = inference.export_model(str(detector["keras_path"]), "savedmodel", tmp_path / "saved")
    loaded = tf.saved_model.load(str(out))
    got = loaded.serve(tf.constant(detector["pixels"])).numpy().ravel()
    np.testing.assert_allclose(got, detector["reference"], atol=1e-5)
    sidecar = json.loads((tmp_path / "saved.json").read_text())
    assert sidecar["threshold"] is None and sidecar["image_size"] == SIZE  # a bare .keras carries none


def test_the_logged_model_loads_where_the_package_is_not_installed(detector, tmp_path):
    """The model folder carries code/deepfake_detection: a process without our src/ on its path
    (nor the editable install) imports the copy and predicts the same."""
    local = mlflow.artifacts.download_artifacts(artifact_uri=detector["info"].model_uri, dst_path=str(tmp_path / "m"))
    script = f"""
import sys
sys.path = [p for p in sys.path if not p.rstrip('/').endswith('/src')]
try:
    import deepfake_detection
except ImportError:
    pass
else:
    raise SystemExit('deepfake_detection is still importable: ' + deepfake_detection.__file__)
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model({local!r})
import deepfake_detection
assert deepfake_detection.__file__.startswith({local!r}), deepfake_detection.__file__
out = model.predict(pd.DataFrame({{'path': {[str(f) for f in detector['files']]!r}}}))
print(out['probability_fake'].tolist())
"""
    env = {"MLFLOW_DISABLE_TELEMETRY": "true", "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(got, detector["reference"], atol=1e-6)
