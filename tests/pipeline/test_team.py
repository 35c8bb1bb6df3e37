"""A team on shared infrastructure, as the README's "Working as a team" describes it (issue 12).

* Data and outputs: a DVC remote (a local folder standing in for s3://...) and a git remote.
  Alice has run the pipeline (the session's tiny project, tests/pipeline/conftest.py); she commits
  dvc.lock and the outputs git keeps (metrics/, plots/, reports/), `dvc push`es and `git push`es.
  Bob clones and `dvc pull`s: `dvc status` is clean and `dvc repro` runs nothing.
* Tracking and registry: a real PostgreSQL cluster (initdb + pg_ctl on a loopback port, as a
  non-root user) and a real `mlflow server` on it, started by `deepfake-detect mlflow-server`
  (artifacts served through the server; clients hold only its URL). Bob re-runs the light CNN's
  branch of the pipeline with MLFLOW_TRACKING_URI pointing at the server, which registers the
  champion there; a process in a third folder, with the team's projects moved out of reach and
  nothing but MLFLOW_TRACKING_URI, pulls the champion and predicts. Two processes logging stage
  runs at once both land completely.

Marked `integration` (it starts services) and `slow`. Without PostgreSQL's server binaries the
server tests skip and say why (CI installs the package: .ci/run, which then sets
DEEPFAKE_REQUIRE_POSTGRES=1 so that they fail instead); the DVC test needs no server.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from project_commands import BIN, command_env
from test_end_to_end import MODELS

REQUIRE = os.environ.get("DEEPFAKE_REQUIRE_POSTGRES") == "1"  # CI: a missing PostgreSQL fails, not skips
MODEL = "deepfake-detector"

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def run(*args, cwd, env=None, check=True, timeout=900) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env or command_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} failed ({result.returncode}):\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unavailable(reason: str):
    if REQUIRE:
        pytest.fail(f"{reason} (DEEPFAKE_REQUIRE_POSTGRES=1)")
    pytest.skip(reason)


# ----------------------------------------------------------------------------- PostgreSQL


def pg_bindir() -> Path | None:
    """The newest PostgreSQL server's binaries: Debian's /usr/lib/postgresql/<version>/bin, else PATH."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if versions:
        return versions[-1].parent
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found else None


@dataclass
class Postgres:
    uri: str  # without the password: the server reads it from PGPASSWORD, as the README advises
    password: str
    host: str
    port: int


@pytest.fixture(scope="session")
def postgres():
    """A throw-away PostgreSQL cluster on a loopback port with a database `mlflow` owned by the
    user `mlflow` (password authentication over TCP), stopped and removed afterwards."""
    bindir = pg_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        _unavailable("PostgreSQL's server is not installed (Debian: apt-get install postgresql; .ci/run does it)")
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the package's `postgres` user
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no `postgres` user to run PostgreSQL as")
        runuser = shutil.which("runuser")
        as_user = [runuser, "-u", "postgres", "--"] if runuser else None
        if as_user is None:
            _unavailable("running as root and `runuser` is missing")
    import psycopg2

    home = Path(tempfile.mkdtemp(prefix="deepfake-pg-"))  # not pytest's tmp: the postgres user must reach it
    password = "team-secret"
    (home / "pw").write_text(password + "\n")
    if owner is not None:
        for path in (home, home / "pw"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    data, port = home / "data", free_port()

    def pg(*args, check=True):
        return run(*as_user, *args, cwd=home, env=command_env(LC_ALL="C.UTF-8"), check=check, timeout=120)

    pg(
        bindir / "initdb",
        "-D",
        data,
        "-U",
        "mlflow",
        f"--pwfile={home / 'pw'}",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {home} -c fsync=off -c max_connections=50"
    pg(bindir / "pg_ctl", "-D", data, "-l", home / "postgres.log", "-o", options, "-w", "-t", "60", "start")
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="mlflow", password=password, dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE mlflow")
        conn.close()
        yield Postgres(f"postgresql://mlflow@127.0.0.1:{port}/mlflow", password, "127.0.0.1", port)
    finally:
        pg(bindir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(home, ignore_errors=True)


def pg_query(pg: Postgres, sql: str) -> list[tuple]:
    import psycopg2

    conn = psycopg2.connect(host=pg.host, port=pg.port, user="mlflow", password=pg.password, dbname="mlflow")
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


# ----------------------------------------------------------------------------- mlflow server


@dataclass
class Server:
    uri: str
    artifacts: Path
    log: Path
    postgres: Postgres


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory):
    """`deepfake-detect mlflow-server` on the PostgreSQL cluster, artifacts served from a folder."""
    home = tmp_path_factory.mktemp("mlflow-server")
    port, log = free_port(), home / "server.log"
    cmd = [
        BIN / "deepfake-detect",
        "mlflow-server",
        "--backend-store-uri",
        postgres.uri,
        "--artifacts-destination",
        home / "artifacts",
        "--port",
        port,
        "--workers",
        2,
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            cwd=home,
            env=command_env(PGPASSWORD=postgres.password),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"mlflow server exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"mlflow server did not answer in 120 s:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        yield Server(uri, home / "artifacts", log, postgres)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ----------------------------------------------------------------------------- the team


@dataclass
class Team:
    alice: Path
    bob: Path
    origin: Path
    remote: Path
    repro: str  # what Alice's `dvc repro` printed


def git(*args, cwd):
    return run("git", "-c", "user.name=t", "-c", "user.email=t@t", *args, cwd=cwd)


@pytest.fixture(scope="module")
def team(project, tmp_path_factory):
    """Alice has run the pipeline (the session's tiny project): she commits dvc.lock and the
    outputs git keeps, pushes to the DVC remote and to git; Bob clones and pulls."""
    alice, repro = project
    home = tmp_path_factory.mktemp("team")
    origin, remote = home / "origin.git", home / "dvc-remote"
    run("git", "init", "-q", "--bare", origin, cwd=home)
    run("dvc", "remote", "add", "-d", "team", remote, cwd=alice)  # the README: s3://... or any remote
    git("add", ".dvc/config", "dvc.lock", "metrics", "plots", "reports", cwd=alice)
    git("commit", "-qm", "Pipeline run; DVC remote: the team's storage", cwd=alice)
    run("dvc", "push", cwd=alice)
    git("remote", "add", "origin", origin, cwd=alice)
    git("push", "-q", "origin", "HEAD:main", cwd=alice)

    bob = home / "bob"
    run("git", "clone", "-q", "-b", "main", origin, bob, cwd=home)
    run("dvc", "pull", cwd=bob)
    return Team(alice, bob, origin, remote, repro)


def test_teammate_pulls_the_outputs_and_has_nothing_to_run(team):
    alice, bob = team.alice, team.bob
    assert "Running stage 'register'" in team.repro
    assert run("git", "check-ignore", "-q", "dvc.lock", cwd=alice, check=False).returncode == 1, "dvc.lock is ignored"
    left = run("git", "status", "--porcelain", cwd=alice).stdout
    assert not left, f"after committing dvc.lock, metrics/, plots/ and reports/, git still sees:\n{left}"
    for path in ("artifacts/models/light_se_cnn/train.keras", "artifacts/manifest.csv", "data/train"):
        assert (bob / path).exists(), f"dvc pull did not bring {path}"
    for path in ("metrics/register.json", "plots/evaluate/light_se_cnn/roc.png", "reports/summary.md"):
        assert (bob / path).read_bytes() == (alice / path).read_bytes(), f"git did not bring {path}"
    # Bob's editable install writes byte code into src/ as soon as he runs anything: not a change
    cache = bob / "src" / "deepfake_detection" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "cli.cpython-311.pyc").write_bytes(b"bob's byte code")

    status = run("dvc", "status", cwd=bob).stdout
    assert "Data and pipelines are up to date" in status, status
    cloud = run("dvc", "status", "--cloud", cwd=bob).stdout
    assert "in sync" in cloud, cloud
    repro = run("dvc", "repro", cwd=bob).stdout
    assert "Running stage" not in repro, repro
    skipped = {line.split("'")[1] for line in repro.splitlines() if "didn't change, skipping" in line}
    assert {"prepare", "ensemble", "summary", "register"} | {f"evaluate@{m}" for m in MODELS} <= skipped, repro
    assert not run("git", "status", "--porcelain", cwd=bob).stdout, "dvc repro changed Bob's checkout"
    assert not (bob / "mlflow.db").exists(), "a stage ran in Bob's clone"


@pytest.fixture(scope="module")
def bob_over_http(team, mlflow_server):
    """Bob re-runs the light CNN's branch (train, threshold, evaluate, then ensemble, summary,
    register) with nothing but MLFLOW_TRACKING_URI pointing at the shared server."""
    out = run(
        "dvc",
        "repro",
        "--force",
        "--downstream",
        "train@light_se_cnn",
        cwd=team.bob,
        env=command_env(mlflow_server.uri),
    ).stdout
    return out


BOB_STAGES = {"train", "threshold", "evaluate", "ensemble", "summary", "register"}


def test_every_run_lands_in_postgresql_and_the_artifacts_on_the_server(team, mlflow_server, bob_over_http):
    from mlflow import MlflowClient

    ran = {line.split("'")[1] for line in bob_over_http.splitlines() if line.startswith("Running stage")}
    branch = {f"{s}@light_se_cnn" for s in ("train", "threshold", "evaluate")} | {"ensemble", "summary", "register"}
    assert branch <= ran, ran
    assert all(s.endswith("@light_se_cnn") for s in ran if "@" in s), f"another model's stage ran: {ran}"
    client = MlflowClient(tracking_uri=mlflow_server.uri, registry_uri=mlflow_server.uri)
    exp = client.get_experiment_by_name("deepfake-detection")
    assert exp.artifact_location.startswith("mlflow-artifacts:"), exp.artifact_location
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert BOB_STAGES <= {r.data.tags["stage"] for r in runs}
    assert {r.data.tags.get("model") for r in runs if r.data.tags["stage"] in ("train", "threshold", "evaluate")} == {
        "light_se_cnn"
    }
    assert len([r for r in runs if r.data.tags["stage"] == "ensemble"]) == 4  # one run per ensemble
    assert all(r.info.status == "FINISHED" for r in runs)
    # the runs are rows of the PostgreSQL database, not of a file in Bob's clone
    in_db = f"SELECT count(*) FROM runs WHERE experiment_id = {int(exp.experiment_id)}"
    assert pg_query(mlflow_server.postgres, in_db)[0][0] == len(runs)
    assert pg_query(mlflow_server.postgres, "SELECT name FROM registered_models") == [(MODEL,)]
    for name in ("mlflow.db", "mlartifacts", "mlruns"):
        assert not (team.bob / name).exists(), f"{name} in Bob's clone: runs bypassed the server"
    # artifacts went through the server into its destination folder
    train = next(r for r in runs if r.info.run_name == "train-light_se_cnn")
    assert "training_curves.png" in {a.path for a in client.list_artifacts(train.info.run_id)}
    assert client.get_metric_history(train.info.run_id, "val_loss"), "no epoch metrics"
    assert list(mlflow_server.artifacts.rglob("training_curves.png")), "no artifact in the server's destination"
    assert list(mlflow_server.artifacts.rglob("MLmodel")), "no logged model in the server's destination"


CLIENT = """
import json
import mlflow, pandas as pd
uri = "models:/deepfake-detector@champion"
model = mlflow.pyfunc.load_model(uri)
info = mlflow.models.get_model_info(uri)
version = mlflow.MlflowClient().get_model_version_by_alias("deepfake-detector", "champion")
out = model.predict(pd.DataFrame({"image": json.load(open("images.json"))}))
print(json.dumps({"metadata": info.metadata, "version": version.version, "tags": version.tags,
                  "rows": out.to_dict(orient="records")}))
"""


def test_champion_is_pulled_from_another_folder_with_only_the_server_url(team, mlflow_server, bob_over_http, tmp_path):
    images = sorted((team.bob / "data" / "test").rglob("*.jpg"))[:4]
    (tmp_path / "images.json").write_text(json.dumps([base64.b64encode(p.read_bytes()).decode() for p in images]))
    (tmp_path / "client.py").write_text(textwrap.dedent(CLIENT))
    registered = json.loads((team.bob / "metrics" / "register.json").read_text())
    assert registered["promoted"] and registered["version"] == 1, registered
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "MLFLOW_TRACKING_URI": mlflow_server.uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    # the client cannot read the team's projects: everything it gets comes from the server
    moved = [(p, p.with_name(p.name + "-away")) for p in (team.alice, team.bob)]
    for here, away in moved:
        here.rename(away)
    try:
        result = run(sys.executable, "client.py", cwd=tmp_path, env=env, timeout=300)
    finally:
        for here, away in moved:
            away.rename(here)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    threshold = registered["threshold"]
    assert float(out["metadata"]["threshold"]) == pytest.approx(threshold)
    assert out["version"] == "1" and float(out["tags"]["threshold"]) == pytest.approx(threshold)
    assert out["tags"]["source_model"] == registered["source_model"]
    rows = out["rows"]
    assert len(rows) == len(images) and all(r["error"] is None for r in rows), rows
    for r in rows:
        assert 0.0 <= r["probability_fake"] <= 1.0 and r["threshold"] == pytest.approx(threshold)
        assert r["label"] == ("fake" if r["probability_fake"] >= threshold else "real")


LOGGER = """
import sys, time
from pathlib import Path
import mlflow
from deepfake_detection import tracking
from deepfake_detection.config import Params

who, experiment, runs, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
params = Params(mlflow={"experiment": experiment})
while not Path("go").exists():  # start together with the other logger
    time.sleep(0.05)
for i in range(runs):
    with tracking.stage_run("train", params, model=f"{who}-{i}", log={"who": who, "i": i}) as run:
        for step in range(steps):
            tracking.log_metrics({"loss": 1.0 / (step + 1), "val_loss": step + i, "auc": 0.5}, step=step)
        Path(f"{who}-{i}.txt").write_text(f"{who} run {i}\\n" * 1000)
        tracking.log_artifact(f"{who}-{i}.txt", "notes")
        tracking.log_dict({"who": who, "i": i}, "summary.json")
    print("run_id", run.info.run_id, flush=True)
"""


def test_two_loggers_at_once_both_land_completely(mlflow_server, tmp_path):
    from mlflow import MlflowClient

    experiment, runs, steps = "team-concurrency", 3, 40  # a new experiment: both race to create it
    (tmp_path / "logger.py").write_text(textwrap.dedent(LOGGER))
    procs = {}
    for who in ("alice", "bob"):
        (tmp_path / who).mkdir()
        procs[who] = subprocess.Popen(
            [sys.executable, str(tmp_path / "logger.py"), who, experiment, str(runs), str(steps)],
            cwd=tmp_path / who,
            env=command_env(mlflow_server.uri),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    time.sleep(3)  # both have imported MLflow and wait
    for who in procs:
        (tmp_path / who / "go").touch()
    ids = {}
    for who, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{who}'s logger failed:\n{err[-4000:]}"
        ids[who] = [line.split()[1] for line in out.splitlines() if line.startswith("run_id ")]
        assert len(ids[who]) == runs, out
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id])
    assert len(found) == 2 * runs and {r.info.run_id for r in found} == set(ids["alice"]) | set(ids["bob"])
    for r in found:
        who, i = r.data.params["who"], r.data.params["i"]
        assert r.info.status == "FINISHED" and r.info.run_name == f"train-{who}-{i}"
        history = client.get_metric_history(r.info.run_id, "val_loss")
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(steps)), (who, i)
        assert set(r.data.metrics) == {"loss", "val_loss", "auc"}, (who, i)
        note = Path(client.download_artifacts(r.info.run_id, f"notes/{who}-{i}.txt", str(tmp_path / r.info.run_id)))
        assert note.read_text() == f"{who} run {i}\n" * 1000
        assert json.loads(
            Path(client.download_artifacts(r.info.run_id, "summary.json", str(tmp_path / r.info.run_id))).read_text()
        ) == {"who": who, "i": int(i)}
