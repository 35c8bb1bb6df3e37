"""The train and finetune stages on tiny data: MLflow run contents, saved models, determinism."""

from __future__ import annotations

import json
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest

from deepfake_detection import paths
from deepfake_detection.config import parse_params
from deepfake_detection.data.sample import generate
from deepfake_detection.stages import finetune, prepare, train

TINY = {
    "data": {"image_size": 32, "batch_size": 16},
    "train": {"epochs": 2},
    "finetune": {"epochs": 1, "unfreeze_layers": 4},
    "mlflow": {"experiment": "test-training"},
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-data")
    generate(root / "data", images_per_class=16, size=40, seed=3, progress=False)
    return root / "data"


@pytest.fixture
def project(in_tmp, dataset):
    shutil.copytree(dataset, in_tmp / "data")
    params = parse_params(TINY)
    prepare.run(params, progress=False)
    mlflow.set_tracking_uri(f"sqlite:///{in_tmp / 'mlflow.db'}")
    return params


def _run(stage: str, model: str):
    runs = mlflow.search_runs(
        experiment_names=["test-training"],
        output_format="list",
        filter_string=f"tags.stage = '{stage}' and tags.model = '{model}'",
    )
    assert len(runs) == 1
    return runs[0]


def test_train_stage_saves_model_metrics_history_and_logs_its_run(project):
    metrics = train.run("light_se_cnn", project)
    assert paths.model_file("light_se_cnn", "train").is_file()
    on_disk = json.loads(paths.stage_metrics("train", "light_se_cnn").read_text())
    assert on_disk == metrics and {"val_loss", "val_auc", "val_accuracy", "epochs_run"} <= set(metrics)
    history = paths.history_csv("train", "light_se_cnn").read_text().splitlines()
    assert history[0].startswith("epoch") and len(history) == 1 + metrics["epochs_run"]
    curve = pd.read_csv(paths.history_csv("train", "light_se_cnn"))  # the learning rate is a column, not NaN
    assert curve["learning_rate"].notna().all() and (curve["learning_rate"] > 0).all()

    run = _run("train", "light_se_cnn")
    assert run.info.run_name == "train-light_se_cnn"
    assert run.data.params["epochs"] == "2" and run.data.params["model.se_ratio"] == "8"
    client = mlflow.MlflowClient()
    assert len(client.get_metric_history(run.info.run_id, "val_auc")) == metrics["epochs_run"]
    assert len(client.get_metric_history(run.info.run_id, "learning_rate")) == metrics["epochs_run"]
    # the optimizer as a few named params, no doubled metric names, the run id beside the results
    assert run.data.params["optimizer.name"] == "adam" and not any(k.startswith("optimizer_") for k in run.data.params)
    assert "best_epoch" in run.data.metrics and not any(k.startswith("best_best") for k in run.data.metrics)
    assert metrics["run_id"] == run.info.run_id
    # the network is logged with the signature of its outputs (the registered detector holds the example)
    logged = mlflow.models.get_model_info(f"runs:/{run.info.run_id}/light_se_cnn")
    (spec,) = logged.signature.inputs.inputs
    assert tuple(spec.shape) == (-1, 32, 32, 3) and tuple(logged.signature.outputs.inputs[0].shape) == (-1, 1)


def test_same_seed_same_metrics(project, tmp_path):
    first = train.run("light_se_cnn", project)
    import keras

    w1 = keras.models.load_model(paths.model_file("light_se_cnn", "train"), compile=False).get_weights()
    second = train.run("light_se_cnn", project)
    w2 = keras.models.load_model(paths.model_file("light_se_cnn", "train"), compile=False).get_weights()
    # Op determinism makes these equal; the tolerance is far below what another seed or a
    # nondeterministic op changes, so the test stays about determinism, not float bit patterns.
    assert first["best_epoch"] == second["best_epoch"]
    for key in ("val_loss", "val_auc", "val_accuracy"):
        assert first[key] == pytest.approx(second[key], rel=1e-6, abs=1e-7), key
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_finetune_continues_from_the_baseline_with_the_top_layers_unfrozen(project):
    import keras

    from deepfake_detection.models.zoo import backbone_layers, build_model

    # the baseline as train@efficientnet_b0 saves it with weights "none": the whole network trainable
    # (the tiny pipeline's tests check the train stage logs backbone_trainable True for such a network)
    baseline = build_model("efficientnet_b0", 32, project.models, seed=0, backbone_trainable=True)
    paths.model_file("efficientnet_b0", "train").parent.mkdir(parents=True, exist_ok=True)
    baseline.save(paths.model_file("efficientnet_b0", "train"))
    metrics = finetune.run("efficientnet_b0", project)
    assert paths.model_file("efficientnet_b0", "finetune").is_file() and "val_auc" in metrics
    run = _run("finetune", "efficientnet_b0")
    assert run.data.params["unfreeze_layers"] == "4" and run.data.params["lr"] == "1e-05"
    assert int(run.data.params["trainable_params"]) > 0

    tuned = keras.models.load_model(paths.model_file("efficientnet_b0", "finetune"), compile=False)
    backbone = backbone_layers(tuned)
    trainable = [layer.name for layer in backbone if layer.trainable]
    # exactly the top 4 backbone layers, minus BatchNormalization, although the baseline trained it whole
    expected = [layer.name for layer in backbone[-4:] if not isinstance(layer, keras.layers.BatchNormalization)]
    assert trainable == expected and int(run.data.params["unfrozen_count"]) == len(expected)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) and layer.trainable for layer in tuned.layers)


def test_finetune_without_a_baseline_says_what_to_run(project):
    with pytest.raises(FileNotFoundError, match=r"dvc repro train@resnet50"):
        finetune.run("resnet50", project)
