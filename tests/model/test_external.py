"""The `external` stage: every final model and ensemble scored on a labelled folder outside the
training data, figures in metrics/external.json, reports/external.md and MLflow (real SQLite store).

Tiny project: four tiny Keras "detectors" (P(fake) rises or falls with brightness) saved where the
training stages save them, their thresholds, ensembles fit by evaluation/ensemble.py as the
ensemble stage fits them, and a folder of gray PNGs (reals dark, fakes bright) plus a broken file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from PIL import Image
from project_commands import params_text

from deepfake_detection import paths
from deepfake_detection.cli import cli
from deepfake_detection.config import parse_params
from deepfake_detection.evaluation.ensemble import KINDS, fit_ensemble
from deepfake_detection.models import MODEL_NAMES, SPECS, final_stage
from deepfake_detection.stages import external

EXPERIMENT = "test-external"
# +1: P(fake) rises with brightness (right on the folder below); -1: falls (AUC 0 there)
SIGNS = {
    "resnet50": 1.0,
    "efficientnet_b0": 0.5,
    "light_se_cnn": 2.0,
    "efficientnet_b0_dual_attention": -1.0,
    "residual_cooc": 1.5,  # the forensic networks take each image whole, at its own size (48x40 here)
    "block_dct": 0.8,
}
REALS, FAKES = [20, 40, 60, 80, 100], [150, 170, 190, 210, 230]  # gray levels
THRESHOLD = 0.5


def _params(folders: dict[str, str], view: str = "resize") -> dict:
    return {
        "data": {"image_size": 32, "batch_size": 4, "view": view, "patch_size": 32},
        "ensemble": {"members": list(MODEL_NAMES)},
        "evaluate": {"external": folders},
        "mlflow": {"experiment": EXPERIMENT},
    }


def _detector(path: Path, sign: float, native: bool = False) -> None:
    import keras

    inp = keras.Input((None, None, 3) if native else (32, 32, 3))
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(inp))
    model = keras.Model(inp, out)
    model.layers[-1].set_weights([np.full((3, 1), sign * 0.01, np.float32), np.array([-sign * 3.825], np.float32)])
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)


def _folder(root: Path) -> Path:
    """root/{real,fake}/ of 48x40 gray PNGs, one fake in a sub-folder, and one file that is no image."""
    for label, levels in (("real", REALS), ("fake", FAKES)):
        for i, level in enumerate(levels):
            f = root / label / ("deeper" if i == 0 else "") / f"{label}{i}.png"
            f.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (48, 40), (level,) * 3).save(f)
    (root / "fake" / "broken.jpg").write_bytes(b"this is not a JPEG")
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Models, thresholds and ensembles of a finished pipeline, and an outside folder."""
    root = tmp_path_factory.mktemp("external")
    for m, sign in SIGNS.items():
        _detector(root / paths.model_file(m, final_stage(m)), sign, native=SPECS[m].view == "native")
        tracking_file = root / paths.stage_metrics("threshold", m)
        tracking_file.parent.mkdir(parents=True, exist_ok=True)
        tracking_file.write_text(json.dumps({"threshold": THRESHOLD, "method": "youden"}))
    evaluate = root / paths.stage_metrics("evaluate", "light_se_cnn")
    evaluate.parent.mkdir(parents=True)
    evaluate.write_text(json.dumps({"test": {"tuned": {"auc": 0.9, "average_precision": 0.8, "eer": 0.2}}}))
    rng = np.random.default_rng(0)  # validation scores the ensembles are fit on, as the ensemble stage does
    y_val = np.array([0, 1] * 20)
    P_val = np.clip(0.5 + 0.3 * (y_val[:, None] - 0.5) + rng.normal(0, 0.2, (40, len(MODEL_NAMES))), 0, 1)
    for kind in KINDS:
        ens = fit_ensemble(kind, list(MODEL_NAMES), P_val, y_val, [THRESHOLD] * len(MODEL_NAMES))
        ens.threshold = 0.5
        out = root / paths.ensemble_file(f"ensemble_{kind}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(ens.to_dict()))
    _folder(root / "outside" / "other")
    return root


def _external_runs(root: Path) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([exp.experiment_id], "tags.stage = 'external'") if exp else []


@pytest.mark.parametrize("view", ["resize", "patches"])
def test_every_model_and_ensemble_is_scored_logged_and_reported(project, monkeypatch, view):
    monkeypatch.chdir(project)
    before = len(_external_runs(project))
    results = external.run(parse_params(_params({"other": "outside/other"}, view)))

    names = [*MODEL_NAMES, *(f"ensemble_{k}" for k in KINDS)]
    on_disk = json.loads(paths.EXTERNAL_METRICS.read_text())
    assert on_disk == json.loads(json.dumps(results)) and list(on_disk) == ["other"]
    assert sorted(on_disk["other"]) == sorted(names)
    for name, figures in on_disk["other"].items():
        assert set(figures) == {"auc", "ap", "eer", "accuracy", "n"}, name
        assert figures["n"] == 10, "the broken file is not scored, the ten images are"
    bright = on_disk["other"]["light_se_cnn"]  # P(fake) rises with brightness: perfect here
    assert bright["auc"] == pytest.approx(1.0) and bright["ap"] == pytest.approx(1.0)
    assert bright["eer"] == pytest.approx(0.0, abs=1e-9) and bright["accuracy"] == pytest.approx(1.0)
    dark = on_disk["other"]["efficientnet_b0_dual_attention"]  # the reverse: every call wrong at 0.5
    assert dark["auc"] == pytest.approx(0.0) and dark["accuracy"] == pytest.approx(0.0)
    assert dark["eer"] == pytest.approx(1.0)
    assert dark["ap"] == pytest.approx(np.mean([1 / 6, 2 / 7, 3 / 8, 4 / 9, 5 / 10]))  # fakes ranked last

    # the predictions of the ensembles come from the members' external scores, through Ensemble.predict
    soft = pd.read_csv(paths.EXTERNAL / "other" / "ensemble_soft_vote.csv")
    members = np.column_stack([pd.read_csv(paths.EXTERNAL / "other" / f"{m}.csv").probability for m in MODEL_NAMES])
    np.testing.assert_allclose(soft.probability, members.mean(axis=1), atol=1e-9)
    assert "real/deeper/real0.png" in set(soft.path) and len(soft) == 10

    # the broken file is counted, with its reason, never dropped silently
    files = pd.read_csv(paths.EXTERNAL / "files.csv", keep_default_na=False)
    assert len(files) == 11 and (files.error != "").sum() == 1
    assert files.loc[files.error != "", "path"].tolist() == ["fake/broken.jpg"]
    report = json.loads((paths.EXTERNAL / "report.json").read_text())["other"]
    assert (report["files"], report["scored"], report["unscored"]) == (11, 10, 1)
    assert sum(report["unscored_by_reason"].values()) == 1 and len(report["digest"]) == 32

    md = paths.EXTERNAL_REPORT.read_text()
    assert "in-domain test AUC" in md and "other AUC" in md and "not scored" in md.lower()
    row = next(line for line in md.splitlines() if line.startswith("| light_se_cnn "))
    assert "0.9000" in row and "1.0000" in row

    runs = _external_runs(project)[: len(_external_runs(project)) - before]  # newest first
    assert sorted(r.data.tags["model"] for r in runs) == sorted(names)
    by_model = {r.data.tags["model"]: r for r in runs}
    light = by_model["light_se_cnn"]
    assert light.info.run_name == "external-light_se_cnn" and light.info.status == "FINISHED"
    for key in ("auc", "ap", "eer", "accuracy"):
        assert light.data.metrics[f"external/other/{key}"] == pytest.approx(bright[key])
    assert light.data.metrics["external/other/n_unscored"] == 1
    assert light.data.metrics["in_domain/auc"] == pytest.approx(0.9)
    assert light.data.params["evaluate.external.other"] == "outside/other"
    assert float(light.data.params["threshold"]) == THRESHOLD
    assert by_model["ensemble_stacking"].data.params["ensemble.kind"] == "stacking"
    assert light.inputs.dataset_inputs[0].dataset.name.startswith("other@")


def test_a_split_dataset_is_scored_whole(project, monkeypatch, tmp_path):
    monkeypatch.chdir(project)
    split = tmp_path / "split"
    _folder(split / "test")
    _folder(split / "train")
    results = external.run(parse_params(_params({"split_set": str(split)})))
    assert results["split_set"]["light_se_cnn"]["n"] == 20


def test_an_empty_setting_writes_empty_outputs_and_logs_nothing(in_tmp):
    assert external.run(parse_params(_params({}))) == {}
    assert json.loads(paths.EXTERNAL_METRICS.read_text()) == {}
    assert "evaluate.external" in paths.EXTERNAL_REPORT.read_text()
    assert pd.read_csv(paths.EXTERNAL / "files.csv").empty
    assert not _external_runs(in_tmp)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda root: None, "does not exist"),
        (lambda root: (root / "images").mkdir(parents=True), "holds neither"),
        (lambda root: _folder(root / "nested" / "deeper"), "holds neither"),  # {real,fake} two levels down
        (lambda root: (_folder(root), *[p.unlink() for p in (root / "fake").rglob("*.*")]), "no fake images"),
    ],
)
def test_a_missing_or_empty_folder_is_a_clear_error_naming_the_key_and_path(in_tmp, make, expected):
    folder = in_tmp / "ext"
    make(folder)
    (in_tmp / "params.yaml").write_text(params_text(_params({"ciplab": "ext"})))
    result = CliRunner().invoke(cli, ["external", "--params", "params.yaml"])
    assert result.exit_code == 1, result.output
    assert "evaluate.external.ciplab (ext)" in result.output and expected in result.output, result.output
    assert "Traceback" not in result.output and not paths.EXTERNAL_METRICS.exists()


def test_a_set_without_a_decodable_image_of_a_class_is_an_error_not_a_crash(project, monkeypatch, tmp_path):
    monkeypatch.chdir(project)
    folder = _folder(tmp_path / "bad")
    for f in (folder / "fake").rglob("*.png"):
        f.write_bytes(b"")
    with pytest.raises(ValueError, match=r"evaluate.external.bad .*no decodable fake image \(6 of 11"):
        external.run(parse_params(_params({"bad": str(folder)})))


def test_set_names_must_be_safe_identifiers():
    from deepfake_detection.config import ConfigError

    with pytest.raises(ConfigError, match=r"evaluate.external: .*'my set' is not a safe identifier.*'my_set'"):
        parse_params(_params({"my set": "x"}))
    with pytest.raises(ConfigError, match="give the folder"):
        parse_params(_params({"ok": ""}))
