"""train.distribute: the model is built, compiled and trained inside a tf.distribute strategy.

TensorFlow fixes its logical devices when it first initialises them, so everything runs in a
fresh Python process that splits the CPU into two logical devices first: MirroredStrategy then
has two replicas, as on a machine with two GPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from deepfake_detection.config import ConfigError, parse_params

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras
    import mlflow
    import numpy as np

    from deepfake_detection.config import parse_params
    from deepfake_detection.training import compile_model, distributed, set_determinism

    out = {}
    # multi_worker without TF_CONFIG: one local worker (created first, as the strategy requires)
    with distributed(parse_params({"train": {"distribute": "multi_worker"}})) as strategy:
        mwms = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        out["multi_worker"] = [mwms, strategy.num_replicas_in_sync]


    def small_model():  # no BatchNormalization: per-replica batch statistics would differ by design
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Rescaling(1 / 255)(inputs)
        x = keras.layers.Conv2D(4, 3, activation="relu")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))


    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (32, 16, 16, 3)).astype("float32")
    y = (rng.uniform(size=32) < 0.5).astype("float32")
    for kind in ("none", "mirrored"):
        params = parse_params({"train": {"distribute": kind}, "data": {"batch_size": 8}})
        with distributed(params) as strategy:
            set_determinism(1)
            model = small_model()
            compile_model(model, 1e-2, params)
            ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(params.data.batch_size)
            first = next(iter(strategy.experimental_distribute_dataset(ds)))
            history = model.fit(ds, epochs=2, verbose=0, shuffle=False, class_weight={0: 1.0, 1: 2.0})
            out[kind] = {
                "strategy": type(strategy).__name__,
                "replicas": strategy.num_replicas_in_sync,
                "per_replica_batch": [int(t.shape[0]) for t in strategy.experimental_local_results(first[0])],
                "loss": history.history["loss"],
                "eval_loss": model.evaluate(ds, verbose=0, return_dict=True)["loss"],
                "weights": [w.tolist() for w in model.get_weights()],
            }

    # the train stage itself, mirrored over the two devices
    from deepfake_detection.data.sample import generate
    from deepfake_detection.stages import prepare, train

    os.chdir(sys.argv[1])
    generate("data", images_per_class=12, size=32, seed=2, progress=False)
    params = parse_params(
        {
            "data": {"image_size": 32, "batch_size": 8},
            "train": {"epochs": 1, "distribute": "mirrored"},
            "models": {"light_se_cnn": {"filters": [8, 16]}},
            "mlflow": {"experiment": "test-distribute"},
        }
    )
    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    prepare.run(params, progress=False)
    metrics = train.run("light_se_cnn", params)
    run = mlflow.search_runs(experiment_names=["test-distribute"], filter_string="tags.stage = 'train'",
                             output_format="list")[0]
    out["stage"] = {"metrics": metrics, "params": run.data.params}
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CONFIG", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path_factory.mktemp("distribute"))],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


def test_the_global_batch_is_split_across_two_replicas(result):
    assert result["none"]["replicas"] == 1
    assert result["mirrored"]["strategy"] == "MirroredStrategy" and result["mirrored"]["replicas"] == 2
    assert result["mirrored"]["per_replica_batch"] == [4, 4]  # data.batch_size 8 is the global batch
    assert result["none"]["per_replica_batch"] == [8]


def test_two_replicas_train_as_one_device_on_the_same_data(result):
    one, two = result["none"], result["mirrored"]
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5, abs=1e-6)
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-5, abs=1e-6)
    assert one["loss"][1] != pytest.approx(one["loss"][0], rel=1e-4)  # it did learn something
    for a, b in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-5)


def test_multi_worker_without_tf_config_is_one_local_worker(result):
    assert result["multi_worker"] == [True, 1]  # a MultiWorkerMirroredStrategy, one CPU replica


def test_the_train_stage_runs_mirrored_and_logs_it(result):
    stage = result["stage"]
    assert stage["metrics"]["epochs_run"] == 1 and np.isfinite(stage["metrics"]["val_loss"])
    assert stage["params"]["distribute"] == "mirrored" and stage["params"]["replicas"] == "2"
    assert stage["params"]["global_batch_size"] == "8"


def test_distribute_is_validated():
    assert parse_params({}).train.distribute == "none"
    with pytest.raises(ConfigError, match="train.distribute"):
        parse_params({"train": {"distribute": "tpu"}})
