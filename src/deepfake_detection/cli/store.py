"""Commands around the MLflow store: `runs clean`, `relocate-store` and `mlflow-server`."""

from __future__ import annotations

from pathlib import Path

import click

from .. import tracking_server
from ..relocate import relocate_store as relocate
from .options import params_of, params_option


@click.group()
def runs():
    """Housekeeping of the project's MLflow runs."""


@runs.command("clean")
@params_option
def runs_clean(params_path):
    """Mark FAILED the runs of the experiment (mlflow.experiment) that a process of this machine
    left RUNNING when it was killed outright (SIGKILL, a crash), with a failed_reason tag. The next
    stage of the same model does it too; runs of other machines are left alone."""
    from .. import tracking  # MLflow: only when the command runs

    p = params_of(params_path)
    closed = tracking.close_stale_runs(tracking.setup(p.mlflow.experiment), "deepfake-detect runs clean")
    click.echo(f"{len(closed)} run(s) marked FAILED" + (f": {', '.join(closed)}" if closed else ""))


@click.command("relocate-store")
@click.argument("old_folder", type=click.Path(file_okay=False, path_type=Path))
def relocate_store(old_folder):
    """After moving or copying a project from OLD_FOLDER to here (the current folder), point its
    MLflow store (mlflow.db) at the artifacts here (mlartifacts/): the store records absolute
    paths, which still name OLD_FOLDER."""
    try:
        changed = relocate(Path("mlflow.db"), old_folder, Path.cwd())
    except FileNotFoundError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{changed} artifact location(s) moved from {Path(old_folder).absolute()} to {Path.cwd()}")


@click.command("mlflow-server", context_settings={"ignore_unknown_options": True})
@click.option(
    "--backend-store-uri",
    envvar="MLFLOW_BACKEND_STORE_URI",
    required=True,
    help="The database of runs and registry: postgresql://USER@HOST:5432/DB (password in PGPASSWORD "
    "or ~/.pgpass) [env: MLFLOW_BACKEND_STORE_URI].",
)
@click.option(
    "--artifacts-destination",
    envvar="MLFLOW_ARTIFACTS_DESTINATION",
    required=True,
    help="Where the server keeps artifacts: a folder on this machine, or s3://..., gs://... "
    "(the server's credentials; clients need none) [env: MLFLOW_ARTIFACTS_DESTINATION].",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (0.0.0.0: every one).")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Server worker processes [MLflow's: 4].")
@click.option(
    "--allowed-hosts",
    default=None,
    help="Host names clients may use (e.g. mlflow.team.example:5000) when bound beyond localhost.",
)
@click.option("--cors-allowed-origins", default=None, help="Web origins allowed to call the server.")
@click.option("--dry-run", is_flag=True, help="Print the mlflow server command line and exit.")
@click.argument("mlflow_args", nargs=-1, type=click.UNPROCESSED)
def mlflow_server(
    backend_store_uri,
    artifacts_destination,
    host,
    port,
    workers,
    allowed_hosts,
    cors_allowed_origins,
    dry_run,
    mlflow_args,
):
    """Start a shared MLflow tracking server: runs and registry in a database (PostgreSQL),
    artifacts served through the server. Clients set MLFLOW_TRACKING_URI=http://HOST:PORT.
    Anything after `--` goes to `mlflow server` as it is (e.g. -- --app-name basic-auth)."""
    try:
        cmd = tracking_server.server_command(
            backend_store_uri, artifacts_destination, host, port, workers, allowed_hosts, cors_allowed_origins
        )
        cmd += list(mlflow_args)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    click.echo(tracking_server.shown(cmd))
    if dry_run:
        return
    click.echo(f"clients: export MLFLOW_TRACKING_URI={tracking_server.client_uri(host, port)}")
    tracking_server.exec_server(cmd)


COMMANDS = (runs, relocate_store, mlflow_server)
