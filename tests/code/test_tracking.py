"""Where runs land (tracking.use_store): the project's SQLite store, DVC's workspace root for a
queued experiment, and a new store created once even when several processes start at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from deepfake_detection import tracking

# Each child waits for a common start time, then opens (and so creates) the same new store and
# logs one run: without the lock in use_store, MLflow's migrations race and the store breaks.
CHILD = """
import sys, time
from pathlib import Path
start, root, name = float(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
from deepfake_detection import tracking
import mlflow
while time.time() < start:
    time.sleep(0.001)
tracking.use_store(root)
exp = mlflow.MlflowClient().get_experiment_by_name("race")
exp_id = exp.experiment_id if exp else None
if exp_id is None:
    try:
        exp_id = mlflow.MlflowClient().create_experiment("race")
    except mlflow.exceptions.MlflowException:
        exp_id = mlflow.MlflowClient().get_experiment_by_name("race").experiment_id
with mlflow.start_run(experiment_id=exp_id, run_name=name):
    mlflow.log_metric("x", 1.0)
"""


def test_parallel_first_runs_create_one_working_store(tmp_path):
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("DVC_ROOT", None)
    start = time.time() + 12  # after every child has imported MLflow
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(start), str(tmp_path), f"run{i}"],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for i in range(4)]
    outcomes = [(c.wait(timeout=300), c.stderr.read()) for c in children]
    for code, err in outcomes:
        assert code == 0, err[-3000:]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("race").experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"run{i}" for i in range(4)]


def test_store_resolves_to_dvc_root_then_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    project = tmp_path / "project"
    monkeypatch.setenv("DVC_ROOT", str(project))  # what DVC sets for a queued experiment
    assert tracking.tracking_uri() == f"sqlite:///{project.resolve() / 'mlflow.db'}"
    assert tracking.project_root() == project.resolve()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri() == "http://127.0.0.1:5000"


def test_runs_under_dvc_exp_carry_the_experiment_name(monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "sweep-lr-1")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "abc123")
    tags = tracking.run_tags("train", "light_se_cnn")
    assert tags["dvc_exp"] == "sweep-lr-1" and tags["dvc_baseline"] == "abc123"
    monkeypatch.delenv("DVC_EXP_NAME")
    monkeypatch.delenv("DVC_EXP_BASELINE_REV")
    assert "dvc_exp" not in tracking.run_tags("train", "light_se_cnn")
