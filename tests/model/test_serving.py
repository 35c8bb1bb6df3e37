"""The registered detector behind the real ``mlflow models serve`` REST server (loopback only)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from loopback import free_port, stop, wait_for
from mlflow.tracking import MlflowClient
from PIL import Image

from deepfake_detection.serving import io as serving_io
from deepfake_detection.serving import pyfunc

MODEL_NAME = "deepfake-detector"
ALIAS = "champion"
SIZE = 32
PING_TIMEOUT_S = 90


def _post(url: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@contextlib.contextmanager
def _serving(model_uri: str, store_uri: str, workdir: Path, extra_env: dict[str, str] | None = None):
    """``mlflow models serve`` of ``model_uri`` on a free loopback port; yields its base URL."""
    with _server(model_uri, store_uri, workdir, extra_env) as (base, _):
        yield base


@contextlib.contextmanager
def _server(
    model_uri: str, store_uri: str, workdir: Path, extra_env: dict[str, str] | None = None, cli: str = "mlflow"
):
    """``mlflow models serve`` (``cli="mlflow"``) or ``deepfake-detect serve`` (``cli="project"``)
    of ``model_uri`` on a free loopback port; yields its base URL and the server's process."""
    port = free_port()
    bin_dir = Path(sys.executable).parent
    inherited = {k: v for k, v in os.environ.items() if k not in (serving_io.PATH_ROOT_ENV, serving_io.MAX_BYTES_ENV)}
    env = {
        **inherited,
        "MLFLOW_TRACKING_URI": store_uri,
        "MLFLOW_REGISTRY_URI": store_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        **(extra_env or {}),
    }
    log_path = workdir / f"server-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed in the finally
    if cli == "mlflow":
        argv = [str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local"]
        argv += ["-p", str(port), "-h", "127.0.0.1", "-w", "1"]
    else:  # one process: the CLI runs uvicorn itself
        argv = [str(bin_dir / "deepfake-detect"), "serve", "--model", model_uri, "--port", str(port)]
    proc = subprocess.Popen(argv, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/ping", proc, log_path, PING_TIMEOUT_S)
        yield base, proc
    finally:
        stop(proc)
        log.close()


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A tiny detector registered as deepfake-detector@champion in a throwaway store."""
    from deepfake_detection.config import ModelsParams
    from deepfake_detection.models.zoo import build_model

    root = tmp_path_factory.mktemp("serving")
    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient()
    mlflow.set_experiment(experiment_id=client.create_experiment("test-serving", (root / "mlartifacts").as_uri()))

    model = build_model("light_se_cnn", SIZE, ModelsParams(), seed=3)
    keras_path = root / "light.keras"
    model.save(keras_path)
    image_path = root / "face.jpg"
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8), "RGB").save(image_path, quality=90)
    with mlflow.start_run():
        info = pyfunc.log_detector(
            [keras_path], 0.42, SIZE, registered_model_name=MODEL_NAME, input_example_image=image_path
        )
    client.set_registered_model_alias(MODEL_NAME, ALIAS, info.registered_model_version)
    model_uri = f"models:/{MODEL_NAME}@{ALIAS}"
    try:
        yield {
            "image": image_path,
            "model": mlflow.pyfunc.load_model(model_uri),
            "root": root,
            "uri": uri,
            "model_uri": model_uri,
        }
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def served(registered):
    """The registered detector served by ``mlflow models serve``."""
    with _serving(registered["model_uri"], registered["uri"], registered["root"]) as base:
        yield {**registered, "base": base}


def test_served_champion_scores_a_base64_image_like_the_in_process_model(served):
    encoded = base64.b64encode(served["image"].read_bytes()).decode("ascii")
    body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[encoded]]}}).encode()
    status, text = _post(f"{served['base']}/invocations", body)
    assert status == 200, text
    (row,) = json.loads(text)["predictions"]
    with serving_io.local_files():
        expected = served["model"].predict(pd.DataFrame({"path": [str(served["image"])]})).iloc[0]
    assert row["probability_fake"] == pytest.approx(expected["probability_fake"], abs=1e-6)
    assert row["label"] == expected["label"] and row["threshold"] == pytest.approx(0.42)
    assert row["error"] is None and row["warning"] is None


def test_served_model_reports_a_bad_image_per_row(served):
    encoded = base64.b64encode(served["image"].read_bytes()).decode("ascii")
    garbage = base64.b64encode(b"definitely not an image").decode("ascii")
    body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[encoded], [garbage]]}}).encode()
    status, text = _post(f"{served['base']}/invocations", body)
    assert status == 200, text
    good, bad = json.loads(text)["predictions"]
    assert good["error"] is None and good["label"] in ("real", "fake")
    assert bad["error"].startswith("not a decodable image") and bad["label"] is None


def test_served_model_answers_garbage_with_a_4xx_and_a_message(served):
    status, text = _post(f"{served['base']}/invocations", b"{not json")
    assert 400 <= status < 500, (status, text)
    assert "message" in json.loads(text)

    body = json.dumps({"dataframe_split": {"columns": ["file"], "data": [["x.jpg"]]}}).encode()
    status, text = _post(f"{served['base']}/invocations", body)
    assert 400 <= status < 500, (status, text)
    message = json.loads(text)["message"]
    assert "'path' column" in message and "'image' column" in message


def test_served_model_refuses_out_of_range_params_with_a_4xx_that_names_them(served):
    """A threshold of 5 once labelled every row real, a batch_size of 0 failed deep inside Keras."""
    encoded = _b64(served["image"].read_bytes())
    for params, name in (
        ({"threshold": 1.5}, "'threshold'"),
        ({"threshold": -0.1}, "'threshold'"),
        ({"batch_size": 0}, "'batch_size'"),
        ({"batch_size": 10**6}, "'batch_size'"),
    ):
        payload = {"dataframe_split": {"columns": ["image"], "data": [[encoded]]}, "params": params}
        status, text = _post(f"{served['base']}/invocations", json.dumps(payload).encode())
        assert 400 <= status < 500, (params, status, text)
        assert name in json.loads(text)["message"], text
    (row,) = _invoke(served["base"], "image", [encoded], {"threshold": 0.0, "batch_size": 1})
    assert row["label"] == "fake" and row["threshold"] == 0.0


# --------------------------------------------------------------------------- hardening


def _invoke(base: str, column: str, values: list, params: dict | None = None) -> list[dict]:
    payload = {"dataframe_split": {"columns": [column], "data": [[v] for v in values]}}
    if params:
        payload["params"] = params
    status, text = _post(f"{base}/invocations", json.dumps(payload).encode())
    assert status == 200, text
    rows = json.loads(text)["predictions"]
    assert len(rows) == len(values)
    return rows


def _unscored(row: dict) -> bool:
    p = row["probability_fake"]
    return row["label"] is None and (p is None or p != p)  # null or NaN


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    w, h = size
    Image.fromarray(np.tile(np.linspace(0, 255, w, dtype=np.uint8)[None, :, None], (h, 1, 3)), "RGB").save(
        buffer, "PNG"
    )
    return buffer.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims ``width x height`` (8-bit RGB) with almost no data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def test_served_model_reads_no_file_by_default(served):
    """A REST client once sent /dev/zero: the server's memory grew until it was killed."""
    paths = ["/dev/zero", "/etc/hostname", "/etc/passwd", str(served["image"]), "/no/such/file", "../../etc/passwd"]
    start = time.monotonic()
    for params in (None, {"threshold": 0.5, "batch_size": 1}):  # request params cannot switch paths on
        rows = _invoke(served["base"], "path", paths, params)
        assert [r["error"] for r in rows] == [serving_io.PATHS_DISABLED] * len(paths)
        assert all(_unscored(r) for r in rows)
    assert time.monotonic() - start < 30
    (row,) = _invoke(served["base"], "image", [_b64(served["image"].read_bytes())])  # still serving
    assert row["error"] is None and row["label"] in ("real", "fake")


def test_served_model_checks_pixels_before_decoding_and_flags_odd_sizes(served):
    images = [
        _png_declaring(18000, 18000),
        _png_declaring(9000, 9000),
        _png((1, 1)),
        _png((30, 8000)),
        served["image"].read_bytes(),
    ]
    start = time.monotonic()
    rows = _invoke(served["base"], "image", [_b64(x) for x in images])
    assert time.monotonic() - start < 30
    assert rows[0]["error"].startswith("image too large") and rows[1]["error"].startswith("image too large: 9000x9000")
    assert rows[2]["error"] == "image too small: 1x1 pixels, at least 8 a side needed"
    assert all(_unscored(r) for r in rows[:3])
    assert rows[3]["error"] is None and rows[3]["label"] in ("real", "fake")
    assert "elongated image (30x8000 pixels" in rows[3]["warning"]
    assert rows[4]["error"] is None and rows[4]["warning"] is None


@pytest.fixture(scope="module")
def served_folder(served):
    """The same champion served with paths allowed inside one folder and a 1 MB cap."""
    share = served["root"] / "share"
    allowed, outside = share / "allowed", share / "outside"
    (allowed / "sub").mkdir(parents=True)
    outside.mkdir()
    face = served["image"].read_bytes()
    for path in (allowed / "face.jpg", allowed / "sub" / "face.jpg", outside / "secret.jpg"):
        path.write_bytes(face)
    (allowed / "escape.jpg").symlink_to(outside / "secret.jpg")
    (allowed / "zero.jpg").symlink_to("/dev/zero")
    (allowed / "dir_link").symlink_to(outside)
    os.mkfifo(allowed / "fifo.jpg")
    with open(allowed / "big.jpg", "wb") as f:  # a real JPEG start, then 2 MB (sparse)
        f.write(face)
        f.truncate(2_000_000)
    env = {serving_io.PATH_ROOT_ENV: str(allowed), serving_io.MAX_BYTES_ENV: "1000000"}
    with _serving(served["model_uri"], served["uri"], share, env) as base:
        yield {"base": base, "allowed": allowed, "outside": outside}


def test_a_path_opt_in_server_reads_only_regular_files_inside_its_folder(served, served_folder):
    allowed, outside = served_folder["allowed"], served_folder["outside"]
    inside = ["face.jpg", str(allowed / "face.jpg"), "sub/../sub/face.jpg", "./sub/face.jpg"]
    escapes = [
        "/dev/zero",
        "/etc/hostname",
        "/etc/passwd",
        "/no/such/file",
        "../outside/secret.jpg",
        str(outside / "secret.jpg"),
        "../outside/missing.jpg",
        "sub/../../outside/secret.jpg",
        "../../../../../../../etc/passwd",
        "escape.jpg",
        "zero.jpg",
        "dir_link/secret.jpg",
        "/",
    ]
    special = {
        "fifo.jpg": "not a regular file",
        "sub": "is a directory",
        "big.jpg": "file too large: 2,000,000 bytes > the limit of 1,000,000",
        "missing.jpg": "file not found: missing.jpg",
    }
    start = time.monotonic()
    rows = _invoke(served_folder["base"], "path", inside + escapes + list(special))
    assert time.monotonic() - start < 30
    with serving_io.local_files():
        expected = served["model"].predict(pd.DataFrame({"path": [str(served["image"])]}))["probability_fake"][0]
    for row in rows[: len(inside)]:
        assert row["error"] is None and row["probability_fake"] == pytest.approx(expected, abs=1e-6)
    # one message for every escape, whether its target exists or not: no probing of the server's files
    assert [r["error"] for r in rows[len(inside) : len(inside) + len(escapes)]] == [serving_io.OUTSIDE_ROOT] * len(
        escapes
    )
    for row, want in zip(rows[len(inside) + len(escapes) :], special.values()):
        assert row["error"].startswith(want) and _unscored(row)


def test_served_model_scores_every_face_when_the_request_asks(served):
    """The ``faces`` request param on the served champion (logged with faces off): one row per
    face with its box, one row saying why for a photo without a face and for each bad input."""
    from skimage import data as skdata
    from sklearn.datasets import load_sample_image

    from deepfake_detection.data.faces import NO_FACE
    from deepfake_detection.serving.face_rows import FACE_OUTPUT_COLUMNS

    canvas = np.full((360, 480, 3), 90, np.uint8)
    for top, left, side in ((20, 10, 200), (190, 300, 150)):
        canvas[top : top + side, left : left + side] = np.asarray(
            Image.fromarray(skdata.astronaut()).resize((side, side))
        )
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, "PNG")
    china = io.BytesIO()
    Image.fromarray(load_sample_image("china.jpg")).save(china, "JPEG", quality=90)
    images = [buffer.getvalue(), china.getvalue(), b"not an image", _png((1, 1)), _png_declaring(9000, 9000)]
    payload = {
        "dataframe_split": {"columns": ["image"], "data": [[_b64(x)] for x in images]},
        "params": {"faces": True},
    }
    status, text = _post(f"{served['base']}/invocations", json.dumps(payload).encode())
    assert status == 200, text
    rows = json.loads(text)["predictions"]
    assert list(rows[0]) == list(FACE_OUTPUT_COLUMNS)
    assert [(r["input"], r["face"]) for r in rows] == [(0, 0), (0, 1), (1, None), (2, None), (3, None), (4, None)]
    for row, (top, left, side) in zip(rows[:2], ((20, 10, 200), (190, 300, 150))):
        assert left <= row["face_x"] and row["face_x"] + row["face_w"] <= left + side
        assert top <= row["face_y"] and row["face_y"] + row["face_h"] <= top + side
        assert row["error"] is None and row["label"] in ("real", "fake")
    errors = [r["error"] for r in rows[2:]]
    assert errors[0] == NO_FACE and errors[1].startswith("not a decodable image")
    assert errors[2].startswith("image too small: 1x1") and errors[3].startswith("image too large: 9000x9000")
    assert all(_unscored(r) for r in rows[2:])
    expected = served["model"].predict(pd.DataFrame({"image": [_b64(images[0])]}), params={"faces": True})
    np.testing.assert_allclose([r["probability_fake"] for r in rows[:2]], expected["probability_fake"], atol=1e-6)

    # without the param the same champion answers one row per image, as before
    plain = _invoke(served["base"], "image", [_b64(images[0])])
    assert list(plain[0]) == list(pyfunc.OUTPUT_COLUMNS)
