"""The robustness stages on a tiny project: a light CNN trained for one epoch, its threshold and
evaluation, then `deepfake-detect robustness` through the CLI; the ensembles' and the report's
stages on hand-made scores. Real files, a real SQLite MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from project_commands import params_text

from deepfake_detection import paths
from deepfake_detection.cli import cli
from deepfake_detection.config import parse_params
from deepfake_detection.evaluation.ensemble import KINDS, fit_ensemble

MODEL = "light_se_cnn"
TINY = {
    "seed": 3,
    "data": {"image_size": 32, "batch_size": 8},
    "models": {MODEL: {"filters": [8, 16], "convs_per_block": 1, "epochs": 1}},
    "train": {"epochs": 1},
    "evaluate": {"gradcam_examples": 0},
    "mlflow": {"experiment": "test-robustness"},
}
PERTURBATIONS = ["clean", "jpeg_90", "jpeg_75", "jpeg_50", "blur_1", "blur_2", "downscale_50", "combined"]


def _runs(root, stage: str, model: str | None = None):
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("test-robustness")
    where = f"tags.stage = '{stage}'" + (f" and tags.model = '{model}'" if model else "")
    return client, client.search_runs([exp.experiment_id], filter_string=where)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny project where evaluate@light_se_cnn has run, then `deepfake-detect robustness`."""
    import os

    from deepfake_detection.data.sample import generate
    from deepfake_detection.stages import evaluate, prepare, threshold, train

    root = tmp_path_factory.mktemp("robustness")
    before = os.getcwd()
    os.chdir(root)
    try:
        generate(root / "data", images_per_class=24, size=40, seed=3, progress=False)
        (root / "params.yaml").write_text(params_text(TINY))
        params = parse_params(TINY)
        prepare.run(params, progress=False)
        train.run(MODEL, params)
        threshold.run(MODEL, params)
        evaluated = evaluate.run(MODEL, params)
        result = CliRunner().invoke(cli, ["robustness", MODEL, "--params", "params.yaml"])
    finally:
        os.chdir(before)
    assert result.exit_code == 0, result.output
    return root, params, evaluated, result.output


def test_the_stage_writes_every_perturbation_and_clean_matches_evaluate(project):
    root, _, evaluated, output = project
    result = json.loads((root / paths.stage_metrics("robustness", MODEL)).read_text())
    assert set(result) == {"threshold", "n", *PERTURBATIONS}
    clean = result["clean"]
    for name in PERTURBATIONS:
        assert set(result[name]) == {"auc", "accuracy", "auc_drop"}, name
        assert 0 <= result[name]["auc"] <= 1 and 0 <= result[name]["accuracy"] <= 1
        assert result[name]["auc_drop"] == pytest.approx(clean["auc"] - result[name]["auc"], abs=1e-12)
    assert clean["auc_drop"] == 0 and result["n"] == len(pd.read_csv(root / paths.predictions(MODEL, "test")))
    assert clean["auc"] == pytest.approx(evaluated["test"]["tuned"]["auc"], abs=1e-6)
    assert clean["accuracy"] == pytest.approx(evaluated["test"]["tuned"]["accuracy"], abs=1e-6)
    assert result["threshold"] == evaluated["threshold"]
    assert f"robustness {MODEL}: clean AUC" in output

    scores = pd.read_csv(root / paths.robustness_scores(MODEL))
    test = pd.read_csv(root / paths.predictions(MODEL, "test"))
    assert list(scores.path) == list(test.path) and list(scores.columns[4:]) == PERTURBATIONS
    np.testing.assert_allclose(scores.clean, test.probability, atol=1e-5)  # the same decode, the same scores
    assert not np.allclose(scores.combined, scores.clean, atol=1e-4), "the perturbations reach the model"
    plot = pd.read_csv(root / paths.robustness_plot(MODEL))
    assert list(plot.perturbation) == PERTURBATIONS and list(plot.columns[:3]) == ["perturbation", "auc", "accuracy"]


def test_the_mlflow_run_holds_the_metrics_the_figure_and_the_table(project):
    root, _, _, _ = project
    client, runs = _runs(root, "robustness", MODEL)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == f"robustness-{MODEL}" and run.info.status == "FINISHED"
    result = json.loads((root / paths.stage_metrics("robustness", MODEL)).read_text())
    for name in PERTURBATIONS:
        values = result[name]
        assert run.data.metrics[f"robustness/{name}/auc"] == pytest.approx(values["auc"])
        assert run.data.metrics[f"robustness/{name}/accuracy"] == pytest.approx(values["accuracy"])
        if name != "clean":
            assert run.data.metrics[f"robustness/{name}/auc_drop"] == pytest.approx(values["auc_drop"])
    assert run.data.params["robustness.combined"] == "downscale=0.5,blur=1.0,jpeg=75"
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "robustness")}
    assert {"robustness/auc.png", f"robustness/{MODEL}.csv", "robustness/metrics.json"} <= logged


def test_perturbed_scores_are_deterministic_and_the_patch_view_scores_like_predict_split(project, monkeypatch):
    from deepfake_detection.stages.robustness import perturbed_scores
    from deepfake_detection.stages.scoring import _score_native, load_final_model

    root, params, _, _ = project
    monkeypatch.chdir(root)
    model = load_final_model(MODEL)
    manifest = pd.read_csv(paths.MANIFEST, dtype={"subgroup": str}, keep_default_na=False)
    rows = manifest[manifest.split == "test"].head(5)
    noisy = params.model_copy(
        update={"robustness": parse_params({"robustness": {"perturbations": {"noise": {"noise": 6.0}}}}).robustness}
    )
    a = perturbed_scores(model, rows, noisy, chunk=2)  # chunked differently, same numbers
    b = perturbed_scores(model, rows, noisy, chunk=5)
    pd.testing.assert_frame_equal(a, b, atol=1e-6)

    patches = parse_params({**TINY, "data": {**TINY["data"], "view": "patches", "patch_size": 32}})
    by_patch = perturbed_scores(model, rows, patches)
    reference = _score_native(model, rows.path.astype(str), patches.data)
    np.testing.assert_allclose(by_patch.clean, reference, atol=1e-5)


# ----------------------------------------------------------------------------- ensembles and the report


def _hand_made_scores(names: list[str], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = np.array([0, 1] * 15)
    frames = {}
    for i, name in enumerate(names):
        clean = np.clip(0.5 + (y - 0.5) * (0.3 + 0.1 * i) + rng.normal(0, 0.2, len(y)), 0.01, 0.99)
        df = pd.DataFrame(
            {
                "path": [f"data/test/{j}.jpg" for j in range(len(y))],
                "label": np.where(y == 1, "fake", "real"),
                "y": y,
                "subgroup": "",
                "clean": clean,
                "jpeg_50": np.clip(clean + rng.normal(0, 0.25, len(y)), 0, 1),
                "blur_2": np.clip(0.5 + 0.2 * (clean - 0.5), 0, 1),
            }
        )
        frames[name] = df
    return frames


def _members_and_ensembles(in_tmp, report: bool = True):
    """Hand-made robustness scores of every network (their stage outputs) and the four ensembles'
    files fit on them (stand-ins for the ensemble stage's, threshold 0.4), with params.yaml."""
    from deepfake_detection.stages import robustness

    params = parse_params({"mlflow": {"experiment": "test-robustness"}})
    names = params.models.names()
    frames = _hand_made_scores(names)
    for name, df in frames.items():
        paths.robustness_scores(name).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(paths.robustness_scores(name), index=False)
        if report:
            robustness.report(name, "single", df, 0.5, params)
    y = frames[names[0]].y.to_numpy()
    P = np.column_stack([frames[n].clean.to_numpy() for n in names])
    for kind in KINDS:
        ens = fit_ensemble(kind, names, P, y, member_thresholds=[0.5] * len(names))
        ens.threshold = 0.4
        paths.ensemble_file(f"ensemble_{kind}").parent.mkdir(parents=True, exist_ok=True)
        paths.ensemble_file(f"ensemble_{kind}").write_text(json.dumps(ens.to_dict()))
    (in_tmp / "params.yaml").write_text(params_text({"mlflow": {"experiment": "test-robustness"}}))
    return params, names, frames, y


def test_the_ensembles_combine_their_members_stored_combination_and_the_report_joins_all(in_tmp):
    params, names, frames, y = _members_and_ensembles(in_tmp)

    runner = CliRunner()
    result = runner.invoke(cli, ["robustness-ensemble"])
    assert result.exit_code == 0, result.output
    weighted = json.loads(paths.stage_metrics("robustness", "ensemble_weighted").read_text())
    assert set(weighted) == {"threshold", "n", "clean", "jpeg_50", "blur_2"} and weighted["threshold"] == 0.4
    ens = json.loads(paths.ensemble_file("ensemble_weighted").read_text())
    from sklearn.metrics import roc_auc_score

    for column in ("clean", "blur_2"):
        combined = np.column_stack([frames[n][column].to_numpy() for n in names]) @ np.asarray(ens["weights"])
        assert weighted[column]["auc"] == pytest.approx(roc_auc_score(y, combined), abs=1e-9)
    _, runs = _runs(in_tmp, "robustness")
    assert {r.data.tags["model"] for r in runs} >= {f"ensemble_{k}" for k in KINDS}

    result = runner.invoke(cli, ["robustness-report"])
    assert result.exit_code == 0, result.output
    report = paths.ROBUSTNESS_MD.read_text()
    for name in [*names, *(f"ensemble_{k}" for k in KINDS)]:
        assert f"| {name}" in report, name
    assert "Test ROC AUC" in report and "accuracy at the tuned threshold" in report and "blur_2" in report
    table = pd.read_csv(paths.ROBUSTNESS_CSV)
    assert len(table) == (len(names) + len(KINDS)) * 3 and set(table.perturbation) == {"clean", "jpeg_50", "blur_2"}
    assert "Test ROC AUC" in result.output
    _, runs = _runs(in_tmp, "robustness-report")
    assert len(runs) == 1


def test_the_intervals_benchmark_prints_every_model_and_ensemble_with_the_evaluate_bootstrap(in_tmp):
    import subprocess
    import sys

    from sklearn.metrics import roc_auc_score

    from deepfake_detection.evaluation.metrics import auc_interval

    params, names, frames, y = _members_and_ensembles(in_tmp, report=False)
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "robustness_intervals.py"
    out = subprocess.run([sys.executable, str(script), str(in_tmp)], capture_output=True, text=True, check=True).stdout
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in out.splitlines()[2:]}
    assert set(rows) == {*names, *(f"ensemble_{k}" for k in KINDS)}
    clean = [float(cells[0].split()[0]) for cells in rows.values()]
    assert clean == sorted(clean, reverse=True), "best clean AUC first"
    header = [c.strip() for c in out.splitlines()[0].split("|")[2:-1]]
    assert header == ["clean", "jpeg_50", "blur_2"]
    for column in header:  # a member's cell: its AUC with the evaluate stage's seeded bootstrap
        p = frames[names[1]][column].to_numpy()
        low, high = auc_interval(y, p, seed=params.seed)
        assert rows[names[1]][header.index(column)] == f"{roc_auc_score(y, p):.3f} [{low:.3f}, {high:.3f}]"
    weights = np.asarray(json.loads(paths.ensemble_file("ensemble_weighted").read_text())["weights"])
    combined = np.column_stack([frames[n].blur_2.to_numpy() for n in names]) @ weights
    assert rows["ensemble_weighted"][header.index("blur_2")].startswith(f"{roc_auc_score(y, combined):.3f} [")


def test_the_ensembles_need_their_members_scores(in_tmp):
    for kind in KINDS:
        path = paths.ensemble_file(f"ensemble_{kind}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"kind": "soft_vote", "members": ["light_se_cnn", "resnet50"], "threshold": 0.5}))
    (in_tmp / "params.yaml").write_text(params_text({}))
    result = CliRunner().invoke(cli, ["robustness-ensemble"])
    assert result.exit_code != 0 and "robustness@light_se_cnn" in result.output


def test_a_sharded_dataset_is_perturbed_from_its_records(project, monkeypatch):
    """`ingest --shards` datasets: the manifest names records (<shard>#<name>), read in order."""
    import shutil

    from deepfake_detection.data import shards
    from deepfake_detection.data.manifest import build_manifest
    from deepfake_detection.stages.robustness import perturbed_scores
    from deepfake_detection.stages.scoring import load_final_model

    root, params, _, _ = project
    monkeypatch.chdir(root)
    shutil.copytree("data", "data_sharded")
    shards.pack(root / "data_sharded", 2, progress=False)
    manifest = build_manifest(root / "data_sharded", progress=False)
    plain = pd.read_csv(paths.MANIFEST, dtype={"subgroup": str}, keep_default_na=False)
    rows, files = manifest[manifest.split == "test"], plain[plain.split == "test"]
    assert rows.path.str.contains("#").all()
    model = load_final_model(MODEL)
    from_records = perturbed_scores(model, rows, params, chunk=3)
    from_files = perturbed_scores(model, files, params)
    by_name = {p.split("#", 1)[1].removeprefix("test/"): i for i, p in enumerate(from_records.path)}
    order = [by_name[p.split("/", 1)[1].removeprefix("test/")] for p in from_files.path]
    for column in ("clean", "jpeg_50", "combined"):
        np.testing.assert_allclose(from_records[column].to_numpy()[order], from_files[column], atol=1e-5)


# ----------------------------------------------------------------------------- the model card
# The register stage's own path (log, register, card) on this project's real stage outputs.


def _sections(card: str) -> dict[str, str]:
    parts = card.split("\n## ")
    return {part.split("\n", 1)[0].strip(): part.split("\n", 1)[1] for part in parts[1:]}


def test_a_registered_version_carries_its_model_card_with_the_runs_own_numbers(project, monkeypatch):
    from deepfake_detection import tracking
    from deepfake_detection.stages.register import log_and_register, version_tags_of

    root, params, evaluated, _ = project
    monkeypatch.chdir(root)
    best = json.loads(paths.stage_metrics("evaluate", MODEL).read_text())
    with tracking.stage_run("register", params, model=MODEL) as run:
        info, version = log_and_register(best, params, run, False, version_tags_of(best, "val_auc"))
    client = MlflowClient()
    mv = client.get_model_version("deepfake-detector", version)
    card = mv.description
    sections = _sections(card)
    assert set(sections) >= {
        "What it detects",
        "Training data",
        "Test metrics",
        "Robustness",
        "Training recipe",
        "Lineage",
        "How to load and call it",
        "Limitations",
    }, list(sections)

    assert f"probability_fake >= {best['threshold']:.4f}" in sections["What it detects"]
    assert "Label 1 = fake" in sections["What it detects"] and "youden" in sections["What it detects"]
    counts = json.loads(paths.DATA_METRICS.read_text())["counts"]
    assert f"test: {counts['test']['real']} real, {counts['test']['fake']} fake" in sections["Training data"]
    assert tracking.data_digest() in sections["Training data"]
    tuned, ci = best["test"]["tuned"], best["test_auc_ci95"]
    metrics = sections["Test metrics"]
    assert f"Test ROC AUC **{tuned['auc']:.4f}** (95% interval {ci['low']:.4f}-{ci['high']:.4f}" in metrics
    assert (
        f"| accuracy | {tuned['accuracy']:.3f} [" in metrics and f"{best['test']['0.5']['accuracy']:.3f} [" in metrics
    )
    assert f"expected calibration error {tuned['ece']:.3f}, Brier score {tuned['brier']:.3f}" in metrics

    robustness = json.loads(paths.stage_metrics("robustness", MODEL).read_text())
    worst = min(
        (k for k, v in robustness.items() if isinstance(v, dict) and k != "clean"), key=lambda k: robustness[k]["auc"]
    )
    assert f"**Worst perturbation: `{worst}`**" in sections["Limitations"]
    assert f"test AUC {robustness[worst]['auc']:.3f}" in sections["Limitations"]
    assert f"| {worst} |" in sections["Robustness"]
    assert "`light_se_cnn`" in sections["Training recipe"] and "32 x 32 px" in sections["Training recipe"]

    # lineage: each run id is that stage's run; the version's source run is the evaluate run
    train_run = json.loads(paths.stage_metrics("train", MODEL).read_text())["run_id"]
    for stage, run_id in (
        ("train", train_run),
        ("threshold", best["runs"]["threshold"]),
        ("evaluate", best["runs"]["evaluate"]),
    ):
        assert f"`{stage}-{MODEL}` run: `{run_id}`" in sections["Lineage"]
        assert client.get_run(run_id).data.tags["stage"] == stage
    assert mv.run_id == best["runs"]["evaluate"] and run.info.run_id in sections["Lineage"]
    evaluate_metrics = client.get_run(mv.run_id).data.metrics  # one row per model in the runs list
    assert {"val_auc", "test_auc", "test_auc_ci95_low", "test_auc_ci95_high", "threshold"} <= set(evaluate_metrics)
    assert evaluate_metrics["threshold"] == pytest.approx(best["threshold"])

    usage = sections["How to load and call it"]
    assert f'mlflow.pyfunc.load_model("models:/deepfake-detector/{version}")' in usage
    assert f"deepfake-detect predict --model models:/deepfake-detector/{version}" in usage and "curl -s" in usage

    # beside the model, which is named after its network; `deepfake-detect card` prints the same card
    assert "model_card.md" in {f.path for f in client.list_logged_model_artifacts(info.model_id)}
    assert client.get_logged_model(info.model_id).name == MODEL
    printed = CliRunner().invoke(cli, ["card", f"models:/deepfake-detector/{version}", "--params", "params.yaml"])
    assert printed.exit_code == 0, printed.output
    assert printed.output == card
    unknown = CliRunner().invoke(cli, ["card", "models:/no-such-model/1", "--params", "params.yaml"])
    assert unknown.exit_code != 0 and "no-such-model" in unknown.output
