"""The face path at inference: the pyfunc detector's ``faces`` flag and param, ``predict --faces``
(Keras and ONNX) and ``explain --faces``, on a tiny ``light_se_cnn`` (32 px) logged to a
throwaway SQLite MLflow store.

The photos come from packages, not downloads: scikit-image's astronaut (a portrait) pasted once
and twice onto canvases, scikit-learn's china.jpg (no face); beside them the bad inputs every
path must survive (not an image, 1 x 1 pixel, a header claiming 9000 x 9000 pixels, a missing
file). MTCNN runs over the photos once per model load and module (fixtures); the tests reuse it.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import struct
import zlib
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage import data as skdata
from sklearn.datasets import load_sample_image
from test_pyfunc import use_store

from deepfake_detection.config import FacesParams, ModelsParams
from deepfake_detection.data.faces import NO_FACE, cut, detect_faces
from deepfake_detection.data.images import encode
from deepfake_detection.serving import export, predict, pyfunc
from deepfake_detection.serving import face_rows as serving_faces
from deepfake_detection.serving import io as serving_io

SIZE = 32
THRESHOLD = 0.5
SETTINGS = FacesParams(margin=0.1, min_confidence=0.9, min_face_size=20)  # not the defaults: they must travel
CANVAS = (360, 480)  # height, width
ONE = [(60, 200, 220)]  # (top, left, side) of each pasted portrait
TWO = [(20, 10, 200), (190, 300, 150)]  # largest first


def _canvas(placements) -> np.ndarray:
    canvas = np.full((*CANVAS, 3), 90, np.uint8)
    canvas[:, :, 2] = np.linspace(60, 200, CANVAS[1]).astype(np.uint8)  # a gradient, not a flat wall
    for top, left, side in placements:
        canvas[top : top + side, left : left + side] = np.asarray(
            Image.fromarray(skdata.astronaut()).resize((side, side))
        )
    return canvas


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _inside(box, placement) -> bool:
    x, y, w, h = box
    top, left, side = placement
    return left <= x and x + w <= left + side and top <= y and y + h <= top + side


def _tiny_model():
    from deepfake_detection.models.zoo import build_model

    model = build_model("light_se_cnn", SIZE, ModelsParams(), seed=0)
    last = model.get_layer("probability_fake")
    kernel, bias = last.get_weights()
    last.set_weights([kernel * 60.0, bias])  # outputs spread over (0, 1)
    return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Two detectors of the same Keras model, one with faces on (``SETTINGS``), one off; the photos."""
    root = tmp_path_factory.mktemp("faces")
    previous = mlflow.get_tracking_uri()
    use_store(root, "test-faces")
    keras_path = root / "light.keras"
    _tiny_model().save(keras_path)

    photos = root / "photos"
    photos.mkdir()
    Image.fromarray(_canvas(ONE)).save(photos / "a_one.jpg", quality=95)
    Image.fromarray(_canvas(TWO)).save(photos / "b_two.png")
    Image.fromarray(load_sample_image("china.jpg")).save(photos / "c_china.jpg", quality=90)
    (photos / "d_broken.jpg").write_bytes(b"definitely not an image")
    Image.new("RGB", (1, 1), (200, 10, 10)).save(photos / "e_dot.png")
    (photos / "f_huge.png").write_bytes(_png_declaring(9000, 9000))
    files = sorted(photos.iterdir())

    with mlflow.start_run():
        on = pyfunc.log_detector([keras_path], THRESHOLD, SIZE, faces=True, face_settings=SETTINGS)
        off = pyfunc.log_detector([keras_path], THRESHOLD, SIZE, name="plain")
    yield {"root": root, "on": on.model_uri, "off": off.model_uri, "files": files, "keras": keras_path}
    mlflow.set_tracking_uri(previous)


@pytest.fixture(autouse=True)
def _store_of_module(request):
    if "setup" in request.fixturenames:
        use_store(request.getfixturevalue("setup")["root"], "test-faces")


@pytest.fixture(scope="module")
def models(setup):
    return {k: mlflow.pyfunc.load_model(setup[k]) for k in ("on", "off")}


def _paths(files) -> pd.DataFrame:
    return pd.DataFrame({"path": [str(f) for f in files]})


@pytest.fixture(scope="module")
def face_rows(setup, models):
    """The faces-on detector on every photo plus a missing file (path rows, in process)."""
    with serving_io.local_files():
        return models["on"].predict(_paths([*setup["files"], setup["root"] / "missing.jpg"]))


def test_the_faces_flag_and_settings_round_trip_through_the_logged_model(setup, models):
    on, off = (mlflow.models.get_model_info(setup[k]) for k in ("on", "off"))
    assert on.metadata["faces"] is True and on.metadata["face_settings"] == SETTINGS.model_dump()
    assert off.metadata["faces"] is False and off.metadata["face_settings"] == FacesParams().model_dump()
    defaults = {k: {p.name: p.default for p in info.signature.params.params} for k, info in (("on", on), ("off", off))}
    assert defaults["on"]["faces"] is True and defaults["off"]["faces"] is False
    detector = models["on"].unwrap_python_model()
    assert detector.faces is True and serving_faces.face_settings(detector.face_settings) == SETTINGS
    assert models["off"].unwrap_python_model().faces is False


def test_one_row_per_face_with_boxes_inside_the_pasted_portraits(face_rows):
    rows = face_rows
    assert list(rows.columns) == list(serving_faces.FACE_OUTPUT_COLUMNS)
    one, two = rows[rows.input == 0], rows[rows.input == 1]
    assert one["face"].tolist() == [0] and two["face"].tolist() == [0, 1]
    for part, placements in ((one, ONE), (two, TWO)):
        for row, placement in zip(part.itertuples(), placements):  # largest first = the larger portrait
            assert _inside((row.face_x, row.face_y, row.face_w, row.face_h), placement), row
            assert row.face_confidence >= SETTINGS.min_confidence
            assert row.error is None and 0.0 <= row.probability_fake <= 1.0
            assert row.label == ("fake" if row.probability_fake >= THRESHOLD else "real")
            assert row.threshold == pytest.approx(THRESHOLD)


def test_a_photo_without_a_usable_face_gets_one_row_saying_why(face_rows):
    rows = face_rows.set_index("input")
    expected = {
        2: NO_FACE,  # china.jpg
        3: "not a decodable image: no image format recognises it",
        4: "image too small: 1x1 pixels",
        5: "image too large: 9000x9000",
        6: "file not found",
    }
    assert list(rows.index) == [0, 1, 1, *expected]  # one row each, nothing stops the batch
    for i, want in expected.items():
        row = rows.loc[i]
        assert row["error"].startswith(want), row["error"]
        assert math.isnan(row["probability_fake"]) and row["label"] is None and row["face"] is None
        assert row["face_x"] is None and math.isnan(row["face_confidence"])


def test_each_face_is_scored_as_its_crop_through_the_models_normal_path(setup, models, face_rows):
    """The crop the detector scores is data/faces.py's cut at the model's input size, read as
    PNG bytes through decode_resize: the plain detector on that PNG gives the same score."""
    rgb = np.asarray(Image.open(setup["files"][1]).convert("RGB"))
    found = detect_faces(rgb, SETTINGS)
    crops = [base64.b64encode(encode(cut(rgb, face, SIZE), "png")).decode() for face in found]
    plain = models["off"].predict(pd.DataFrame({"image": crops}))
    two = face_rows[face_rows.input == 1]
    assert [tuple(r) for r in two[["face_x", "face_y", "face_w", "face_h"]].to_numpy()] == [f.box for f in found]
    np.testing.assert_allclose(two["probability_fake"], plain["probability_fake"], atol=1e-6)


def test_the_request_param_overrides_the_models_flag(setup, models):
    files = [setup["files"][0], setup["files"][3]]  # a portrait, not an image
    with serving_io.local_files():
        off_by_param = models["on"].predict(_paths(files), params={"faces": False})
        plain = models["off"].predict(_paths(files))
        on_by_param = models["off"].predict(_paths(files), params={"faces": True})
    assert list(off_by_param.columns) == list(pyfunc.OUTPUT_COLUMNS)  # exactly today's rows
    pd.testing.assert_frame_equal(off_by_param, plain)
    assert list(on_by_param.columns) == list(serving_faces.FACE_OUTPUT_COLUMNS)
    assert on_by_param["input"].tolist() == [0, 1] and on_by_param["face"].tolist() == [0, None]
    assert _inside(tuple(on_by_param.iloc[0][["face_x", "face_y", "face_w", "face_h"]]), ONE[0])
    assert on_by_param["error"].iloc[1].startswith("not a decodable image")


def test_nothing_huge_or_undecodable_reaches_the_face_detector(setup, models, monkeypatch):
    seen = []
    real = serving_faces.decode_rgb
    monkeypatch.setattr(serving_faces, "decode_rgb", lambda data, **kw: seen.append(len(data)) or real(data, **kw))
    monkeypatch.setattr(serving_faces, "detect_faces", lambda rgb, settings: [])
    bad = setup["files"][3:]  # broken, 1 x 1, a header claiming 9000 x 9000
    with serving_io.local_files():
        rows = models["on"].predict(_paths(bad))
    assert seen == [] and rows["error"].notna().all() and len(rows) == 3


def test_predict_cli_faces_writes_the_box_columns_and_follows_the_models_flag(setup, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from deepfake_detection.cli import cli

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow.get_tracking_uri())
    monkeypatch.chdir(tmp_path)
    folder = setup["files"][0].parent
    runner = CliRunner()

    result = runner.invoke(cli, ["predict", "--model", setup["off"], "--faces", str(folder), "--output", "f.csv"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "f.csv")
    assert list(rows.columns) == ["path", *serving_faces.FACE_OUTPUT_COLUMNS]
    assert [Path(p).name for p in rows.path] == [f.name for f in setup["files"][:2] for _ in (0, 1)][1:] + [
        f.name for f in setup["files"][2:]
    ]
    assert rows["input"].tolist() == [0, 1, 1, 2, 3, 4, 5]
    assert rows["error"].iloc[3] == NO_FACE and rows["face_w"].iloc[:3].notna().all()
    assert "6 files: 3 faces scored" in result.stderr

    # the faces-on detector: faces by default, --no-faces for today's rows
    by_default = predict.predict_files(setup["on"], setup["files"][:3], progress=False, batch_size=2)
    assert by_default["input"].tolist() == [0, 1, 1, 2]  # batches of 2: input is the file's index
    assert by_default["path"].tolist() == [str(setup["files"][i]) for i in (0, 1, 1, 2)]
    result = runner.invoke(cli, ["predict", "--model", setup["on"], "--no-faces", str(folder), "--output", "p.json"])
    assert result.exit_code == 0, result.output
    plain = json.loads((tmp_path / "p.json").read_text())
    assert len(plain) == 6 and list(plain[0]) == ["path", *pyfunc.OUTPUT_COLUMNS]


def test_onnx_predict_faces_gives_the_keras_rows(setup, face_rows, tmp_path):
    onnx_path = export.export_model(setup["on"], "onnx", tmp_path / "model.onnx")
    sidecar = json.loads(export.onnx_sidecar(onnx_path).read_text())
    assert sidecar["faces"] is True and sidecar["face_settings"] == SETTINGS.model_dump()
    files = setup["files"][:4]
    rows = predict.predict_files(str(onnx_path), files, runtime="onnx", progress=False)
    keras_rows = face_rows[face_rows.input < 4].reset_index(drop=True)
    assert list(rows.columns) == ["path", *serving_faces.FACE_OUTPUT_COLUMNS]
    assert rows["error"].tolist() == keras_rows["error"].tolist()
    assert rows[["face_x", "face_y", "face_w", "face_h"]].equals(keras_rows[["face_x", "face_y", "face_w", "face_h"]])
    np.testing.assert_allclose(rows["probability_fake"], keras_rows["probability_fake"], atol=1e-4)
    plain = predict.predict_files(str(onnx_path), files, runtime="onnx", progress=False, faces=False)
    assert list(plain.columns) == ["path", *pyfunc.OUTPUT_COLUMNS] and len(plain) == 4


def test_explain_faces_draws_each_faces_heatmap_onto_the_whole_photo(setup, tmp_path, caplog, monkeypatch):
    from click.testing import CliRunner

    from deepfake_detection.cli import cli
    from deepfake_detection.explain import explain_files

    files = setup["files"]
    with caplog.at_level(logging.WARNING, logger="deepfake_detection"):
        written = explain_files(setup["on"], files, tmp_path / "cam")  # faces: the detector's flag
    assert [p.name for p in written] == ["a_one_gradcam.png", "b_two_gradcam.png"]
    skipped = {r.getMessage().split(": ", 1)[0].removeprefix("skipping "): r.getMessage() for r in caplog.records}
    assert set(skipped) == {str(f) for f in files[2:]}
    assert skipped[str(files[2])].endswith(NO_FACE)
    assert "image too large" in skipped[str(files[5])] and "image too small" in skipped[str(files[4])]

    photo = np.asarray(Image.open(files[1]).convert("RGB"))
    with Image.open(written[1]) as png:
        assert png.size == (CANVAS[1], CANVAS[0])
        out = np.asarray(png.convert("RGB"))
    faces = detect_faces(photo, SETTINGS)
    for face in faces:
        left, top, right, bottom = face.crop_box
        assert not np.array_equal(out[top:bottom, left:right], photo[top:bottom, left:right])
    np.testing.assert_array_equal(out[-20:, :40], photo[-20:, :40])  # far from every face: the photo itself

    # the CLI: --no-faces on the faces-on detector gives today's side-by-side figure
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow.get_tracking_uri())
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli, ["explain", "--model", setup["on"], "--no-faces", str(files[0]), "--out", str(tmp_path / "plain")]
    )
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "plain" / "a_one_gradcam.png") as png:
        assert png.size != (CANVAS[1], CANVAS[0]) and png.width > png.height
