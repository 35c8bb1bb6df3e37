"""The register stage's choice (validation only) and the champion alias's promotion gate,
against a real SQLite MLflow registry."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from deepfake_detection import registry
from deepfake_detection.stages.register import pick_best


def _result(name, val_auc, test_auc, kind="single", val_eer=0.3):
    return {"model": name, "kind": kind, "threshold": 0.5, "threshold_method": "youden",
            "val": {"auc": val_auc, "eer": val_eer}, "test": {"tuned": {"auc": test_auc}}}


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
            info = mlflow.pyfunc.log_model(name="model", python_model=Constant(), registered_model_name="det",
                                           pip_requirements=["mlflow"])
        v = str(info.registered_model_version)
        client.set_model_version_tag("det", v, "val_auc", str(val_auc))
        out.append((v, val_auc))
    return out


def test_promotion_gate_moves_the_alias_only_for_a_better_version(versions):
    client = MlflowClient()
    (v1, a1), (v2, a2), (v3, a3) = versions
    first = registry.promote("det", v1, "champion", "val_auc", a1)
    assert first.promoted and "no version held" in first.reason
    worse = registry.promote("det", v2, "champion", "val_auc", a2)
    assert not worse.promoted and "does not beat" in worse.reason
    assert str(client.get_model_version_by_alias("det", "champion").version) == v1
    assert client.get_model_version("det", v2).tags["promotion"] == "not promoted"
    better = registry.promote("det", v3, "champion", "val_auc", a3)
    assert better.promoted and better.previous_version == v1
    assert str(client.get_model_version_by_alias("det", "champion").version) == v3


def test_force_overrides_the_gate(versions):
    (v1, a1), (v2, a2), _ = versions
    registry.promote("det", v1, "champion", "val_auc", a1)
    forced = registry.promote("det", v2, "champion", "val_auc", a2, force=True)
    assert forced.promoted and "forced" in forced.reason
    assert str(MlflowClient().get_model_version_by_alias("det", "champion").version) == v2
    assert MlflowClient().get_model_version("det", v2).tags["promotion_reason"] == forced.reason
