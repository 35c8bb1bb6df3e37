"""The register stage's choice (validation only) and the champion alias's promotion gate,
against a real SQLite MLflow registry."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from deepfake_detection import champion as gate
from deepfake_detection.evaluation.selection import auc_standard_error, pick_best


def _result(name, val_auc, test_auc, kind="single", val_eer=0.3):
    return {
        "model": name,
        "kind": kind,
        "threshold": 0.5,
        "threshold_method": "youden",
        "val": {"auc": val_auc, "eer": val_eer},
        "test": {"tuned": {"auc": test_auc}},
    }


def test_the_champion_is_chosen_on_validation_never_on_test():
    results = [_result("a", 0.80, 0.99), _result("b", 0.90, 0.50)]
    assert pick_best(results, "val_auc")["model"] == "b"
    results[0]["test"]["tuned"]["auc"] = 1.0  # test results cannot change the choice
    assert pick_best(results, "val_auc")["model"] == "b"


def test_lower_is_better_metrics_and_ties_prefer_a_single_model():
    results = [_result("a", 0.8, 0.8, val_eer=0.10), _result("b", 0.9, 0.9, val_eer=0.20)]
    assert pick_best(results, "val_eer")["model"] == "a"
    tie = [_result("ens", 0.9, 0.9, kind="ensemble"), _result("one", 0.9, 0.9)]
    assert pick_best(tie, "val_auc")["model"] == "one"
    with pytest.raises(FileNotFoundError, match="dvc repro"):
        pick_best([], "val_auc")


def _counted(result, fake, real):
    result["val"].update(tp=fake, fn=0, tn=real, fp=0)  # the counts an AUC's standard error needs
    return result


def test_a_single_model_within_the_standard_error_beats_a_better_ensemble():
    """register.simpler_within_se: on 81 validation images (35 fake) the standard error of an AUC
    of 0.872 is 0.042 (Hanley and McNeil), so a single model at 0.866 is kept over the ensemble;
    on 800 images (se 0.013) the same gap is not noise and the ensemble wins."""
    assert auc_standard_error(0.872, 35, 46) == pytest.approx(0.0423, abs=1e-3)
    assert auc_standard_error(0.5, 10, 10) == pytest.approx(0.1323, abs=1e-3)  # (0.25 + 2 * 9/12) / 100
    small = [_counted(_result("stack", 0.872, 0.9, kind="ensemble"), 35, 46), _result("forensic", 0.866, 0.9)]
    small.append(_result("cnn", 0.80, 0.9))
    assert pick_best(small, "val_auc")["model"] == "stack"  # off by default: the best value wins
    assert pick_best(small, "val_auc", within_se=1.0)["model"] == "forensic"  # the best single one
    assert pick_best(small, "val_auc", within_se=0.1)["model"] == "stack"  # 0.006 > 0.1 se
    large = [_counted(_result("stack", 0.872, 0.9, kind="ensemble"), 350, 460), _result("forensic", 0.85, 0.9)]
    assert pick_best(large, "val_auc", within_se=1.0)["model"] == "stack"
    with pytest.raises(ValueError, match="AUC metric"):
        pick_best(small, "val_eer", within_se=1.0)


def test_simpler_within_se_is_refused_for_a_metric_without_a_standard_error():
    from deepfake_detection.config import RegisterParams

    assert RegisterParams(metric="val_robust_auc", simpler_within_se=1.0).simpler_within_se == 1.0
    with pytest.raises(ValueError, match="simpler_within_se needs metric val_auc or val_robust_auc"):
        RegisterParams(metric="val_f1", simpler_within_se=1.0)


@pytest.fixture
def versions(in_tmp):
    """Three registered versions of a small real pyfunc model, tagged with their val_auc."""
    uri = f"sqlite:///{in_tmp / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("registry-test")  # not the experiment an earlier test made active elsewhere

    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    client = MlflowClient()
    out = []
    for val_auc in (0.80, 0.70, 0.90):
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model", python_model=Constant(), registered_model_name="det", pip_requirements=["mlflow"]
            )
        v = str(info.registered_model_version)
        client.set_model_version_tag("det", v, "val_auc", str(val_auc))
        out.append((v, val_auc))
    return out


def test_promotion_gate_moves_the_alias_only_for_a_better_version(versions):
    client = MlflowClient()
    (v1, a1), (v2, a2), (v3, a3) = versions
    first = gate.promote("det", v1, "champion", "val_auc", a1)
    assert first.promoted and "no version held" in first.reason
    worse = gate.promote("det", v2, "champion", "val_auc", a2)
    assert not worse.promoted and "does not beat" in worse.reason
    assert str(client.get_model_version_by_alias("det", "champion").version) == v1
    assert client.get_model_version("det", v2).tags["promotion"] == "not promoted"
    better = gate.promote("det", v3, "champion", "val_auc", a3)
    assert better.promoted and better.previous_version == v1
    assert str(client.get_model_version_by_alias("det", "champion").version) == v3


def test_force_overrides_the_gate(versions):
    (v1, a1), (v2, a2), _ = versions
    gate.promote("det", v1, "champion", "val_auc", a1)
    forced = gate.promote("det", v2, "champion", "val_auc", a2, force=True)
    assert forced.promoted and "forced" in forced.reason
    assert str(MlflowClient().get_model_version_by_alias("det", "champion").version) == v2
    assert MlflowClient().get_model_version("det", v2).tags["promotion_reason"] == forced.reason


def test_a_version_is_created_with_its_tags_and_a_killed_runs_versions_are_repaired(versions):
    """``kill -9`` during register once left a READY version without tags (no threshold): the
    version is now created with its tags in one call, and a version whose gate never decided
    (the run was killed before it) is tagged ``promotion: interrupted`` by the next run."""
    client = MlflowClient()
    (v1, a1), (v2, _), (v3, _) = versions  # none has been through the gate
    gate.promote("det", v1, "champion", "val_auc", a1)
    source = client.get_model_version("det", v1).source
    v4 = gate.register_version("det", source, None, None, {"threshold": 0.42, "val_auc": 0.5}, "with its tags")
    created = client.get_model_version("det", v4)
    assert created.tags["threshold"] == "0.42" and created.description == "with its tags"

    assert sorted(gate.repair("det", "champion"), key=int) == [v2, v3, v4]
    for v in (v2, v3, v4):
        tags = client.get_model_version("det", v).tags
        assert tags["promotion"] == gate.INTERRUPTED and "stopped before the gate decided" in tags["promotion_reason"]
    assert client.get_model_version("det", v1).tags["promotion"] == "promoted"  # the champion is left alone
    assert str(client.get_model_version_by_alias("det", "champion").version) == v1
    assert gate.repair("det", "champion") == []  # nothing left to repair
    assert gate.repair("no-such-model", "champion") == []


# ----------------------------------------------------------------------------- the gate on current data
# The gate must compare numbers measured on the same images: the champion's stored val_auc was
# earned on the validation split of ITS data, so register scores it again on the current split.


def _detector(tmp, sign: float) -> Path:
    """A real DeepfakeDetector around a tiny Keras model: P(fake) rises with brightness (sign +1)
    or falls with it (sign -1)."""
    import keras
    import numpy as np

    inp = keras.Input((32, 32, 3))
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(inp))
    model = keras.Model(inp, out)
    model.layers[-1].set_weights([np.full((3, 1), sign * 0.01, np.float32), np.array([-sign * 3.825], np.float32)])
    path = tmp / f"bright_{'fake' if sign > 0 else 'real'}.keras"
    model.save(path)
    return path


def _register(keras_path, val_auc: float) -> str:
    from deepfake_detection.serving.pyfunc import log_detector

    with mlflow.start_run():
        info = log_detector([keras_path], 0.5, 32, registered_model_name="det")
    v = str(info.registered_model_version)
    MlflowClient().set_model_version_tag("det", v, "val_auc", str(val_auc))
    return v


def _split(tmp, name: str, fakes_bright: bool):
    """A validation split of 32 px gray PNGs (reals dark, fakes bright, or the reverse) with a
    challenger's validation scores whose AUC is 22/25 = 0.88."""
    import pandas as pd
    from PIL import Image

    folder = tmp / name
    folder.mkdir()
    y = [0] * 5 + [1] * 5
    levels = [20, 40, 60, 80, 100, 150, 170, 190, 210, 230]
    if not fakes_bright:
        levels = levels[::-1]
    files = []
    for i, level in enumerate(levels):
        f = folder / f"{i}.png"
        Image.new("RGB", (32, 32), (level,) * 3).save(f)
        files.append(str(f))
    challenger = [0.1, 0.2, 0.3, 0.4, 0.6, 0.35, 0.5, 0.7, 0.8, 0.9]
    return pd.DataFrame({"path": files, "y": y, "probability": challenger})


@pytest.fixture
def gate_store(in_tmp):
    uri = f"sqlite:///{in_tmp / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("registry-gate-test")
    return in_tmp


def test_the_gate_rescores_the_champion_on_the_current_validation_split(gate_store):
    from sklearn.metrics import roc_auc_score

    from deepfake_detection.stages.register_gate import champion_rescorer

    client = MlflowClient()
    bright_fake = _detector(gate_store, +1.0)
    champion = _register(bright_fake, 0.60)  # its tag: 0.60, earned on its own (older) data
    assert gate.promote("det", champion, "champion", "val_auc", 0.60).promoted

    # Today's validation split: fakes are bright, so the champion separates it perfectly (AUC 1),
    # far better than its stale tag says. A challenger at 0.88 beats the tag, not the champion.
    val = _split(gate_store, "valid_a", fakes_bright=True)
    challenger_auc = roc_auc_score(val.y, val.probability)
    assert challenger_auc == pytest.approx(0.88)
    v2 = _register(_detector(gate_store, -1.0), challenger_auc)
    kept = gate.promote(
        "det", v2, "champion", "val_auc", challenger_auc, rescore=champion_rescorer("det", val, 0.5, "val_auc")
    )
    assert not kept.promoted, kept.reason
    assert kept.champion_value == pytest.approx(1.0) and kept.challenger_value == pytest.approx(0.88)
    assert "current validation split" in kept.reason and "stored tag says 0.6000" in kept.reason
    assert str(client.get_model_version_by_alias("det", "champion").version) == champion
    tags = client.get_model_version("det", v2).tags
    assert float(tags["gate_champion_val_auc"]) == pytest.approx(1.0)
    assert float(tags["gate_challenger_val_auc"]) == pytest.approx(0.88)
    assert tags["promotion"] == "not promoted"

    # The other way round: the champion's tag (0.99) is flattering, but on today's split (fakes
    # dark) it ranks every fake below every real. The old rule would keep it; the rescored gate
    # promotes the challenger.
    client.set_model_version_tag("det", champion, "val_auc", "0.99")
    val = _split(gate_store, "valid_b", fakes_bright=False)
    v3 = _register(bright_fake, 0.88)
    won = gate.promote("det", v3, "champion", "val_auc", 0.88, rescore=champion_rescorer("det", val, 0.5, "val_auc"))
    assert won.promoted, won.reason
    assert won.champion_value == pytest.approx(0.0) and won.challenger_value == pytest.approx(0.88)
    assert str(client.get_model_version_by_alias("det", "champion").version) == v3
    assert float(client.get_model_version("det", v3).tags["gate_champion_val_auc"]) == pytest.approx(0.0)


def test_a_champion_that_cannot_be_scored_falls_back_to_its_tag_and_says_so(versions):
    from deepfake_detection.stages.register_gate import champion_rescorer

    (v1, a1), (v2, a2), (v3, a3) = versions  # Constant pyfuncs: no probability_fake column
    gate.promote("det", v3, "champion", "val_auc", a3)
    val = _split(Path.cwd(), "valid", fakes_bright=True)
    decision = gate.promote("det", v1, "champion", "val_auc", a1, rescore=champion_rescorer("det", val, 0.5, "val_auc"))
    assert not decision.promoted  # 0.80 against the stored 0.90
    assert "could not be scored on the current validation split" in decision.reason
    assert "stored val_auc tag" in decision.reason
    assert decision.champion_value is None and decision.challenger_value is None
    assert "gate_champion_val_auc" not in MlflowClient().get_model_version("det", v1).tags


def test_a_champion_that_cannot_be_loaded_is_replaced_and_predict_names_the_failure(gate_store):
    """With the champion's model file truncated, register once kept it ("could not be scored ...
    'champion' stays") and predict said "File not found" about a file that exists."""
    from click.testing import CliRunner

    from deepfake_detection.cli import cli
    from deepfake_detection.stages.register_gate import champion_rescorer

    client = MlflowClient()
    champion = _register(_detector(gate_store, +1.0), 0.99)
    assert gate.promote("det", champion, "champion", "val_auc", 0.99).promoted
    (stored,) = [p for p in gate_store.rglob("*.keras") if "mlruns" in p.parts or "artifacts" in p.parts]
    stored.write_bytes(stored.read_bytes()[:1000])  # truncated

    val = _split(gate_store, "valid", fakes_bright=True)
    challenger = _register(_detector(gate_store, -1.0), 0.60)
    decision = gate.promote(
        "det", challenger, "champion", "val_auc", 0.60, rescore=champion_rescorer("det", val, 0.5, "val_auc")
    )
    assert decision.promoted, decision.reason
    assert decision.reason.startswith(f"version {champion}, the champion, cannot be loaded: models:/det/{champion}")
    assert "not a valid .keras archive (truncated or corrupt)" in decision.reason
    assert str(client.get_model_version_by_alias("det", "champion").version) == challenger
    assert client.get_model_version("det", challenger).tags["promotion_reason"] == decision.reason
    assert "truncated or corrupt" in client.get_model_version("det", champion).tags["unloadable"]

    result = CliRunner().invoke(cli, ["predict", "--model", f"models:/det/{champion}", val.path[0]])
    assert result.exit_code == 1
    assert "is not a valid .keras archive (truncated or corrupt)" in result.output
    assert "File not found" not in result.output and "Traceback" not in result.output


def test_the_challenger_is_scored_only_on_predictions_of_the_current_validation_split(in_tmp):
    import pandas as pd

    from deepfake_detection import paths
    from deepfake_detection.data.manifest import MANIFEST_COLUMNS
    from deepfake_detection.stages.register_gate import validation_predictions

    rows = [{"path": f"data/valid/real/{i}.png", "label": "real", "split": "valid"} for i in range(3)]
    manifest = pd.DataFrame(rows).reindex(columns=list(MANIFEST_COLUMNS), fill_value="")
    paths.MANIFEST.parent.mkdir(parents=True)
    manifest.to_csv(paths.MANIFEST, index=False)
    preds = pd.DataFrame(
        {"path": [r["path"] for r in rows], "label": "real", "y": 0, "subgroup": "", "probability": [0.1, 0.2, 0.3]}
    )
    out = paths.predictions("m", "valid")
    out.parent.mkdir(parents=True)
    preds.to_csv(out, index=False)
    best = {"model": "m", "kind": "single"}
    assert validation_predictions(best).probability.tolist() == pytest.approx([0.1, 0.2, 0.3])
    preds.iloc[:2].to_csv(out, index=False)  # predictions of another (older) split
    with pytest.raises(ValueError, match="not those of the current validation split"):
        validation_predictions(best)


def _stage_inputs(root: Path, fakes_bright: bool, challenger_auc_scores) -> None:
    """What `register` reads after `dvc repro`: evaluation results of every model and ensemble
    (light_se_cnn the best by val_auc), its .keras file, its validation predictions, the manifest."""
    import json
    import shutil

    import pandas as pd

    from deepfake_detection import paths
    from deepfake_detection.data.manifest import MANIFEST_COLUMNS
    from deepfake_detection.evaluation.ensemble import KINDS

    for folder in ("data", "artifacts", "metrics"):
        shutil.rmtree(root / folder, ignore_errors=True)
    val = _split(root, "data", fakes_bright)  # data/0.png ... data/9.png
    val["path"] = [str(Path(p).relative_to(root)) for p in val.path]
    val["probability"] = challenger_auc_scores
    manifest = pd.DataFrame({"path": val.path, "label": ["real"] * 5 + ["fake"] * 5, "split": "valid"})
    paths.MANIFEST.parent.mkdir(parents=True)
    manifest.reindex(columns=list(MANIFEST_COLUMNS), fill_value="").to_csv(paths.MANIFEST, index=False)
    out = paths.predictions("light_se_cnn", "valid")
    out.parent.mkdir(parents=True)
    val.assign(label=manifest.label, subgroup="")[["path", "label", "y", "subgroup", "probability"]].to_csv(
        out, index=False
    )
    model = paths.model_file("light_se_cnn", "train")
    model.parent.mkdir(parents=True)
    shutil.copy(_detector(root, -1.0), model)

    from deepfake_detection.evaluation.metrics import binary_metrics

    test = binary_metrics([0, 1, 0, 1], [0.4, 0.6, 0.6, 0.4], 0.5)  # every key a test report has (the model card)

    def result(name, kind, val_auc):
        return {
            "model": name,
            "kind": kind,
            "threshold": 0.5,
            "threshold_method": "youden",
            "val": {"auc": val_auc, "f1": 0.5},
            "test": {"tuned": test, "0.5": test},
            "test_auc_ci95": {"low": 0.4, "high": 0.6},
        }

    from deepfake_detection.models import MODEL_NAMES

    for name in MODEL_NAMES:
        f = paths.stage_metrics("evaluate", name)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(result(name, "single", 0.88 if name == "light_se_cnn" else 0.5)))
    for kind in KINDS:
        f = paths.stage_metrics("ensemble", f"ensemble_{kind}")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(result(f"ensemble_{kind}", "ensemble", 0.4)))


def test_register_stage_records_both_rescored_numbers(gate_store):
    import json

    from deepfake_detection import paths
    from deepfake_detection.config import parse_params
    from deepfake_detection.stages import register

    params = parse_params(
        {"data": {"image_size": 32}, "register": {"model_name": "det"}, "mlflow": {"experiment": "registry-gate-test"}}
    )
    champion = _register(_detector(gate_store, +1.0), 0.99)  # a flattering tag from other data
    gate.promote("det", champion, "champion", "val_auc", 0.99)

    # Today's split has dark fakes: the champion scores 0 there, the challenger 0.88.
    _stage_inputs(
        gate_store, fakes_bright=False, challenger_auc_scores=[0.1, 0.2, 0.3, 0.4, 0.6, 0.35, 0.5, 0.7, 0.8, 0.9]
    )
    out = register.run(params)
    assert out["promoted"], out["reason"]
    assert out["gate_challenger_val_auc"] == pytest.approx(0.88) and out["gate_champion_val_auc"] == pytest.approx(0.0)
    assert out["champion_version"] == champion
    on_disk = json.loads(paths.REGISTER_METRICS.read_text())
    assert on_disk["gate_champion_val_auc"] == pytest.approx(0.0) and on_disk["reason"] == out["reason"]
    tags = MlflowClient().get_model_version("det", str(out["version"])).tags
    assert float(tags["gate_challenger_val_auc"]) == pytest.approx(0.88)
    assert float(tags["val_auc"]) == pytest.approx(0.88)
    # few tags, so that `threshold` is easy to find; every metric in one JSON tag
    assert float(tags["threshold"]) == 0.5 and tags["test_auc_ci95"] == "0.4000-0.6000"
    every = json.loads(tags["metrics"])
    assert every["val"] == {"auc": 0.88, "f1": 0.5} and every["test"]["auc"] == 0.5 and every["test"]["f1"] == 0.5
    description = MlflowClient().get_model_version("det", str(out["version"])).description
    assert description.startswith("# Model card: det version") and "## Limitations" in description
    assert not any(k.startswith("test_f1") or k == "val_f1" for k in tags) and len(tags) <= 20, sorted(tags)
    model = MlflowClient().get_registered_model("det")
    assert "fake" in model.description and "Decision rule" in model.description
    assert model.tags["positive_label"] == "1 = fake" and "threshold" in model.tags["decision_rule"]
    assert "label 1 = fake" in MlflowClient().get_model_version("det", str(out["version"])).description
    compact = json.loads(paths.REGISTERED.read_text())  # the register stage's DVC metrics file
    assert compact == {"val_auc": 0.88, "test_auc": 0.5, "test_auc_low": 0.4, "test_auc_high": 0.6, "threshold": 0.5}


def test_a_register_run_that_fails_keeps_the_previous_register_metrics(gate_store, monkeypatch):
    import socket

    from deepfake_detection import paths
    from deepfake_detection.config import parse_params
    from deepfake_detection.stages import register

    _stage_inputs(gate_store, fakes_bright=True, challenger_auc_scores=[0.1] * 5 + [0.9] * 5)
    paths.REGISTER_METRICS.write_text('{"version": 7}')
    paths.REGISTERED.write_text('{"val_auc": 0.7}')
    with socket.socket() as s:  # a tracking server that is not there
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{s.getsockname()[1]}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    params = parse_params({"data": {"image_size": 32}, "register": {"model_name": "det"}})
    with pytest.raises(Exception):  # noqa: B017 - whatever the client raises for a dead server
        register.run(params)
    assert paths.REGISTER_METRICS.read_text() == '{"version": 7}'
    assert paths.REGISTERED.read_text() == '{"val_auc": 0.7}'
    assert sorted(p.name for p in paths.REGISTER_METRICS.parent.iterdir() if p.is_file()) == [
        "register.json",
        "registered.json",
    ]


def test_register_turns_the_faces_flag_on_for_face_crops_and_rescores_them_as_crops(gate_store):
    """Trained on face crops (every manifest row has a crop box): the registered detector's
    metadata says faces (with data.faces' settings). The gate scores the champion on the
    validation images, which are crops already, with the face path off: 32 px gray squares hold
    no face, so with it on every image would fail and the gate would fall back to the tag."""
    import pandas as pd

    from deepfake_detection import paths
    from deepfake_detection.config import parse_params
    from deepfake_detection.data.manifest import CROP_BOX_COLUMNS, load_manifest
    from deepfake_detection.stages import register

    params = parse_params(
        {
            "data": {"image_size": 32, "faces": {"margin": 0.1}},
            "register": {"model_name": "det"},
            "mlflow": {"experiment": "registry-gate-test"},
        }
    )
    scores = [0.1, 0.2, 0.3, 0.4, 0.6, 0.35, 0.5, 0.7, 0.8, 0.9]
    _stage_inputs(gate_store, fakes_bright=False, challenger_auc_scores=scores)
    manifest = load_manifest(paths.MANIFEST)
    pd.concat([manifest, pd.DataFrame(0, index=manifest.index, columns=CROP_BOX_COLUMNS)], axis=1).to_csv(
        paths.MANIFEST, index=False
    )
    first = register.run(params)
    info = mlflow.models.get_model_info(first["model_uri"])
    assert info.metadata["faces"] is True
    assert info.metadata["face_settings"] == params.data.faces.model_dump()
    assert info.metadata["face_settings"]["margin"] == pytest.approx(0.1)

    second = register.run(params)  # the first is champion now, and is rescored on the crops
    assert second["gate_champion_val_auc"] == pytest.approx(1.0), second["reason"]  # dark fakes: P(fake) high
    assert "both on the current validation split" in second["reason"]

    manifest.to_csv(paths.MANIFEST, index=False)  # whole images: the flag stays off
    assert mlflow.models.get_model_info(register.run(params)["model_uri"]).metadata["faces"] is False


def test_register_keeps_the_patch_view_and_the_gate_rescores_the_champion_on_its_crop_grid(gate_store):
    """Under data.view: patches the registered detector scores the grid of native crops (its
    metadata says so), and the gate rescores the champion through that same path."""
    from deepfake_detection.config import parse_params
    from deepfake_detection.stages import register

    params = parse_params(
        {
            "data": {"image_size": 32, "view": "patches", "patch_size": 32},
            "register": {"model_name": "det"},
            "mlflow": {"experiment": "registry-gate-test"},
        }
    )
    _stage_inputs(
        gate_store, fakes_bright=False, challenger_auc_scores=[0.1, 0.2, 0.3, 0.4, 0.6, 0.35, 0.5, 0.7, 0.8, 0.9]
    )
    first = register.run(params)
    metadata = mlflow.models.get_model_info(first["model_uri"]).metadata
    assert metadata["view"] == "patches" and metadata["patch_size"] == 32
    second = register.run(params)  # the first is champion now, rescored on its crop grid
    assert second["gate_champion_val_auc"] == pytest.approx(1.0), second["reason"]
    assert "both on the current validation split" in second["reason"]
