"""`deepfake-detect mlflow-server`: the command line it starts (the real server on PostgreSQL runs in
tests/pipeline/test_team.py)."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from deepfake_detection import tracking, tracking_server
from deepfake_detection.cli import cli


def test_the_server_keeps_runs_in_the_database_and_serves_artifacts_on_loopback(tmp_path):
    cmd = tracking_server.server_command("postgresql://mlflow@db:5432/mlflow", str(tmp_path / "art"))
    assert cmd[1:4] == ["-m", "mlflow", "server"]
    # SQLAlchemy 2.1 picks psycopg 3 for postgresql://: the installed driver is named
    assert cmd[cmd.index("--backend-store-uri") + 1] == "postgresql+psycopg2://mlflow@db:5432/mlflow"
    assert "--serve-artifacts" in cmd and cmd[cmd.index("--default-artifact-root") + 1] == "mlflow-artifacts:/"
    assert cmd[cmd.index("--artifacts-destination") + 1] == str(tmp_path / "art")
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "5000"
    assert not (tmp_path / "art").exists(), "building the command line creates nothing"


def test_relative_artifact_folders_become_absolute_and_uris_stay(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert tracking_server.artifacts_location("art") == str(tmp_path / "art")
    assert tracking_server.artifacts_location("s3://bucket/mlflow") == "s3://bucket/mlflow"


@pytest.mark.parametrize("uri", ["file:///srv/mlruns", "/srv/mlruns", "http://other:5000"])
def test_a_store_that_is_not_a_database_is_refused(uri):
    with pytest.raises(ValueError, match="not a database URI"):
        tracking_server.check_backend(uri)


def test_passwords_are_masked_when_shown():
    assert (
        tracking_server.redact("postgresql://mlflow:s3cret@db:5432/mlflow") == "postgresql://mlflow:***@db:5432/mlflow"
    )
    assert tracking_server.redact("postgresql://mlflow@db/mlflow") == "postgresql://mlflow@db/mlflow"


def test_cli_dry_run_reads_the_environment_and_prints_the_masked_command(tmp_path):
    env = {
        "MLFLOW_BACKEND_STORE_URI": "postgresql://mlflow:s3cret@db:5432/mlflow",
        "MLFLOW_ARTIFACTS_DESTINATION": str(tmp_path / "art"),
    }
    result = CliRunner().invoke(
        cli, ["mlflow-server", "--port", "5055", "--allowed-hosts", "mlflow.internal:5055", "--dry-run"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output and "postgresql+psycopg2://mlflow:***@db:5432/mlflow" in result.output
    assert "--port 5055" in result.output and "--allowed-hosts mlflow.internal:5055" in result.output
    assert "--host 127.0.0.1" in result.output


def test_cli_without_a_store_says_which_option_is_missing():
    result = CliRunner().invoke(cli, ["mlflow-server", "--dry-run"], env={"MLFLOW_BACKEND_STORE_URI": None})
    assert result.exit_code != 0 and "--backend-store-uri" in result.output


def test_the_server_environment_turns_telemetry_and_the_job_runner_off():
    env = tracking_server.server_env({"PATH": "/bin"})
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true" and env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert (
        tracking_server.server_env({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"})["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"]
        == "true"
    )


def test_an_http_tracking_uri_overrides_the_projects_sqlite_store(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri(tmp_path) == f"sqlite:///{Path(tmp_path).resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri(tmp_path) == "http://127.0.0.1:5000"


def test_clients_are_told_the_url_to_use():
    assert tracking_server.client_uri("127.0.0.1", 5000) == "http://127.0.0.1:5000"
    assert tracking_server.client_uri("::1", 5000) == "http://[::1]:5000"
    assert tracking_server.client_uri("0.0.0.0", 5000).startswith(
        "http://"
    ) and "0.0.0.0" not in tracking_server.client_uri("0.0.0.0", 1)


def test_a_missing_postgresql_driver_is_named():
    assert tracking_server.check_backend("postgresql+psycopg2://m@db/m") == "postgresql+psycopg2://m@db/m"
    with pytest.raises(ValueError, match="'nosuchdriver' is not installed"):
        tracking_server.check_backend("postgresql+nosuchdriver://m@db/m")


def test_cli_passes_what_follows_the_double_dash_to_mlflow_server(tmp_path):
    args = ["mlflow-server", "--backend-store-uri", "postgresql://m@db/m", "--artifacts-destination", str(tmp_path)]
    result = CliRunner().invoke(cli, [*args, "--dry-run", "--", "--app-name", "basic-auth"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].endswith("--port 5000 --app-name basic-auth")


def test_a_teammate_creating_the_experiment_first_is_no_error(in_tmp, monkeypatch):
    """Two stages on a shared server both find no experiment and both create it: the second's
    RESOURCE_ALREADY_EXISTS is answered by using the first's."""
    from mlflow import MlflowClient

    first = tracking.setup("shared")  # the teammate's
    real = MlflowClient.get_experiment_by_name
    calls = []

    def not_yet(self, name):  # our first look happened before the teammate created it
        calls.append(name)
        return None if len(calls) == 1 else real(self, name)

    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", not_yet)
    assert tracking.setup("shared") == first
    assert len(calls) >= 2
