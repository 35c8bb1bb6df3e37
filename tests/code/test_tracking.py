"""Where runs land (tracking.use_store): the project's SQLite store, DVC's workspace root for a
queued experiment, and a new store created once even when several processes start at once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow

from deepfake_detection import tracking

ROOT = Path(__file__).resolve().parents[2]

# Each child imports MLflow, says so, waits for the word to start, then opens (and so creates) the
# same new store and logs one run: without the lock in use_store, MLflow's migrations race and the
# store breaks.
CHILD = """
import sys
from pathlib import Path
root, name = Path(sys.argv[1]), sys.argv[2]
from deepfake_detection import tracking
import mlflow
print("ready", flush=True)
sys.stdin.readline()
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
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), f"run{i}"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    for c in children:  # every child has imported MLflow (a child that died says why)
        assert c.stdout.readline().strip() == "ready", c.communicate(timeout=60)[1][-3000:]
    for c in children:  # then all start at once
        c.stdin.write("go\n")
        c.stdin.close()
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


def test_a_new_experiment_opens_in_the_model_training_view(in_tmp, monkeypatch):
    monkeypatch.delenv("DVC_ROOT", raising=False)
    url = tracking.experiment_url("http://127.0.0.1:5000/", "views")
    exp = mlflow.MlflowClient().get_experiment_by_name("views")
    # MLflow 3.17's UI: the view comes from ?workflowType= (default: GenAI); older UIs read the tag
    assert url == f"http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    mlflow.MlflowClient().delete_experiment_tag(exp.experiment_id, "mlflow.experimentKind")
    tracking.setup("views")  # a store made before the tag existed gets it
    tags = mlflow.MlflowClient().get_experiment(exp.experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"


def test_stage_runs_log_the_splits_they_read_as_datasets(in_tmp, monkeypatch):
    from deepfake_detection.config import load_params

    monkeypatch.delenv("DVC_ROOT", raising=False)
    (in_tmp / "data.dvc").write_text("outs:\n- md5: 0123abcd4567.dir\n  path: data\n")
    (in_tmp / "artifacts").mkdir()
    rows = [
        f"data/{s}/{lb}/{i}.jpg,{lb},{s},m{i},48,48,"
        for s in ("train", "valid", "test")
        for lb in ("real", "fake")
        for i in range(2 if s == "train" else 1)
    ]
    header = "path,label,split,md5,width,height,subgroup\n"
    (in_tmp / "artifacts" / "manifest.csv").write_text(header + "\n".join(rows) + "\n")
    params = load_params(ROOT / "params.yaml")
    with tracking.stage_run("threshold", params, model="m") as run:
        pass
    inputs = mlflow.MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    dataset, (context,) = inputs[0].dataset, inputs[0].tags
    assert dataset.name == f"{params.data.dir}@0123abcd" and context.value == "valid"
    assert '"num_rows": 2' in dataset.profile and str(in_tmp.resolve() / params.data.dir) in dataset.source
    with tracking.stage_run("train", params, model="m") as run:
        pass
    inputs = mlflow.MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs
    contexts = {i.tags[0].value: i.dataset for i in inputs}
    assert set(contexts) == {"train", "valid"} and '"num_rows": 4' in contexts["train"].profile


def test_make_ui_prints_the_runs_page_of_the_experiment(tmp_path):
    """`make ui` first prints the URL of the experiment's runs (model-training view), then serves."""
    recipe = subprocess.run(
        ["make", "-n", "ui", "UI_PORT=5999"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5999" in recipe
    python = recipe[recipe.index(".venv/bin/python -c") : recipe.index("\n.venv/bin/mlflow")]
    env = {**os.environ, "DVC_ROOT": str(tmp_path)}  # the store of this test, not the project's
    env.pop("MLFLOW_TRACKING_URI", None)
    out = subprocess.run(["bash", "-c", python], cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "Open the runs: http://127.0.0.1:5999/#/experiments/1/runs?workflowType=machine_learning"


def test_the_stages_of_one_dvc_process_share_a_pipeline_run_id(tmp_path, monkeypatch):
    """DVC runs each stage as its own process through a shell: every stage started by one `dvc`
    process gets that process's id (start time and pid), a stage outside DVC none."""
    import stat
    import sys

    monkeypatch.delenv("DEEPFAKE_PIPELINE_RUN", raising=False)
    stage = f"{sys.executable} -c 'from deepfake_detection.lineage import pipeline_run; print(pipeline_run())'"
    dvc = tmp_path / "dvc"  # stands for the dvc executable: a process named dvc that runs two stages
    dvc.write_text(f'#!/bin/sh\nsh -c "{stage}"\nsh -c "{stage}"\n')
    dvc.chmod(dvc.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    first, second = subprocess.run([str(dvc)], capture_output=True, text=True, env=env, check=True).stdout.split()
    assert first == second and re.fullmatch(r"\d{8}-\d{6}-\d+", first), first
    again = subprocess.run([str(dvc)], capture_output=True, text=True, env=env, check=True).stdout.split()[0]
    assert again != first  # another dvc process, another pipeline run
    alone = subprocess.run(["sh", "-c", stage], capture_output=True, text=True, env=env, check=True).stdout
    assert alone.strip() == "None"
    monkeypatch.setenv("DEEPFAKE_PIPELINE_RUN", "nightly-42")
    assert tracking.run_tags("train", "light_se_cnn")["pipeline_run"] == "nightly-42"
