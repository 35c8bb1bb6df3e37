"""The model zoo: build, train a few steps, save/load, fine-tune flags, weights files, Grad-CAM layer.

Everything runs at 32 px (the transfer backbones' minimum) on a batch of 8 random images, with
weights "none": nothing here needs the internet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import h5py
import keras
import numpy as np
import pytest

from deepfake_detection.config import DualAttentionParams, LightSECNNParams, ModelsParams, TransferParams
from deepfake_detection.models import MODEL_NAMES, SPECS, TRANSFER_MODELS, zoo
from deepfake_detection.models.losses import BinaryFocalLoss

# The networks trained by gradient steps on fixed-size inputs (the forensic family, fixed features
# and a closed-form head at native resolution, has its own tests: test_forensic*.py).
CNN_NAMES = tuple(n for n in MODEL_NAMES if SPECS[n].fit == "gradient")

SIZE = 32
PARAMS = ModelsParams()
# No dropout: training-step losses are then a deterministic function of the weights.
NO_DROPOUT = ModelsParams(
    resnet50=TransferParams(dropout=0.0),
    efficientnet_b0=TransferParams(dropout=0.0),
    light_se_cnn=LightSECNNParams(dropout=0.0),
    efficientnet_b0_dual_attention=DualAttentionParams(dropout=0.0),
)
LAST_CONV = {
    "resnet50": "conv5_block3_out",
    "efficientnet_b0": "top_activation",
    "light_se_cnn": "block3_se_scale",
    "efficientnet_b0_dual_attention": "attention_spatial_scale",
}


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(8, SIZE, SIZE, 3)).astype("float32")
    y = np.array([0, 1] * 4, dtype="float32")[:, None]
    return x, y


@pytest.fixture(scope="module")
def built():
    """One model of each kind, never trained or modified by the tests that share it."""
    return {name: zoo.build_model(name, SIZE, PARAMS, seed=0) for name in CNN_NAMES}


def _backbone_weights(model):
    return {layer.name: layer.get_weights() for layer in zoo.backbone_layers(model) if layer.weights}


@pytest.mark.parametrize("name", CNN_NAMES)
def test_builds_and_predicts_probabilities(built, batch, name):
    model = built[name]
    out = np.asarray(model(batch[0], training=False))
    assert model.name == name
    assert model.input_shape == (None, SIZE, SIZE, 3) and model.inputs[0].name == "image"
    assert model.layers[-1].name == "probability_fake" and model.outputs[0].dtype == "float32"
    assert out.shape == (8, 1)
    assert np.all((out >= 0) & (out <= 1)) and np.all(np.isfinite(out))


def test_backbones_are_frozen_and_the_rest_trains(built):
    for name in TRANSFER_MODELS:
        model = built[name]
        assert not any(layer.trainable_weights for layer in zoo.backbone_layers(model)), name
        trainable = {v.path.split("/")[0] for v in model.trainable_weights}
        assert "probability_fake" in trainable
        if name == "efficientnet_b0_dual_attention":
            assert {"attention_channel_mlp_hidden", "attention_spatial_conv"} <= trainable
    light = built["light_se_cnn"]
    n_bn = sum(isinstance(layer, keras.layers.BatchNormalization) for layer in light.layers)
    assert all(layer.trainable for layer in light.layers)
    assert len(light.non_trainable_weights) == 2 * n_bn  # only the BN moving statistics


@pytest.mark.parametrize("name", CNN_NAMES)
def test_a_few_training_steps_lower_the_loss(batch, name):
    """The whole network learns: 5 Adam steps on one fixed batch lower its loss.

    Transfer models train whole here (``backbone_trainable=True``): with random weights a
    frozen EfficientNet's features are ~1e-6 (its SE gates shrink the signal block after block
    while its BN layers, frozen, cannot renormalise), so only the head's bias could move. The
    transfer models run eagerly (tracing them costs more than 5 eager steps); the light CNN
    goes through the compiled train function.
    """
    x, y = batch
    model = zoo.build_model(name, SIZE, NO_DROPOUT, seed=0, backbone_trainable=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=BinaryFocalLoss(), run_eagerly=name in TRANSFER_MODELS)
    # Each value is the loss before that step's update: the last one follows four updates.
    losses = [float(np.ravel(model.train_on_batch(x, y))[0]) for _ in range(5)]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses


def test_frozen_backbone_step_moves_only_attention_and_head(batch):
    """Baseline training (backbone frozen at build): a step updates attention + head, nothing else."""
    x, y = batch
    model = zoo.build_model("efficientnet_b0_dual_attention", SIZE, NO_DROPOUT, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=BinaryFocalLoss(), run_eagerly=True)
    before = {layer.name: layer.get_weights() for layer in model.layers if layer.weights}
    model.train_on_batch(x, y)
    moved = {
        name
        for name, weights in before.items()
        if any(not np.array_equal(w, v) for w, v in zip(weights, model.get_layer(name).get_weights()))
    }
    assert moved and all(n.startswith(("attention_", "head_", "probability_fake")) for n in moved), sorted(moved)
    assert "probability_fake" in moved and any(n.startswith("attention_channel") for n in moved)


def test_saved_models_load_without_our_package(built, batch, tmp_path):
    x, _ = batch
    np.save(tmp_path / "x.npy", x)
    expected = {}
    for name, model in built.items():
        model.save(tmp_path / f"{name}.keras")
        expected[name] = np.asarray(model(x, training=False))
    # A fresh interpreter that never imports deepfake_detection; safe mode (no Lambda, no custom layer).
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np, keras
        x = np.load("x.npy")
        out = {{}}
        for name in {list(CNN_NAMES)!r}:
            model = keras.models.load_model(name + ".keras", safe_mode=True)
            out[name] = np.asarray(model(x, training=False)).tolist()
        assert not any(m.startswith("deepfake_detection") for m in sys.modules), "package was imported"
        print(json.dumps(out))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    for name in CNN_NAMES:
        np.testing.assert_allclose(np.asarray(got[name]), expected[name], rtol=1e-5, atol=1e-6, err_msg=name)

    # A loaded model still works with the zoo's helpers (they go by layer names).
    loaded = keras.models.load_model(tmp_path / "efficientnet_b0_dual_attention.keras")
    assert zoo.last_conv_layer_name(loaded) == "attention_spatial_scale"
    assert not any(layer.trainable_weights for layer in zoo.backbone_layers(loaded))
    assert len(zoo.unfreeze_top(loaded, 20)) > 0


@pytest.mark.parametrize("name", TRANSFER_MODELS)
def test_unfreeze_top_opens_exactly_the_top_layers_but_no_batchnorm(name):
    model = zoo.build_model(name, SIZE, PARAMS, seed=0)
    backbone = zoo.backbone_layers(model)
    window = backbone[-10:]
    bn_in_window = [layer for layer in window if isinstance(layer, keras.layers.BatchNormalization)]
    before = len(model.trainable_weights)

    names = zoo.unfreeze_top(model, 10)

    assert names == [layer.name for layer in window if layer not in bn_in_window]
    assert len(names) + len(bn_in_window) == 10
    assert all(model.get_layer(n).trainable for n in names)
    assert not any(layer.trainable for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert not any(layer.trainable_weights for layer in backbone[:-10])
    assert len(model.trainable_weights) > before  # the window holds convolutions
    assert model.get_layer("probability_fake").trainable


def test_unfrozen_resnet_trains_the_window_and_keeps_batchnorm_statistics(batch):
    x, y = batch
    model = zoo.build_model("resnet50", SIZE, NO_DROPOUT, seed=0)
    zoo.unfreeze_top(model, 10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=BinaryFocalLoss(), run_eagerly=True)
    conv, bn, below = (model.get_layer(n) for n in ("conv5_block3_3_conv", "conv5_block3_3_bn", "conv5_block2_3_conv"))
    before = [layer.get_weights() for layer in (conv, bn, below)]
    model.train_on_batch(x, y)
    after = [layer.get_weights() for layer in (conv, bn, below)]
    assert not np.allclose(before[0][0], after[0][0])  # unfrozen conv moved
    for b, a in zip(before[1] + before[2], after[1] + after[2]):  # BN (incl. moving stats) and the conv below did not
        np.testing.assert_array_equal(b, a)


def test_unfreeze_top_rejects_light_cnn_and_bad_counts(built):
    with pytest.raises(ValueError, match="light_se_cnn"):
        zoo.unfreeze_top(built["light_se_cnn"], 10)
    with pytest.raises(ValueError, match="n must be"):
        zoo.unfreeze_top(zoo.build_model("resnet50", SIZE, PARAMS), 0)


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b0_dual_attention"])
def test_backbone_weights_file_round_trips(name, tmp_path):
    source = zoo.build_model(name, SIZE, PARAMS, seed=1)
    path = tmp_path / f"{name}_backbone.weights.h5"
    zoo.save_backbone_weights(source, path)

    params = PARAMS.model_copy(update={name: getattr(PARAMS, name).model_copy(update={"weights": str(path)})})
    target = zoo.build_model(name, 40, params, seed=2)  # another input size: the file does not care
    got, want = _backbone_weights(target), _backbone_weights(source)
    assert got.keys() == want.keys() and len(got) > 50
    for layer_name, weights in want.items():
        for g, w in zip(got[layer_name], weights):
            np.testing.assert_array_equal(g, w, err_msg=layer_name)
    assert not any(layer.trainable_weights for layer in zoo.backbone_layers(target))
    # The preprocessing constants are the model's, not the file's.
    for norm in (layer for layer in target.layers if isinstance(layer, keras.layers.Normalization) and layer.weights):
        np.testing.assert_allclose(norm.get_weights()[1], np.square(zoo.IMAGENET_STD_RGB), rtol=1e-6)


def test_keras_notop_h5_file_is_accepted(tmp_path):
    """The offline route: Keras's own ImageNet notop file (legacy .h5, as Keras 2 wrote it)."""
    from keras.src.legacy.saving import legacy_h5_format  # only to write a file in that format

    keras.utils.set_random_seed(5)
    app = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    path = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, app)

    model = zoo.build_model("resnet50", SIZE, ModelsParams(resnet50=TransferParams(weights=str(path))))
    for layer_name in ("conv1_conv", "conv3_block2_2_bn", "conv5_block3_3_conv"):
        for g, w in zip(model.get_layer(layer_name).get_weights(), app.get_layer(layer_name).get_weights()):
            np.testing.assert_array_equal(g, w)


@pytest.mark.filterwarnings("ignore:Skipping nested container")  # Keras, before it raises
def test_a_wrong_weights_file_says_what_it_expected(tmp_path):
    source = zoo.build_model("light_se_cnn", SIZE, PARAMS)
    path = tmp_path / "light.weights.h5"
    source.save_weights(path)
    with pytest.raises(ValueError, match="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        zoo.build_model("resnet50", SIZE, ModelsParams(resnet50=TransferParams(weights=str(path))))


def test_imagenet_without_internet_names_the_file_to_download(monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(RuntimeError, match="efficientnetb0_notop.h5"):
        zoo.build_model("efficientnet_b0", SIZE, ModelsParams(efficientnet_b0=TransferParams(weights="imagenet")))


@pytest.mark.parametrize("name", CNN_NAMES)
def test_last_conv_layer_feeds_grad_cam(built, batch, name):
    model = built[name]
    layer_name = zoo.last_conv_layer_name(model)
    assert layer_name == LAST_CONV[name]
    grad_model = keras.Model(model.input, [model.get_layer(layer_name).output, model.output])
    features, probs = grad_model(batch[0][:2])
    assert len(features.shape) == 4 and features.shape[0] == 2
    np.testing.assert_allclose(np.asarray(probs), np.asarray(model(batch[0][:2])), rtol=1e-5, atol=1e-6)


def test_resnet_preprocessing_matches_keras(built, batch):
    model = built["resnet50"]
    pre = keras.Model(model.input, model.get_layer("preprocess_caffe").output)
    x = batch[0]
    want = keras.applications.resnet50.preprocess_input(x.copy())
    np.testing.assert_allclose(np.asarray(pre(x)), want, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b0_dual_attention"])
def test_efficientnet_preprocessing_is_imagenet_mean_std(built, batch, name):
    model = built[name]
    norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))
    pre = keras.Model(model.input, norm.output)
    x = batch[0]
    want = (x / 255.0 - np.array(zoo.IMAGENET_MEAN_RGB)) / np.array(zoo.IMAGENET_STD_RGB)
    np.testing.assert_allclose(np.asarray(pre(x)), want, rtol=1e-5, atol=1e-5)


def test_light_cnn_rescales_to_unit_range(built, batch):
    model = built["light_se_cnn"]
    pre = keras.Model(model.input, model.get_layer("preprocess_rescale").output)
    np.testing.assert_allclose(np.asarray(pre(batch[0])), batch[0] / 255.0, rtol=1e-6)


def test_seed_makes_builds_reproducible():
    a, b = (zoo.build_model("light_se_cnn", SIZE, PARAMS, seed=7) for _ in range(2))
    c = zoo.build_model("light_se_cnn", SIZE, PARAMS, seed=8)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert not all(np.array_equal(wa, wc) for wa, wc in zip(a.get_weights(), c.get_weights()))


def test_light_cnn_follows_its_params():
    params = ModelsParams(light_se_cnn=LightSECNNParams(filters=[8, 16], se_ratio=4, dropout=0.5))
    model = zoo.build_model("light_se_cnn", 48, params)
    assert model.get_layer("block2_conv").filters == 16
    assert model.get_layer("block2_se_reduce").units == 4
    assert model.get_layer("head_dropout").rate == 0.5
    with pytest.raises(ValueError):
        model.get_layer("block3_conv")


def test_bad_names_and_sizes_are_rejected():
    with pytest.raises(ValueError, match="unknown model 'vgg16'"):
        zoo.build_model("vgg16", SIZE, PARAMS)
    with pytest.raises(ValueError, match=">= 32"):
        zoo.build_model("light_se_cnn", 16, PARAMS)
    with pytest.raises(ValueError, match=".weights.h5"):
        zoo.save_backbone_weights(zoo.build_model("resnet50", SIZE, PARAMS), "backbone.h5")
