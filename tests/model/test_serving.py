"""The registered detector behind the real ``mlflow models serve`` REST server (loopback only)."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
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
from mlflow.tracking import MlflowClient
from PIL import Image

from deepfake_detection import inference

MODEL_NAME = "deepfake-detector"
ALIAS = "champion"
SIZE = 32
PING_TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (the CLI, its shell and uvicorn), then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny detector registered as deepfake-detector@champion in a throwaway store, served."""
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
        info = inference.log_detector([keras_path], 0.42, SIZE, registered_model_name=MODEL_NAME,
                                      input_example_image=image_path)
    client.set_registered_model_alias(MODEL_NAME, ALIAS, info.registered_model_version)
    model_uri = f"models:/{MODEL_NAME}@{ALIAS}"
    in_process = mlflow.pyfunc.load_model(model_uri)

    port = _free_port()
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_REGISTRY_URI": uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed in the teardown
    proc = subprocess.Popen(
        [str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
         "-p", str(port), "-h", "127.0.0.1", "-w", "1"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + PING_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited ({proc.returncode}):\n{(root / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no /ping after {PING_TIMEOUT_S} s:\n{(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"base": base, "image": image_path, "model": in_process, "root": root}
    finally:
        _stop(proc)
        log.close()
        mlflow.set_tracking_uri(previous)


def test_served_champion_scores_a_base64_image_like_the_in_process_model(served):
    encoded = base64.b64encode(served["image"].read_bytes()).decode("ascii")
    body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[encoded]]}}).encode()
    status, text = _post(f"{served['base']}/invocations", body)
    assert status == 200, text
    (row,) = json.loads(text)["predictions"]
    expected = served["model"].predict(pd.DataFrame({"path": [str(served["image"])]})).iloc[0]
    assert row["probability_fake"] == pytest.approx(expected["probability_fake"], abs=1e-6)
    assert row["label"] == expected["label"] and row["threshold"] == pytest.approx(0.42)
    assert row["error"] is None


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
