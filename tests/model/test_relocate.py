"""A project moved with its store: ``deepfake-detect relocate-store`` points the store's absolute
artifact paths at the new folder (a real SQLite store, a real folder move)."""

from __future__ import annotations

import shutil

import mlflow
import pandas as pd
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from deepfake_detection.cli import cli


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def test_a_moved_project_finds_its_runs_and_models_after_relocate_store(tmp_path, monkeypatch):
    old, new = tmp_path / "old" / "project", tmp_path / "new" / "project"
    old.mkdir(parents=True)
    uri = f"sqlite:///{old / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment(experiment_id=client.create_experiment("moved", (old / "mlartifacts").as_uri()))
    (old / "note.txt").write_text("kept")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(old / "note.txt"))
        mlflow.pyfunc.log_model(name="model", python_model=Echo(), registered_model_name="det", pip_requirements=[])
    shutil.move(old, new)

    uri = f"sqlite:///{new / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    assert MlflowClient().get_run(run.info.run_id).info.artifact_uri.startswith(old.as_uri())  # the old folder

    monkeypatch.chdir(new)
    result = CliRunner().invoke(cli, ["relocate-store", str(old)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("4 artifact location(s) moved")  # experiment, run, logged model, version
    assert MlflowClient().get_run(run.info.run_id).info.artifact_uri.startswith(new.as_uri() + "/")
    note = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="note.txt", dst_path=str(tmp_path))
    assert open(note).read() == "kept"
    frame = pd.DataFrame({"x": [1]})
    assert mlflow.pyfunc.load_model("models:/det/1").predict(frame).equals(frame)

    result = CliRunner().invoke(cli, ["relocate-store", str(old)])  # again: nothing left to move
    assert result.output.startswith("0 artifact location(s) moved")
