"""Sweeps as users run them: two queued DVC experiments (`dvc exp run --queue`, `dvc queue
start`) in a tiny copy of the project. Both must finish, both must log their runs to the MLflow
store of the project that queued them (not to the temporary copy DVC runs them in), tagged with
the experiment's name, and `dvc exp show` must show their metrics."""

from __future__ import annotations

import json
import time

import mlflow
import pytest

from test_end_to_end import copy_project, sh

pytestmark = pytest.mark.slow

EXPERIMENTS = {"sweep-a": "loss.alpha=0.25", "sweep-b": "loss.alpha=0.5"}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    dest = copy_project(tmp_path_factory.mktemp("sweep"))
    for name, setting in EXPERIMENTS.items():
        sh("dvc", "exp", "run", "--queue", "-n", name, "-S", setting, "evaluate@light_se_cnn", cwd=dest)
    sh("dvc", "queue", "start", "-j", "1", cwd=dest)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = sh("dvc", "queue", "status", cwd=dest).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    else:
        raise AssertionError(f"the queue did not finish in 15 minutes:\n{status}")
    return dest, status


def test_both_queued_experiments_finish(swept):
    dest, status = swept
    for name in EXPERIMENTS:
        line = next((ln for ln in status.splitlines() if name in ln), "")
        assert "Success" in line, f"{name} did not succeed:\n{status}\n" + \
            sh("dvc", "queue", "logs", name, cwd=dest, check=False).stdout[-3000:]


def test_dvc_exp_show_has_each_experiments_metrics(swept):
    dest, _ = swept
    shown = json.loads(sh("dvc", "exp", "show", "--json", cwd=dest).stdout)
    found = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                if rev.get("name") in EXPERIMENTS:
                    metrics = rev["data"]["metrics"]
                    found[rev["name"]] = metrics["metrics/evaluate/light_se_cnn.json"]["data"]
    assert set(found) == set(EXPERIMENTS), shown
    for name, data in found.items():
        assert 0.0 <= data["test"]["tuned"]["auc"] <= 1.0, name
        assert data["test_auc_ci95"]["low"] <= data["test"]["tuned"]["auc"] <= data["test_auc_ci95"]["high"]


def test_every_run_of_the_sweep_lands_in_the_projects_store_grouped_by_experiment(swept):
    dest, _ = swept
    assert not list((dest / ".dvc" / "tmp").rglob("mlflow.db")), "a store was made in DVC's temporary copy"
    uri = f"sqlite:///{dest / 'mlflow.db'}"
    runs = mlflow.MlflowClient(tracking_uri=uri).search_runs(
        [mlflow.MlflowClient(tracking_uri=uri).get_experiment_by_name("deepfake-detection").experiment_id])
    by_exp: dict[str, set] = {}
    for run in runs:
        assert run.info.status == "FINISHED", (run.info.run_name, run.info.status)
        if "dvc_exp" in run.data.tags:
            by_exp.setdefault(run.data.tags["dvc_exp"], set()).add(run.data.tags["stage"])
            assert run.data.tags["dvc_baseline"]
    assert set(by_exp) == set(EXPERIMENTS)
    for name, stages in by_exp.items():
        assert {"train", "threshold", "evaluate"} <= stages, (name, stages)
    alphas = {r.data.tags["dvc_exp"]: r.data.params["loss.alpha"] for r in runs
              if r.data.tags.get("stage") == "train" and "dvc_exp" in r.data.tags}
    assert alphas == {"sweep-a": "0.25", "sweep-b": "0.5"}
