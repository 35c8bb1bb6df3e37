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

from deepfake_detection.config import ModelsParams
from deepfake_detection.data import decode
from deepfake_detection.data.pipeline import image_dataset_from_paths
from deepfake_detection.serving import export, predict, pyfunc
from deepfake_detection.serving import io as serving_io

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
        info = pyfunc.log_detector(
            [keras_path], threshold, SIZE, threshold_method="youden", input_example_image=files[0]
        )
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


def predict_paths(model, paths, **kw) -> pd.DataFrame:
    """The pyfunc on ``path`` rows, in process (:func:`serving_io.local_files`)."""
    with serving_io.local_files():
        return model.predict(pd.DataFrame({"path": [str(p) for p in paths]}), **kw)


def test_path_and_base64_rows_agree_with_the_training_pipeline(detector, pyfunc_model):
    files = detector["files"]
    by_path = predict_paths(pyfunc_model, files)
    by_bytes = pyfunc_model.predict(pd.DataFrame({"image": [b64(f) for f in files]}))
    assert list(by_path.columns) == list(pyfunc.OUTPUT_COLUMNS)
    assert by_path["error"].isna().all() and by_bytes["error"].isna().all()
    assert by_path["warning"].isna().all()
    np.testing.assert_allclose(by_path["probability_fake"], by_bytes["probability_fake"], atol=1e-6)
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
    frame = pd.DataFrame(
        {"path": [str(good), str(tmp_path / "missing.jpg"), str(not_image), str(truncated), None, *rest]}
    )
    with serving_io.local_files():
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
    out = predict_paths(pyfunc_model, detector["files"])
    np.testing.assert_allclose(out["threshold"], t, atol=1e-12)
    expected = np.where(detector["reference"] >= t, "fake", "real")
    assert out["label"].tolist() == expected.tolist()
    # the request may carry its own threshold (a signature param)
    strict = predict_paths(pyfunc_model, detector["files"], params={"threshold": 1.0})
    np.testing.assert_allclose(strict["threshold"], 1.0)
    assert set(strict["label"]) == {"real"}


@pytest.mark.parametrize(
    "params",
    [
        {"threshold": 1.01},
        {"threshold": -0.5},
        {"threshold": float("nan")},
        {"batch_size": 0},
        {"batch_size": -3},
        {"batch_size": pyfunc.MAX_BATCH_SIZE + 1},
    ],
)
def test_request_params_out_of_range_are_refused_with_the_name_to_fix(detector, pyfunc_model, params):
    from deepfake_detection.serving.io import InvalidInputError

    (name,) = params
    with pytest.raises(InvalidInputError, match=f"'{name}' param must be"):
        predict_paths(pyfunc_model, detector["files"][:1], params=params)


def test_the_signature_accepts_path_or_image(detector):
    signature = mlflow.models.get_model_info(detector["info"].model_uri).signature
    columns = {c.name: c for c in signature.inputs.inputs}
    assert set(columns) == {"path", "image"}
    assert not columns["path"].required and not columns["image"].required
    assert {p.name for p in signature.params.params} == {"threshold", "batch_size", "faces"}
    from deepfake_detection.serving.face_rows import FACE_COLUMNS, FACE_OUTPUT_COLUMNS

    outputs = signature.outputs.inputs
    assert [c.name for c in outputs] == list(FACE_OUTPUT_COLUMNS)  # the face columns: only with faces on
    assert [c.name for c in outputs if not c.required] == [*FACE_COLUMNS, "label", "error", "warning"]


def test_predict_files_expands_folders_in_order_and_takes_a_threshold(detector, tmp_path):
    files, root = detector["files"], detector["root"] / "images"
    bad = tmp_path / "zz_bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    uri = detector["info"].model_uri
    out = predict.predict_files(uri, [files[-1], root, bad], progress=False, batch_size=3)
    # every file of the folder has its row: notes.txt (sorted after b/img7.jpg) with its error
    notes = root / "b" / "notes.txt"
    assert out["path"].tolist() == [str(files[-1])] + [str(f) for f in files] + [str(notes), str(bad)]
    assert list(out.columns) == ["path", *pyfunc.OUTPUT_COLUMNS]
    np.testing.assert_allclose(out["probability_fake"].iloc[1:-2], detector["reference"], atol=1e-6)
    assert out["error"].iloc[1:-2].isna().all()
    assert out["error"].iloc[-2] == "not a decodable image: no image format recognises it"
    assert out["error"].iloc[-1].startswith("not a decodable image") and out["label"].iloc[-1] is None
    np.testing.assert_allclose(out["threshold"], detector["threshold"], atol=1e-12)

    low = predict.predict_files(uri, [root], threshold=0.0, progress=False)
    np.testing.assert_allclose(low["threshold"], 0.0)
    assert set(low["label"].iloc[:-1]) == {"fake"} and low["label"].iloc[-1] is None

    # runs:/ URIs and a local model folder work the same
    by_run = predict.predict_files(f"runs:/{detector['run_id']}/model", [root], progress=False)
    local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path / "local"))
    by_folder = predict.predict_files(local, [root], progress=False)
    for other in (by_run, by_folder):
        np.testing.assert_allclose(other["probability_fake"], out["probability_fake"].iloc[1:-1], atol=1e-6)
        np.testing.assert_allclose(other["threshold"], detector["threshold"], atol=1e-12)

    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        predict.predict_files(uri, [tmp_path / "nowhere"], progress=False)


def test_an_ensemble_detector_combines_its_members(detector, tmp_path):
    second = tiny_model(48, seed=1)
    second_path = tmp_path / "light48.keras"
    second.save(second_path)
    files = detector["files"]
    pixels48 = np.concatenate([x.numpy() for x in image_dataset_from_paths([str(f) for f in files], 48, 8)])
    p2 = second.predict(pixels48, verbose=0).ravel()
    ensemble = {"kind": "weighted", "members": ["light_se_cnn", "light_48"], "weights": [0.25, 0.75]}
    with mlflow.start_run():
        info = pyfunc.log_detector(
            [detector["keras_path"], second_path], 0.5, SIZE, ensemble=ensemble, input_example_image=files[0]
        )
    model = mlflow.pyfunc.load_model(info.model_uri)
    out = predict_paths(model, files)
    np.testing.assert_allclose(out["probability_fake"], 0.25 * detector["reference"] + 0.75 * p2, atol=1e-6)
    assert mlflow.models.get_model_info(info.model_uri).metadata["ensemble_kind"] == "weighted"
    with pytest.raises(ValueError, match="ensemble of 2 models"):
        export.export_model(info.model_uri, "onnx", tmp_path / "ens.onnx")


def test_models_logged_before_and_after_the_serving_split_both_load(detector, monkeypatch):
    """A detector's pickle names its class: ``deepfake_detection.serving.pyfunc.DeepfakeDetector``
    now, ``deepfake_detection.inference.DeepfakeDetector`` for models logged before the split;
    both load in this process (the compatibility module keeps the old name) and score alike."""
    import deepfake_detection.inference  # noqa: F401  (what an old pickle names)

    def pickled(info) -> bytes:
        return (Path(mlflow.artifacts.download_artifacts(info.model_uri)) / "python_model.pkl").read_bytes()

    new = pickled(detector["info"])
    assert b"deepfake_detection.serving.pyfunc" in new and b"deepfake_detection.inference" not in new
    with monkeypatch.context() as patch:  # log as the old module did
        patch.setattr(pyfunc.DeepfakeDetector, "__module__", "deepfake_detection.inference")
        with mlflow.start_run():
            old_info = pyfunc.log_detector([detector["keras_path"]], detector["threshold"], SIZE)
    old = pickled(old_info)
    assert b"deepfake_detection.inference" in old and b"deepfake_detection.serving.pyfunc" not in old
    frame = pd.DataFrame({"image": [b64(f) for f in detector["files"]]})
    for info in (detector["info"], old_info):
        out = mlflow.pyfunc.load_model(info.model_uri).predict(frame)
        assert out["error"].isna().all()
        np.testing.assert_allclose(out["probability_fake"], detector["reference"], atol=1e-5)


def test_log_detector_checks_its_arguments(detector):
    path = detector["keras_path"]
    with pytest.raises(RuntimeError, match="inside mlflow.start_run"):
        pyfunc.log_detector([path], 0.5, SIZE)
    with mlflow.start_run():
        with pytest.raises(ValueError, match="need an ensemble"):
            pyfunc.log_detector([path, path], 0.5, SIZE)
        with pytest.raises(ValueError, match=r"threshold must lie in \[0, 1\]"):
            pyfunc.log_detector([path], 1.5, SIZE)


def test_onnx_export_matches_keras_and_serves_the_same_labels(detector, tmp_path):
    out = export.export_model(detector["info"].model_uri, "onnx", tmp_path / "detector.onnx")
    sidecar = json.loads((tmp_path / "detector.onnx.json").read_text())
    assert sidecar["threshold"] == pytest.approx(detector["threshold"]) and sidecar["image_size"] == SIZE
    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [sidecar["input_name"]]
    onnx_p = session.run(None, {sidecar["input_name"]: detector["pixels"]})[0].ravel()
    np.testing.assert_allclose(onnx_p, detector["reference"], atol=1e-4)

    root = detector["root"] / "images"
    keras_out = predict.predict_files(detector["info"].model_uri, [root], progress=False)
    onnx_out = predict.predict_files(str(out), [root], runtime="onnx", progress=False)
    assert onnx_out["path"].tolist() == keras_out["path"].tolist()
    assert onnx_out["label"].tolist() == keras_out["label"].tolist()
    np.testing.assert_allclose(onnx_out["probability_fake"], keras_out["probability_fake"], atol=1e-4)
    np.testing.assert_allclose(onnx_out["threshold"], detector["threshold"], atol=1e-12)

    (tmp_path / "detector.onnx.json").unlink()
    with pytest.warns(UserWarning, match="using 0.5"):
        bare = predict.predict_files(str(out), [root], runtime="onnx", progress=False)
    np.testing.assert_allclose(bare["threshold"], 0.5)


def test_savedmodel_export_gives_the_same_outputs(detector, tmp_path):
    import tensorflow as tf

    out = export.export_model(str(detector["keras_path"]), "savedmodel", tmp_path / "saved")
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
from deepfake_detection.serving.io import local_files
with local_files():
    out = model.predict(pd.DataFrame({{'path': {[str(f) for f in detector["files"]]!r}}}))
print(out['probability_fake'].tolist())
"""
    env = {"MLFLOW_DISABLE_TELEMETRY": "true", "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(got, detector["reference"], atol=1e-6)


# --------------------------------------------------------------------------- hardening


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims ``width x height`` (8-bit RGB) with almost no data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def save(path: Path, size: tuple[int, int], fmt: str | None = None, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    w, h = size
    pixels = np.clip(rng.integers(0, 128, (h, w, 3)) + np.linspace(0, 127, w)[None, :, None], 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path, fmt)
    return path


@pytest.fixture(scope="module")
def onnx_file(detector, tmp_path_factory):
    return export.export_model(detector["info"].model_uri, "onnx", tmp_path_factory.mktemp("onnx") / "d.onnx")


def test_path_rows_need_an_opt_in_that_params_cannot_give(detector, pyfunc_model, monkeypatch):
    """What a REST client reaches: the pyfunc itself. No file is read unless the process opted in."""
    monkeypatch.delenv(serving_io.PATH_ROOT_ENV, raising=False)
    root = detector["root"] / "images"
    paths = [str(detector["files"][0]), "/dev/zero", "/etc/hostname", "/no/such/file"]
    for params in (None, {"threshold": 0.5, "batch_size": 1}):
        out = pyfunc_model.predict(pd.DataFrame({"path": paths}), params=params)
        assert out["error"].tolist() == [serving_io.PATHS_DISABLED] * 4
        assert out["probability_fake"].isna().all() and out["label"].isna().all()

    monkeypatch.setenv(serving_io.PATH_ROOT_ENV, str(root))
    inside = [str(f.relative_to(root)) for f in detector["files"]]
    out = pyfunc_model.predict(pd.DataFrame({"path": inside + paths[1:] + ["../light.keras"]}))
    np.testing.assert_allclose(out["probability_fake"].iloc[:8], detector["reference"], atol=1e-6)
    assert out["error"].iloc[:8].isna().all()
    assert out["error"].iloc[8:].tolist() == [serving_io.OUTSIDE_ROOT] * 4


def test_every_decoding_path_checks_the_pixel_limit_before_decoding(
    detector, pyfunc_model, onnx_file, tmp_path, monkeypatch
):
    from deepfake_detection.explain import explain_files

    good = detector["files"][0]
    (tmp_path / "bomb_ours.png").write_bytes(png_declaring(9000, 9000))  # over MAX_PIXELS only
    (tmp_path / "bomb_pillow.png").write_bytes(png_declaring(18000, 18000))  # over Pillow's guard too
    tiny = save(tmp_path / "tiny.png", (1, 1))
    long = save(tmp_path / "long.png", (30, 8000))
    paths = [good, tmp_path / "bomb_ours.png", tmp_path / "bomb_pillow.png", tiny, long]
    bombs = {paths[1].read_bytes(), paths[2].read_bytes()}
    decoded: list[bytes] = []
    real_decode = decode.decode_checked
    monkeypatch.setattr(
        decode,
        "decode_checked",
        lambda contents, size: decoded.extend(c for c in contents if c) or real_decode(contents, size),
    )

    def check(out: pd.DataFrame, where: str):
        assert out["error"][0] is None and out["warning"][0] is None, where
        assert out["probability_fake"][0] == pytest.approx(detector["reference"][0], abs=1e-4), where
        assert out["error"][1] == "image too large: 9000x9000 = 81,000,000 pixels > the limit of 67,108,864", where
        assert out["error"][2].startswith("image too large: Image size (324000000 pixels) exceeds limit"), where
        assert out["error"][3] == "image too small: 1x1 pixels, at least 8 a side needed", where
        assert out["label"][1:4].isna().all() and out["probability_fake"][1:4].isna().all(), where
        assert out["error"][4] is None and out["label"][4] in ("real", "fake"), where
        assert "elongated image (30x8000 pixels" in out["warning"][4] and "small image" in out["warning"][4], where
        assert out["warning"][1:4].isna().all(), where

    with serving_io.local_files():
        check(pyfunc_model.predict(pd.DataFrame({"path": [str(p) for p in paths]})), "pyfunc path")
    check(pyfunc_model.predict(pd.DataFrame({"image": [b64(p) for p in paths]})), "pyfunc base64")
    check(predict.predict_files(detector["info"].model_uri, paths, progress=False), "predict_files keras")
    check(predict.predict_files(str(onnx_file), paths, runtime="onnx", progress=False), "predict_files onnx")
    written = explain_files(detector["info"].model_uri, paths, tmp_path / "cam")
    assert [p.name for p in written] == [f"{good.stem}_gradcam.png", "long_gradcam.png"]
    assert decoded and not bombs & set(decoded), "a refused image reached the decoder"


def test_the_pixel_limit_is_the_models_own(detector, tmp_path):
    assert mlflow.models.get_model_info(detector["info"].model_uri).metadata["max_pixels"] == 8192 * 8192
    with mlflow.start_run():
        info = pyfunc.log_detector(
            [detector["keras_path"]], 0.5, SIZE, max_pixels=1500, input_example_image=detector["files"][0]
        )  # 32x32: under the limit
    assert mlflow.models.get_model_info(info.model_uri).metadata["max_pixels"] == 1500
    files = detector["files"]  # 32x32 (1,024 pixels) and 56x40 (2,240 pixels) images
    out = mlflow.pyfunc.load_model(info.model_uri).predict(pd.DataFrame({"image": [b64(f) for f in files]}))
    small = [Image.open(f).size == (32, 32) for f in files]
    assert any(small) and not all(small)
    for row, is_small in zip(out.itertuples(), small):
        if is_small:
            assert row.error is None
        else:
            assert row.error == "image too large: 56x40 = 2,240 pixels > the limit of 1,500"
    np.testing.assert_allclose(out["probability_fake"][small], detector["reference"][small], atol=1e-6)
    # explain reads the same limit from the model's metadata: only the 32x32 images get a Grad-CAM
    from deepfake_detection.explain import explain_files

    written = explain_files(info.model_uri, files, tmp_path / "cam")
    assert sorted(p.name for p in written) == sorted(f"{f.stem}_gradcam.png" for f, s in zip(files, small) if s)


def test_every_file_in_a_folder_gets_a_row_and_the_cli_counts_them(detector, tmp_path, monkeypatch):
    import os

    from click.testing import CliRunner

    from deepfake_detection.cli import cli

    folder = tmp_path / "mixed"
    save(folder / "a_good.jpg", (48, 40), seed=1)
    frames = [Image.fromarray(np.full((40, 48, 3), v, np.uint8)) for v in (30, 200)]
    folder.mkdir(exist_ok=True)
    frames[0].save(folder / "b_anim.gif", save_all=True, append_images=frames[1:])
    save(folder / "c_pic.webp", (48, 40), seed=2)
    save(folder / "d_pic.bmp", (48, 40), seed=3)
    save(folder / "e_scan.tif", (48, 40), seed=4)
    (folder / "f_notes.txt").write_text("not an image")
    (folder / "g_empty.jpg").write_bytes(b"")
    (folder / "h_dangling.jpg").symlink_to(folder / "gone.jpg")
    os.mkfifo(folder / "i_fifo.jpg")
    save(folder / "sub" / "j_nested.png", (48, 40), seed=5)
    save(folder / "sub" / "k_narrow.png", (20, 200), seed=6)
    expected = {
        "a_good.jpg": None,
        "b_anim.gif": None,
        "c_pic.webp": None,
        "d_pic.bmp": None,
        "e_scan.tif": "unsupported image format TIFF",
        "f_notes.txt": "not a decodable image: no image format recognises it",
        "g_empty.jpg": "not a decodable image: empty content",
        "h_dangling.jpg": "dangling symbolic link",
        "i_fifo.jpg": "not a regular file",
        "j_nested.png": None,
        "k_narrow.png": None,
    }
    uri = detector["info"].model_uri
    out = predict.predict_files(uri, [folder], progress=False, batch_size=4)
    assert [Path(p).name for p in out["path"]] == list(expected)
    for row in out.itertuples():
        want = expected[Path(row.path).name]
        if want is None:
            assert row.error is None and 0.0 <= row.probability_fake <= 1.0, row
        else:
            assert row.error.startswith(want) and math.isnan(row.probability_fake) and row.label is None, row
    assert out["warning"].notna().tolist() == [False] * 10 + [True]  # k_narrow: small, 10:1

    # the same files named one by one get the same rows
    one_by_one = predict.predict_files(uri, list(out["path"]), progress=False)
    assert one_by_one["error"].tolist() == out["error"].tolist()
    np.testing.assert_allclose(one_by_one["probability_fake"], out["probability_fake"], atol=1e-6)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow.get_tracking_uri())
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["predict", "--model", uri, str(folder), "--output", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "p.csv")
    assert len(rows) == 11
    fake, real = int((rows.label == "fake").sum()), int((rows.label == "real").sum())
    assert fake + real == 6
    assert f"11 files: 6 scored ({fake} fake, {real} real, 1 with a warning), 5 errors" in result.stderr

    # nothing scored: the rows are still written, and the exit status says so (it was 0)
    bad = [str(folder / name) for name in ("e_scan.tif", "f_notes.txt", "g_empty.jpg")]
    result = CliRunner().invoke(cli, ["predict", "--model", uri, *bad, "--output", str(tmp_path / "bad.csv")])
    assert result.exit_code == 1, result.output
    assert "3 files: 0 scored (0 fake, 0 real), 3 errors" in result.stderr
    assert "Error: nothing was scored: every row has an error" in result.stderr
    assert len(pd.read_csv(tmp_path / "bad.csv")) == 3


def test_the_cli_prints_blanks_not_none_and_no_tensorflow_start_up_lines(detector, tmp_path):
    """A fresh `deepfake-detect predict` process: the table shows blanks where a row has no error,
    warning or score, and stderr holds only the progress and the count (no abseil/oneDNN lines, no
    artifact download bars), with TF_CPP_MIN_LOG_LEVEL unset as in a user's shell."""
    from project_commands import command_env

    bad = tmp_path / "not_an_image.png"
    bad.write_bytes(b"not an image")
    env = command_env(f"sqlite:///{detector['root'] / 'mlflow.db'}")
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    done = subprocess.run(
        [
            "deepfake-detect",
            "predict",
            "--model",
            f"runs:/{detector['run_id']}/model",
            str(detector["files"][0]),
            str(bad),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "None" not in done.stdout and "NaN" not in done.stdout, done.stdout
    assert "not a decodable image" in done.stdout
    for noise in ("absl", "oneDNN", "port.cc", "Downloading artifacts"):
        assert noise not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("2 files: 1 scored")
