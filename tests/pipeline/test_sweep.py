"""Sweeps as users run them: a grid of two queued DVC experiments (`dvc exp run --queue -S
'loss.alpha=0.25,0.5'`, `dvc queue start`, as in the README) in a tiny copy of the project.
Both must finish, both must log their runs to the MLflow
store of the project that queued them (not to the temporary copy DVC runs them in), tagged with
the experiment's name, and `dvc exp show` must show their metrics."""

from __future__ import annotations

import json
import time

import mlflow
import pytest
from test_end_to_end import copy_project, sh

pytestmark = pytest.mark.slow

ALPHAS = {"0.25", "0.5"}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    dest = copy_project(tmp_path_factory.mktemp("sweep"))
    sh("dvc", "exp", "run", "--queue", "-S", "loss.alpha=0.25,0.5", "evaluate@light_se_cnn", cwd=dest)
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


def _shown(dest) -> dict[str, dict]:
    """Experiment name -> its revision in `dvc exp show --json`."""
    shown = json.loads(sh("dvc", "exp", "show", "--json", cwd=dest).stdout)
    return {
        rev["name"]: rev
        for baseline in shown
        for exp in baseline.get("experiments") or []
        for rev in exp.get("revs") or []
        if rev.get("name")
    }


def test_both_queued_experiments_finish(swept):
    dest, status = swept
    lines = [ln for ln in status.splitlines()[1:] if ln.strip() and not ln.startswith("Worker")]
    assert len(lines) == 2 and all("Success" in ln for ln in lines), (
        status
        + "\n"
        + "\n".join(sh("dvc", "queue", "logs", ln.split()[0], cwd=dest, check=False).stdout[-3000:] for ln in lines)
    )


def test_dvc_exp_show_has_each_experiments_params_and_metrics(swept):
    dest, _ = swept
    revs = _shown(dest)
    assert len(revs) == 2, revs
    alphas = set()
    for name, rev in revs.items():
        alphas.add(str(rev["data"]["params"]["params.yaml"]["data"]["loss"]["alpha"]))
        data = rev["data"]["metrics"]["metrics/scores/light_se_cnn.json"]["data"]  # the compact metrics file
        assert 0.0 <= data["test_auc"] <= 1.0 and 0.0 <= data["val_auc"] <= 1.0, name
        assert data["test_auc_low"] <= data["test_auc"] <= data["test_auc_high"]
    assert alphas == ALPHAS


def test_every_run_of_the_sweep_lands_in_the_projects_store_grouped_by_experiment(swept):
    dest, _ = swept
    assert not list((dest / ".dvc" / "tmp").rglob("mlflow.db")), "a store was made in DVC's temporary copy"
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{dest / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("deepfake-detection").experiment_id])
    by_exp: dict[str, set] = {}
    for run in runs:
        assert run.info.status == "FINISHED", (run.info.run_name, run.info.status)
        if "dvc_exp" in run.data.tags:
            by_exp.setdefault(run.data.tags["dvc_exp"], set()).add(run.data.tags["stage"])
            assert run.data.tags["dvc_baseline"]
    assert set(by_exp) == set(_shown(dest)), "one dvc_exp tag per experiment, named as DVC names it"
    for name, stages in by_exp.items():
        assert {"train", "threshold", "evaluate"} <= stages, (name, stages)
    alphas = {
        r.data.params["loss.alpha"] for r in runs if r.data.tags.get("stage") == "train" and "dvc_exp" in r.data.tags
    }
    assert alphas == ALPHAS
