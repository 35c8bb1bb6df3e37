"""SIGTERM to a training stage: the MLflow run ends KILLED, the command says so and exits 143,
and no partial output (empty model folder, 0-byte history CSV, metrics) is left behind.

A real `deepfake-detect train` subprocess on a tiny project, a real SIGTERM, the real SQLite store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import click
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from project_commands import BIN, command_env, params_text

from deepfake_detection import paths, signals, tracking
from deepfake_detection.cli.group import InOrder
from deepfake_detection.config import parse_params
from deepfake_detection.data.sample import generate
from deepfake_detection.stages import prepare

MODEL = "light_se_cnn"
# Many epochs and no early stop: the stage is surely still training when the signal arrives.
TINY = {
    "data": {"image_size": 32, "batch_size": 8},
    "train": {"epochs": 500, "patience": 500},
    "mlflow": {"experiment": "test-termination"},
}


def _train_run(client: MlflowClient):
    exp = client.get_experiment_by_name("test-termination")
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.stage = 'train' and tags.model = '{MODEL}'")
    return runs[0] if runs else None


def test_sigterm_ends_the_run_killed_exits_143_and_leaves_no_partial_outputs(in_tmp):
    generate(in_tmp / "data", images_per_class=16, size=40, seed=3, progress=False)
    (in_tmp / "params.yaml").write_text(params_text(TINY))
    prepare.run(parse_params(TINY), progress=False)
    client = MlflowClient(tracking_uri=f"sqlite:///{in_tmp / 'mlflow.db'}")

    env = command_env()
    proc = subprocess.Popen(
        [str(BIN / "deepfake-detect"), "train", MODEL, "--params", "params.yaml"],
        cwd=in_tmp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    history = in_tmp / paths.history_csv("train", MODEL)
    try:
        deadline = time.monotonic() + 300
        while True:  # until the run is RUNNING and training has begun (the history CSV exists)
            assert proc.poll() is None, f"train ended before the signal:\n{proc.communicate()}"
            run = _train_run(client)
            if run is not None and run.info.status == "RUNNING" and history.exists():
                break
            assert time.monotonic() < deadline, "the train run never started"
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    assert proc.returncode == 143, (proc.returncode, err[-3000:])
    assert "terminated by SIGTERM" in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    run = client.get_run(run.info.run_id)
    assert run.info.status == "KILLED" and run.info.end_time is not None
    for partial in (
        paths.model_file(MODEL, "train"),
        paths.model_file(MODEL, "train").parent,
        paths.history_csv("train", MODEL),
        paths.stage_metrics("train", MODEL),
    ):
        assert not (in_tmp / partial).exists(), f"{partial} was left behind"


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, RuntimeError])
def test_a_failed_stage_removes_its_new_outputs_and_their_emptied_folders(in_tmp, interrupt):
    model = in_tmp / "artifacts/models/m/train.keras"
    model.parent.mkdir(parents=True)
    keep = in_tmp / "artifacts/models/m2/train.keras"  # another model's output stays
    keep.parent.mkdir(parents=True)
    keep.write_bytes(b"ok")
    csv = in_tmp / "plots/train/m.csv"
    csv.parent.mkdir(parents=True)
    (in_tmp / "plots/train/other.csv").write_text("x")
    with pytest.raises(interrupt), paths.replaced_on_success(model, csv, in_tmp / "metrics/train/m.json"):
        csv.write_text("")  # the 0-byte CSV a stopped fit leaves
        raise interrupt()
    assert not model.parent.exists() and not csv.exists()
    assert keep.is_file() and (in_tmp / "plots/train/other.csv").is_file()

    with paths.replaced_on_success(csv):  # success: nothing is removed
        csv.write_text("epoch\n")
    assert csv.is_file()


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, RuntimeError, OSError])
def test_a_failed_stage_puts_the_previous_outputs_back_untouched(in_tmp, interrupt):
    """With the tracking server down, `threshold` once deleted the previous threshold metrics
    and validation predictions; with the disk full, `prepare` deleted the manifest."""
    metrics, plots = in_tmp / "metrics/threshold/m.json", in_tmp / "plots/evaluate/m"
    plots.mkdir(parents=True)
    metrics.parent.mkdir(parents=True)
    metrics.write_text('{"threshold": 0.4}')
    (plots / "roc.csv").write_text("old")
    with pytest.raises(interrupt), paths.replaced_on_success(metrics, plots):
        assert not metrics.exists() and not plots.exists()  # set aside while the stage runs
        metrics.write_text('{"thresh')  # half-written
        plots.mkdir()
        (plots / "new.csv").write_text("new")
        raise interrupt()
    assert metrics.read_text() == '{"threshold": 0.4}'
    assert [p.name for p in plots.iterdir()] == ["roc.csv"] and (plots / "roc.csv").read_text() == "old"
    assert sorted(p.name for p in metrics.parent.iterdir()) == ["m.json"]  # nothing aside left

    with paths.replaced_on_success(metrics, plots):  # success: the new outputs, nothing aside
        metrics.write_text('{"threshold": 0.5}')
    assert metrics.read_text() == '{"threshold": 0.5}' and not plots.exists()
    assert sorted(p.name for p in metrics.parent.iterdir()) == ["m.json"]


def test_previous_outputs_a_killed_stage_left_aside_come_back_first(in_tmp):
    """SIGKILL leaves no chance to put them back: the next run of the stage does it first."""
    metrics = in_tmp / "metrics/threshold/m.json"
    metrics.parent.mkdir(parents=True)
    paths.set_aside(metrics).write_text("previous")
    metrics.write_text("half-writ")
    with pytest.raises(RuntimeError), paths.replaced_on_success(metrics):
        raise RuntimeError("the tracking server is down")
    assert metrics.read_text() == "previous" and not paths.set_aside(metrics).exists()


def test_threshold_with_the_tracking_server_down_keeps_its_previous_outputs(in_tmp):
    """`deepfake-detect threshold` with MLFLOW_TRACKING_URI naming a dead server fails and
    leaves the previous threshold metrics and validation predictions in place."""
    import json
    import socket

    from deepfake_detection.data.sample import generate
    from deepfake_detection.stages import threshold, train

    tiny = {**TINY, "train": {"epochs": 1}, "models": {MODEL: {"filters": [8], "convs_per_block": 1}}}
    generate(in_tmp / "data", images_per_class=8, size=40, seed=3, progress=False)
    (in_tmp / "params.yaml").write_text(params_text(tiny))
    params = parse_params(tiny)
    prepare.run(params, progress=False)
    train.run(MODEL, params)
    threshold.run(MODEL, params)
    metrics, predictions = in_tmp / paths.stage_metrics("threshold", MODEL), in_tmp / paths.predictions(MODEL, "valid")
    previous = {**json.loads(metrics.read_text()), "marker": "the previous run"}
    metrics.write_text(json.dumps(previous))
    rows = predictions.read_bytes()
    perturbed = in_tmp / paths.predictions(MODEL, "valid_perturbed")
    perturbed_rows = perturbed.read_bytes()

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    env = command_env(dead, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    done = subprocess.run(
        [str(BIN / "deepfake-detect"), "threshold", MODEL, "--params", "params.yaml"],
        cwd=in_tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0, done.stderr[-2000:]
    assert json.loads(metrics.read_text()) == previous
    assert predictions.read_bytes() == rows and perturbed.read_bytes() == perturbed_rows
    assert sorted(p.name for p in predictions.parent.iterdir()) == ["valid.csv", "valid_perturbed.csv"]


def test_an_interrupted_ensemble_stage_leaves_none_of_its_outputs(in_tmp, monkeypatch):
    """Every stage, not only training: here `ensemble` is stopped (Ctrl-C / SIGTERM through the
    CLI) after its first ensemble wrote its files and while the second is being evaluated."""
    import json

    import numpy as np
    import pandas as pd

    from deepfake_detection.stages import ensemble as ensemble_stage

    members = ["light_se_cnn", "resnet50"]
    rng = np.random.default_rng(0)
    for split in ("valid", "test"):
        y = np.array([0, 1] * 20)
        base = pd.DataFrame(
            {
                "path": [f"data/{split}/{i}.png" for i in range(40)],
                "label": np.where(y == 1, "fake", "real"),
                "y": y,
                "subgroup": "",
            }
        )
        for m in members:
            out = in_tmp / paths.predictions(m, split)
            out.parent.mkdir(parents=True, exist_ok=True)
            base.assign(probability=np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, 40), 0, 1)).to_csv(
                out, index=False
            )
            if split == "valid":  # the threshold stage's perturbed validation scores (val_robust_auc)
                base.assign(clean=0.5, jpeg_75=0.5).to_csv(
                    in_tmp / paths.predictions(m, "valid_perturbed"), index=False
                )
    for m in members:
        f = in_tmp / paths.stage_metrics("threshold", m)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps({"threshold": 0.5}))
    params = parse_params({"ensemble": {"members": members}, "mlflow": {"experiment": "test-termination"}})

    real, calls = ensemble_stage.evaluate_scores, []

    def interrupted_on_the_second(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ensemble_stage, "evaluate_scores", interrupted_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        ensemble_stage.run(params)
    assert len(calls) == 2
    for out in (paths.ARTIFACTS / "ensembles", paths.PLOTS / "ensemble", paths.METRICS / "ensemble"):
        assert not (in_tmp / out).exists(), f"{out} was left behind"
    assert (in_tmp / paths.predictions(members[0], "valid")).is_file()  # the stage's inputs stay
    client = MlflowClient(tracking_uri=f"sqlite:///{in_tmp / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("test-termination").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED", "KILLED"]


def _stage_command(experiment: str, body):
    """A CLI group of the project's kind (``cli.group.InOrder``, which turns SIGTERM into exit 143)
    whose one command, ``work``, runs ``body`` inside a stage's MLflow run."""

    @click.group(cls=InOrder)
    def group():
        pass

    @group.command()
    def work():
        with tracking.stage_run("prepare", parse_params({"mlflow": {"experiment": experiment}})):
            body()

    return group


def _only_run_status(root, experiment: str) -> str:
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run.info.status


@pytest.mark.parametrize("mangled", [SystemError("bad argument to internal function"), RuntimeError("in C")])
def test_sigterm_mangled_into_another_error_still_ends_killed_with_143(in_tmp, mangled):
    """The signal's exception comes back as another error, as C code does with an exception
    raised inside it (``SystemError: bad argument to internal function``)."""

    def sigterm_then_mangle():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10_000_000):  # the handler runs between two bytecodes
                pass
        except signals.Terminated:
            raise mangled from None

    result = CliRunner().invoke(_stage_command("mangled", sigterm_then_mangle), ["work"])
    assert result.exit_code == 143, (result.exit_code, result.output, result.exception)
    assert "terminated by SIGTERM" in result.stderr
    assert _only_run_status(in_tmp, "mangled") == "KILLED"


def test_a_sigterm_held_back_during_a_fit_ends_it_at_the_next_safe_point(in_tmp):
    """Inside signals.deferred (model.fit) the handler only records the signal: the training
    callbacks raise it between two batches; a signal after the last safe point ends the block."""
    reached = []

    def fit_like():
        with signals.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1_000_000):  # the handler has run by now, and raised nothing here
                pass
            reached.append("after the signal")
            signals.raise_if_received()  # a Keras callback between two batches
            reached.append("past the safe point")

    result = CliRunner().invoke(_stage_command("deferred", fit_like), ["work"])
    assert reached == ["after the signal"]
    assert result.exit_code == 143 and _only_run_status(in_tmp, "deferred") == "KILLED"

    def signal_after_the_last_safe_point():
        with signals.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1_000_000):
                pass

    result = CliRunner().invoke(_stage_command("late", signal_after_the_last_safe_point), ["work"])
    assert result.exit_code == 143 and _only_run_status(in_tmp, "late") == "KILLED"
    with signals.deferred():  # a later fit in the same process, with no signal: nothing raised
        signals.raise_if_received()


def test_an_error_without_sigterm_still_fails_the_run_and_the_command(in_tmp):
    def bug():
        raise SystemError("a real bug")

    result = CliRunner().invoke(_stage_command("plain", bug), ["work"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemError)
    assert _only_run_status(in_tmp, "plain") == "FAILED"


def test_runs_a_killed_process_left_running_are_marked_failed(in_tmp):
    """SIGKILL gives no chance to end a run: it stayed RUNNING forever. The next stage of the
    same model marks it FAILED, `deepfake-detect runs clean` the rest; a live one is left alone."""
    experiment = "test-stale"
    (in_tmp / "params.yaml").write_text(params_text({"mlflow": {"experiment": experiment}}))
    killed = (
        "import os, signal\n"
        "from mlflow.tracking import MlflowClient\n"
        "from deepfake_detection import tracking\n"
        f"exp = tracking.setup({experiment!r})\n"
        "for model in ('light_se_cnn', 'resnet50'):\n"
        "    run = MlflowClient().create_run(exp, tags=tracking.run_tags('train', model))\n"
        "    print(run.info.run_id, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run(
        [str(BIN / "python"), "-c", killed], cwd=in_tmp, env=command_env(), capture_output=True, text=True
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    light, resnet = done.stdout.split()
    exp_id = tracking.setup(experiment)
    client = MlflowClient()
    alive = client.create_run(exp_id, tags=tracking.run_tags("train", "resnet50")).info.run_id  # this process
    assert {client.get_run(r).info.status for r in (light, resnet, alive)} == {"RUNNING"}

    with tracking.stage_run("threshold", parse_params({"mlflow": {"experiment": experiment}}), model="light_se_cnn"):
        pass
    run = client.get_run(light)
    assert run.info.status == "FAILED" and run.info.end_time is not None
    assert "ended without closing the run" in run.data.tags["failed_reason"]
    assert "the next threshold-light_se_cnn run" in run.data.tags["failed_reason"]
    assert client.get_run(resnet).info.status == "RUNNING"  # another model's: not this stage's business

    from deepfake_detection.cli import cli

    result = CliRunner().invoke(cli, ["runs", "clean"])
    assert result.exit_code == 0, result.output
    assert f"1 run(s) marked FAILED: {resnet}" in result.output
    assert client.get_run(resnet).info.status == "FAILED"
    assert "deepfake-detect runs clean" in client.get_run(resnet).data.tags["failed_reason"]
    assert client.get_run(alive).info.status == "RUNNING"  # its process is alive
    client.set_terminated(alive, "FINISHED")
