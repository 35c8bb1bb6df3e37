"""The whole chain on every submission: data -> `dvc repro` -> registry -> prediction.

The project is copied into a temporary folder with tiny params (32 px, 1 epoch, 60 images),
the data is generated and tracked there with real `dvc add`, the pipeline runs through real
`dvc repro`, and the champion is pulled from that folder's MLflow store to predict.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from loopback import free_port, stop, wait_for
from project_commands import command_env

from deepfake_detection.serving.io import local_files

ROOT = Path(__file__).resolve().parents[2]
# The tiny pipeline runs one network of each kind (params.yaml may leave networks out): a transfer
# network with its fine-tuning (the one with attention blocks; resnet50 and efficientnet_b0 take the
# same stages, and tests/model builds, fine-tunes and saves them), the from-scratch CNN and the two
# forensic detectors. `make demo` runs all six.
MODELS = ["light_se_cnn", "efficientnet_b0_dual_attention", "residual_cooc", "block_dct"]
TRANSFER = ["efficientnet_b0_dual_attention"]

pytestmark = pytest.mark.slow


def sh(*args, cwd, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), cwd=cwd, env=command_env(), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def tiny_params(path: Path) -> None:
    p = yaml.safe_load(path.read_text())
    p["data"].update(image_size=32, batch_size=16)
    p["train"]["epochs"] = 1
    p["models"] = {name: p["models"][name] for name in MODELS}
    p["finetune"]["models"] = TRANSFER
    p["ensemble"]["members"] = MODELS
    for section in p["models"].values():
        section["epochs"] = None  # every network 1 epoch (train.epochs); the key stays: files state every key
    p["finetune"].update(epochs=1, unfreeze_layers=5)
    p["evaluate"]["gradcam_examples"] = 1
    path.write_text(yaml.safe_dump(p, sort_keys=False))


def copy_project(dest: Path) -> Path:
    """The project's tracked files in ``dest`` with tiny params and 60 sample images tracked by
    DVC, committed in a git repository of its own."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for f in files:
        if f and not f.startswith(("dvc-storage/", "data.dvc")) and (ROOT / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    tiny_params(dest / "params.yaml")
    sh("git", "init", "-q", cwd=dest)
    sh("deepfake-detect", "sample-data", "data", "--per-class", "30", "--size", "48", cwd=dest)
    sh("dvc", "add", "-q", "data", cwd=dest)
    sh("git", "add", "-A", cwd=dest)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny project", cwd=dest)
    return dest


# `project`, the tiny project after `dvc repro`: tests/pipeline/conftest.py (one run per session)


@pytest.fixture
def store(project):
    mlflow.set_tracking_uri(f"sqlite:///{project[0] / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{project[0] / 'mlflow.db'}")
    return project[0]


def test_repro_prints_the_summary_table_and_registers_a_champion(project):
    dest, out = project
    assert "| model" in out and "ensemble_stacking" in out, "the summary table is printed at the end"
    summary = pd.read_csv(dest / "reports" / "summary.csv")
    assert {"model", "threshold", "accuracy", "precision", "recall", "f1", "auc"} <= set(summary.columns)
    assert set(summary.model) == set(MODELS) | {
        f"ensemble_{k}" for k in ("soft_vote", "weighted", "majority", "stacking")
    }
    assert set(summary["at"].astype(str)) == {"tuned", "0.5"}
    register = json.loads((dest / "metrics" / "register.json").read_text())
    assert register["promoted"] and register["version"] == 1
    assert (dest / "reports" / "roc_all.png").stat().st_size > 1000


def test_champion_predicts_from_the_registry_with_its_threshold(store):
    model = mlflow.pyfunc.load_model("models:/deepfake-detector@champion")
    info = mlflow.models.get_model_info("models:/deepfake-detector@champion")
    threshold = float(info.metadata["threshold"])
    images = sorted((store / "data" / "test").rglob("*.jpg"))
    with local_files():  # the model reads no file unless told to (a REST client must not)
        out = model.predict(pd.DataFrame({"path": [str(p) for p in images]}))
    assert len(out) == len(images)
    assert out.probability_fake.between(0, 1).all()
    assert (out.threshold == threshold).all()
    assert (out.label == np.where(out.probability_fake >= threshold, "fake", "real")).all()
    version = mlflow.MlflowClient().get_model_version_by_alias("deepfake-detector", "champion")
    assert float(version.tags["threshold"]) == threshold
    for tag in ("threshold_method", "source_model", "val_auc", "test_auc", "data_digest", "git_commit"):
        assert version.tags.get(tag), tag
    assert version.description


def test_the_champions_description_is_its_model_card_with_the_pipelines_own_numbers(store):
    version = mlflow.MlflowClient().get_model_version_by_alias("deepfake-detector", "champion")
    card = version.description
    registered = json.loads((store / "metrics" / "registered.json").read_text())
    source = version.tags["source_model"]
    assert card.startswith(f"# Model card: deepfake-detector version {version.version} (`{source}`")
    assert f"Test ROC AUC **{registered['test_auc']:.4f}** (95% interval {registered['test_auc_low']:.4f}-" in card
    assert f"probability_fake >= {registered['threshold']:.4f}" in card
    # Limitations: the worst perturbation of reports/robustness.csv (register runs after the robustness stages)
    robustness = pd.read_csv(store / "reports" / "robustness.csv")
    own = robustness[(robustness.model == source) & (robustness.perturbation != "clean")]
    worst = own.sort_values(["auc", "perturbation"]).iloc[0]
    limitations = card.split("\n## Limitations\n", 1)[1]
    assert (
        f"**Worst perturbation: `{worst.perturbation}`**" in limitations and f"test AUC {worst.auc:.3f}" in limitations
    )
    assert "mlflow.pyfunc.load_model(" in card and "curl -s" in card and "deepfake-detect predict" in card
    # its source run is the candidate's evaluate (or ensemble) run, whose row has the headline metrics
    run = mlflow.get_run(version.run_id)
    assert run.data.tags["stage"] in ("evaluate", "ensemble") and run.data.tags["model"] == source
    assert run.data.metrics["test_auc"] == pytest.approx(registered["test_auc"])
    assert f"`{run.info.run_name}` run" in card and run.info.run_id in card


def test_every_stage_run_is_tagged_and_traceable(store):
    runs = mlflow.search_runs(experiment_names=["deepfake-detection"], output_format="list")
    by_stage: dict[str, list] = {}
    for r in runs:
        by_stage.setdefault(r.data.tags["stage"], []).append(r)
        assert r.data.tags["git_commit"] not in ("", "unknown")
        assert r.data.tags["data_digest"].endswith(".dir")
    assert {r.data.tags["model"] for r in by_stage["train"]} == set(MODELS)
    assert {r.data.tags["model"] for r in by_stage["finetune"]} == set(TRANSFER)
    assert {r.info.run_name for r in by_stage["threshold"]} == {f"threshold-{m}" for m in MODELS}
    assert len(by_stage["evaluate"]) == len(MODELS) and len(by_stage["ensemble"]) == 4
    assert {"prepare", "summary", "register"} <= set(by_stage)
    # one `dvc repro`: one pipeline_run tag on every run; each evaluate run is a model's row
    assert len({r.data.tags["pipeline_run"] for r in runs}) == 1
    for r in by_stage["evaluate"]:
        assert {"val_auc", "test_auc", "test_auc_ci95_low", "test_auc_ci95_high", "threshold"} <= set(r.data.metrics)


def _stage_run(stage: str, model: str):
    """The tiny pipeline's MLflow run of one stage of one network."""
    return mlflow.search_runs(
        experiment_names=["deepfake-detection"],
        output_format="list",
        filter_string=f"tags.stage = '{stage}' and tags.model = '{model}'",
    )[0]


def test_training_runs_log_params_epochs_curves_and_a_loadable_model(store):
    client = mlflow.MlflowClient()
    run = _stage_run("train", "light_se_cnn")
    assert run.info.run_name == "train-light_se_cnn"
    params = run.data.params
    configured = yaml.safe_load((store / "params.yaml").read_text())
    assert float(params["lr"]) == configured["train"]["lr"]
    assert float(params["loss.gamma"]) == configured["loss"]["gamma"] and params["data.image_size"] == "32"
    assert params["monitor"] == configured["train"]["monitor"] and params["schedule"] == configured["train"]["schedule"]
    assert "model.filters" in params and "class_weight_fake" in params
    for metric in ("loss", "val_loss", "auc", "val_auc", "accuracy", "val_accuracy", "learning_rate"):
        assert client.get_metric_history(run.info.run_id, metric), metric
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "training_curves.png" in artifacts and "light_se_cnn.csv" in artifacts
    (transfer,) = TRANSFER  # weights "none": nothing to protect, the baseline trains the whole network
    assert _stage_run("train", transfer).data.params["backbone_trainable"] == "True"

    import keras

    saved = keras.models.load_model(store / "artifacts" / "models" / "light_se_cnn" / "train.keras", compile=False)
    logged = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/light_se_cnn")  # named after its network
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(logged.predict(x)).reshape(-1), saved.predict(x, verbose=0).reshape(-1), atol=1e-5
    )


def test_dvc_metrics_headline_view_fits_a_terminal_and_each_stage_shows_in_full(project):
    dest, _ = project
    table = sh("dvc", "metrics", "show", "metrics/scores", "metrics/registered.json", cwd=dest).stdout
    width = max(len(line) for line in table.splitlines())
    assert width <= 120, f"`dvc metrics show metrics/scores` is {width} characters wide:\n{table}"
    shown = json.loads(sh("dvc", "metrics", "show", "--json", cwd=dest).stdout)
    files = shown[0]["data"] if isinstance(shown, list) else next(iter(shown.values()))["data"]
    # the robustness tables are DVC metrics too (dvc exp show compares them across experiments)
    for name in MODELS + ["ensemble_soft_vote"]:
        table = files[f"metrics/robustness/{name}.json"]["data"]
        assert {"clean", "jpeg_50", "blur_2", "downscale_50", "combined"} <= set(table), name
        assert {"auc", "accuracy", "auc_drop"} <= set(table["jpeg_50"]), name
    for name in MODELS + [f"ensemble_{k}" for k in ("soft_vote", "weighted", "majority", "stacking")]:
        score = files[f"metrics/scores/{name}.json"]["data"]
        full = json.loads(
            (
                dest / "metrics" / ("ensemble" if name.startswith("ensemble") else "evaluate") / f"{name}.json"
            ).read_text()
        )
        assert score == {
            "val_auc": full["val"]["auc"],
            "test_auc": full["test"]["tuned"]["auc"],
            "test_auc_low": full["test_auc_ci95"]["low"],
            "test_auc_high": full["test_auc_ci95"]["high"],
            "threshold": full["threshold"],
        }, name
    registered = json.loads((dest / "metrics" / "register.json").read_text())["source_model"]
    assert files["metrics/registered.json"]["data"] == files[f"metrics/scores/{registered}.json"]["data"]
    # the per-stage views of the README: every number of a stage's full report
    assert "duplicates_across_splits" in sh("dvc", "metrics", "show", "metrics/data.json", "--json", cwd=dest).stdout
    evaluate = sh("dvc", "metrics", "show", "metrics/evaluate", "--json", cwd=dest).stdout
    assert "test_auc_ci95" in evaluate and "balanced_accuracy" in evaluate and '"0.5"' in evaluate
    assert "best_epoch" in sh("dvc", "metrics", "show", "metrics/train", "--json", cwd=dest).stdout


def test_dvc_plots_render_offline(project):
    dest, _ = project
    sh("dvc", "plots", "show", "-o", "dvc_plots", cwd=dest)
    html = (dest / "dvc_plots" / "index.html").read_text()
    assert "light_se_cnn: test ROC" in html and "light_se_cnn: test confusion at its tuned threshold" in html
    # the charts need no network: no script from a CDN, the three libraries inlined (.dvc/config's template)
    assert "<script src=" not in html and "cdn.jsdelivr" not in html
    for library in ("vega@5.", "vega-lite@5.", "vega-embed@6."):
        assert f'<script data-library="{library}' in html, library
    assert "vegaEmbed(" in html and len(html) > 800_000
    # the page leads with the answer; the ensembles' and the summary's figures are plots too; the
    # confusion axes say which label is fake
    body = html[html.index("<body") :]
    first = body[body.index('"title": {"text": "') :][:100]
    assert "The answer: test ROC of every model and ensemble" in first, first
    for plot in (
        "ensemble_stacking: test confusion at its tuned threshold",
        "ensemble_weighted/pr.png",
        "roc_all.png",
    ):
        assert plot in html, plot
    assert "actual (1 = fake)" in html and "predicted (1 = fake)" in html


def test_second_repro_runs_nothing_and_finetune_lr_reruns_only_downstream(project):
    dest, _ = project
    status = sh("dvc", "status", cwd=dest).stdout
    assert "up to date" in status, status
    again = sh("dvc", "repro", cwd=dest).stdout
    assert "Running stage" not in again

    params = dest / "params.yaml"
    original = params.read_text()
    p = yaml.safe_load(original)
    p["finetune"]["lr"] = 0.0002
    params.write_text(yaml.safe_dump(p, sort_keys=False))
    try:
        changed = sh("dvc", "status", cwd=dest).stdout
        dry = sh("dvc", "repro", "--dry", cwd=dest).stdout
    finally:
        params.write_text(original)
    assert all(f"finetune@{m}" in changed for m in TRANSFER) and "train@" not in changed, changed
    ran = {line.split("'")[1] for line in dry.splitlines() if line.startswith("Running stage")}
    assert ran == {f"finetune@{m}" for m in TRANSFER}, "the dry run names the changed stages, never train@"
    # what follows them re-runs once their outputs change: the DAG links them downstream
    dag = sh("dvc", "dag", "--dot", cwd=dest).stdout
    for m in TRANSFER:
        assert f'"finetune@{m}" -> "threshold@{m}"' in dag and f'"evaluate@{m}" -> "ensemble"' in dag
    assert '"ensemble" -> "summary"' in dag and '"summary" -> "register"' in dag
    assert "finetune@light_se_cnn" not in ran


def test_cli_predict_export_and_explain_the_champion(project, tmp_path):
    dest, _ = project
    uri = "models:/deepfake-detector@champion"
    folder = dest / "data" / "test"
    first = sorted(folder.rglob("*.jpg"))[0]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    sh(
        "deepfake-detect",
        "predict",
        "--model",
        uri,
        str(bad),
        str(folder),
        "--output",
        str(tmp_path / "p.csv"),
        cwd=dest,
    )
    rows = pd.read_csv(tmp_path / "p.csv")
    expected = [str(bad)] + [str(p) for p in sorted(folder.rglob("*.jpg"))]
    assert rows.path.tolist() == expected, "one row per file, in the order given"
    assert rows.error.notna().tolist() == [True] + [False] * (len(expected) - 1)
    threshold = json.loads((dest / "metrics" / "register.json").read_text())["threshold"]
    assert (rows.threshold == threshold).all()

    sh(
        "deepfake-detect",
        "predict",
        "--model",
        uri,
        str(first),
        "--threshold",
        "0",
        "--output",
        str(tmp_path / "p0.json"),
        cwd=dest,
    )
    assert json.loads((tmp_path / "p0.json").read_text())[0]["label"] == "fake"

    if json.loads((dest / "metrics" / "register.json").read_text())["kind"] == "single":
        onnx = tmp_path / "detector.onnx"
        sh("deepfake-detect", "export", "--model", uri, "--format", "onnx", str(onnx), cwd=dest)
        sh(
            "deepfake-detect",
            "predict",
            "--runtime",
            "onnx",
            "--model",
            str(onnx),
            str(folder),
            "--output",
            str(tmp_path / "onnx.csv"),
            cwd=dest,
        )
        onnx_rows = pd.read_csv(tmp_path / "onnx.csv")
        np.testing.assert_allclose(onnx_rows.probability_fake, rows.probability_fake[1:], atol=1e-4)
    else:  # an ensemble champion has no single network to export: it says so
        out = sh(
            "deepfake-detect",
            "export",
            "--model",
            uri,
            "--format",
            "onnx",
            str(tmp_path / "x.onnx"),
            cwd=dest,
            check=False,
        )
        assert out.returncode != 0 and "ensemble" in out.stderr

    sh("deepfake-detect", "explain", "--model", uri, str(first), "--out", str(tmp_path / "cam"), cwd=dest)
    assert len(list((tmp_path / "cam").glob("*.png"))) == 1


def test_threshold_and_evaluate_runs_log_their_figures_metrics_and_files(store):
    client = mlflow.MlflowClient()

    th = _stage_run("threshold", "efficientnet_b0_dual_attention")
    assert "roc_threshold.png" in {a.path for a in client.list_artifacts(th.info.run_id)}
    assert th.data.params["threshold.method"] == "youden" and "threshold" in th.data.metrics
    chosen = json.loads((store / "metrics" / "threshold" / "efficientnet_b0_dual_attention.json").read_text())
    assert th.data.metrics["threshold"] == pytest.approx(chosen["threshold"])

    ev = _stage_run("evaluate", "efficientnet_b0_dual_attention")
    figures = {a.path for a in client.list_artifacts(ev.info.run_id, "evaluation")}
    for name in (
        "roc.png",
        "pr.png",
        "confusion_tuned.png",
        "confusion_tuned_normalized.png",
        "confusion_0.5.png",
        "confusion_matrices.json",
    ):
        assert f"evaluation/{name}" in figures, name
    assert "gradcam_outcomes.png" in {a.path for a in client.list_artifacts(ev.info.run_id)}
    for metric in (
        "accuracy",
        "precision",
        "recall",
        "f1",
        "auc",
        "average_precision",
        "balanced_accuracy",
        "eer",
        "brier",
        "ece",
    ):
        assert f"test_{metric}" in ev.data.metrics and f"test_at_0.5_{metric}" in ev.data.metrics, metric
    result = json.loads((store / "metrics" / "evaluate" / "efficientnet_b0_dual_attention.json").read_text())
    assert result["threshold"] == chosen["threshold"]
    assert ev.data.metrics["test_auc"] == pytest.approx(result["test"]["tuned"]["auc"])
    plots = store / "plots" / "evaluate" / "efficientnet_b0_dual_attention"
    assert json.loads((plots / "roc.json").read_text())["roc"][0].keys() == {"fpr", "tpr", "threshold"}
    assert len(json.loads((plots / "confusion.json").read_text())["confusion"]) == result["test"]["tuned"]["n"]

    ens = _stage_run("ensemble", "ensemble_weighted")
    weights = json.loads((store / "artifacts" / "ensembles" / "ensemble_weighted" / "ensemble.json").read_text())
    assert weights["kind"] == "weighted" and sum(weights["weights"]) == pytest.approx(1.0)
    assert "test_auc" in ens.data.metrics and "val_auc" in ens.data.metrics


def test_make_screens_regenerates_the_readme_screenshots(project, tmp_path):
    """tools/screens.py (make screens) on the project's own runs, in headless Chromium."""
    if not any(shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")):
        pytest.skip("no Chromium on PATH: make screens needs one")
    dest, _ = project
    out = sh(sys.executable, str(dest / "tools" / "screens.py"), "--out", str(tmp_path / "screens"), cwd=dest).stdout
    names = {"mlflow_runs.png", "mlflow_model_version.png", "dvc_plots.png", "dvc_plots_models.png"}
    assert {Path(line).name for line in out.split()} == names
    from PIL import Image

    for name in names:
        with Image.open(tmp_path / "screens" / name) as png:
            colours = len(set(png.convert("RGB").resize((200, 200)).getdata()))
        assert colours > 50, f"{name} looks blank ({colours} colours)"


def test_the_app_serves_the_champion_with_its_threshold_and_predicts_scores(project, tmp_path):
    """`deepfake-detect app` in the project after `dvc repro` (what `make app` runs after `make
    demo`): the champion's page answers on loopback with the registered threshold, and a test
    image gets the probability `predict` gives it."""
    dest, _ = project
    image = sorted((dest / "data" / "test").rglob("*.jpg"))[0]
    uri, out = "models:/deepfake-detector@champion", tmp_path / "p.json"
    sh("deepfake-detect", "predict", "--model", uri, str(image), "--output", str(out), cwd=dest)
    (expected,) = json.loads(out.read_text())
    port, log_path = free_port(), tmp_path / "app.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["deepfake-detect", "app", "--port", str(port)],
            cwd=dest,
            env=command_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/ping", proc, log_path, 180)
        with urllib.request.urlopen(f"{base}/api/model", timeout=30) as response:
            info = json.loads(response.read())
        registered = json.loads((dest / "metrics" / "registered.json").read_text())
        assert info["alias"] == "champion" and info["threshold"] == pytest.approx(registered["threshold"])
        assert info["test_auc"] == pytest.approx(registered["test_auc"])
        request = urllib.request.Request(f"{base}/api/score?name={image.name}", data=image.read_bytes(), method="POST")
        with urllib.request.urlopen(request, timeout=120) as response:
            (row,) = json.loads(response.read())["rows"]
        assert row["probability_fake"] == pytest.approx(expected["probability_fake"], abs=1e-6)
        assert row["label"] == expected["label"]
        with urllib.request.urlopen(f"{base}/", timeout=30) as response:
            assert "Deepfake detector" in response.read().decode()
    finally:
        stop(proc)
