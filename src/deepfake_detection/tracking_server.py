"""A shared MLflow tracking server for a team: ``deepfake-detect mlflow-server`` (``make mlflow-server``).

One ``mlflow server`` keeps every teammate's runs and the model registry in a database
(PostgreSQL: ``postgresql://USER@HOST:5432/DB``, through the psycopg2 driver; libpq reads the
password from ``PGPASSWORD`` or ``~/.pgpass``, so it need not be on the command line) and serves the
artifacts itself
(``--serve-artifacts``): new experiments get the artifact root ``mlflow-artifacts:/``, which clients
upload to and download from through the server, and the server keeps the files under
``--artifacts-destination`` (a folder on the server's machine, or ``s3://...``, ``gs://...`` with the
server's own credentials). A client needs only ``MLFLOW_TRACKING_URI=http://HOST:PORT``.

The server binds to 127.0.0.1 unless told otherwise; to open it to a team network, bind another
interface (``--host 0.0.0.0``) and name the host names clients use (``--allowed-hosts``: MLflow's
protection against DNS rebinding; by default it accepts localhost and private addresses).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
# SQLAlchemy database schemes (with an optional +driver) a tracking server can keep its runs in.
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql", "sqlite")


def redact(uri: str) -> str:
    """``uri`` with its password (if any) replaced by ``***``: safe to print or log."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc))


def check_backend(uri: str) -> str:
    """The backend store URI, checked: a database URI (``postgresql://...`` for a team) whose
    driver is installed. ``postgresql://`` gets the installed driver named, ``postgresql+psycopg2://``:
    SQLAlchemy 2.1 would otherwise pick psycopg 3, which the project does not install. Raises
    ``ValueError`` with what to do otherwise."""
    import importlib

    parts = urlsplit(uri)
    dialect, _, driver = parts.scheme.partition("+")
    if dialect not in DATABASE_SCHEMES:
        raise ValueError(
            f"backend store {redact(uri)!r} is not a database URI: give e.g. "
            "postgresql://mlflow@db.example:5432/mlflow (the password in PGPASSWORD or ~/.pgpass)"
        )
    if dialect == "postgresql":
        driver = driver or "psycopg2"
        try:
            importlib.import_module(driver)
        except ImportError:
            hint = "pip install psycopg2-binary (pinned in pyproject.toml)" if driver == "psycopg2" else ""
            raise ValueError(
                f"the PostgreSQL driver {driver!r} is not installed{': ' + hint if hint else ''}"
            ) from None
        uri = urlunsplit(parts._replace(scheme=f"postgresql+{driver}"))
    return uri


def artifacts_location(destination: str) -> str:
    """Where the server keeps artifacts: a URI (``s3://...``) as given, a local path made absolute,
    so it does not depend on the folder the server starts in (the server creates it)."""
    if "://" in destination:
        return destination
    return str(Path(destination).expanduser().resolve())


def server_command(
    backend_store_uri: str,
    artifacts_destination: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int | None = None,
    allowed_hosts: str | None = None,
    cors_allowed_origins: str | None = None,
) -> list[str]:
    """The ``mlflow server`` command line: a database backend, artifacts served through the server."""
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        check_backend(backend_store_uri),
        "--serve-artifacts",
        "--artifacts-destination",
        artifacts_location(artifacts_destination),
        "--default-artifact-root",
        "mlflow-artifacts:/",
        "--host",
        host,
        "--port",
        str(port),
    ]
    if workers:
        cmd += ["--workers", str(workers)]
    if allowed_hosts:
        cmd += ["--allowed-hosts", allowed_hosts]
    if cors_allowed_origins:
        cmd += ["--cors-allowed-origins", cors_allowed_origins]
    return cmd


def client_uri(host: str, port: int) -> str:
    """The URL clients set as ``MLFLOW_TRACKING_URI`` (a wildcard bind: this machine's name)."""
    if host in ("0.0.0.0", "::"):
        host = socket.getfqdn()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def server_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: telemetry off, and MLflow's job runner (GenAI judge jobs, which this
    project does not use) off unless ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION`` says otherwise: it
    doubles the start-up time."""
    env = dict(os.environ if environ is None else environ)
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return env


def shown(cmd: list[str]) -> str:
    """The command line as printed: the backend's password redacted."""
    return " ".join(redact(part) if "://" in part else part for part in cmd)


def exec_server(cmd: list[str]) -> None:  # pragma: no cover - replaces the process
    """Become the server (signals such as SIGTERM and Ctrl-C reach it directly)."""
    sys.stdout.flush()
    os.execve(cmd[0], cmd, server_env())
