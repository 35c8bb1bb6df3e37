"""What the tests that start a real server share: a tiny detector registered in a throwaway
SQLite store, a free loopback port, waiting for a server to answer and stopping it.
Importable from every test folder: pytest puts tests/ on the path for its conftest.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

MODEL_NAME = "deepfake-detector"
ALIAS = "champion"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, log_path: Path, timeout_s: float) -> None:
    """Until ``url`` answers 200; fails the test with the server's log if it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the server exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"no answer from {url} after {timeout_s} s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
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


def register_tiny_detector(
    root: Path,
    threshold: float,
    *,
    size: int = 32,
    input_example: Path | None = None,
    tags: dict | None = None,
    description: str | None = None,
) -> tuple[str, str]:
    """A light CNN of ``size`` px (random weights, seed 3) logged by ``log_detector`` with
    ``threshold``, registered as ``deepfake-detector@champion`` (with the version ``tags`` and
    ``description`` given) in a SQLite store inside ``root``, made the current store. Returns
    the store's URI and the model's ``models:/`` URI."""
    from deepfake_detection.config import ModelsParams
    from deepfake_detection.models.zoo import build_model
    from deepfake_detection.serving import pyfunc

    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient()
    mlflow.set_experiment(experiment_id=client.create_experiment("test-serving", (root / "mlartifacts").as_uri()))
    keras_path = root / "light.keras"
    build_model("light_se_cnn", size, ModelsParams(), seed=3).save(keras_path)
    with mlflow.start_run():
        info = pyfunc.log_detector(
            [keras_path], threshold, size, registered_model_name=MODEL_NAME, input_example_image=input_example
        )
    version = str(info.registered_model_version)
    for key, value in (tags or {}).items():
        client.set_model_version_tag(MODEL_NAME, version, key, str(value))
    if description:
        client.update_model_version(MODEL_NAME, version, description=description)
    client.set_registered_model_alias(MODEL_NAME, ALIAS, version)
    return uri, f"models:/{MODEL_NAME}@{ALIAS}"
