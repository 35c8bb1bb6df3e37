"""The network registry: one spec per network, from which names, settings and CLI choices derive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from deepfake_detection.config import ModelsParams, Params
from deepfake_detection.models import MODEL_NAMES, SPECS, TRANSFER_MODELS, final_stage
from deepfake_detection.models.registry import NetworkParams, network


def _python(code: str) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_names_settings_and_stages_derive_from_the_specs():
    assert MODEL_NAMES == (
        "resnet50",
        "efficientnet_b0",
        "light_se_cnn",
        "efficientnet_b0_dual_attention",
        "residual_cooc",
        "block_dct",
    )
    assert TRANSFER_MODELS == tuple(n for n in MODEL_NAMES if SPECS[n].transfer)
    assert ModelsParams().names() == list(MODEL_NAMES)
    assert Params().finetune.models == list(TRANSFER_MODELS)
    assert {m: final_stage(m) for m in MODEL_NAMES} == {
        "resnet50": "finetune",
        "efficientnet_b0": "finetune",
        "light_se_cnn": "train",
        "efficientnet_b0_dual_attention": "finetune",
        "residual_cooc": "train",
        "block_dct": "train",
    }
    assert {m for m in MODEL_NAMES if SPECS[m].view == "native"} == {"residual_cooc", "block_dct"}
    assert {m for m in MODEL_NAMES if SPECS[m].fit == "linear"} == {"residual_cooc", "block_dct"}
    for name in TRANSFER_MODELS:
        assert SPECS[name].application and SPECS[name].backbone_output, name
    with pytest.raises(ValueError, match="unknown model 'vgg16'"):
        final_stage("vgg16")


def test_a_network_is_registered_once_and_a_transfer_network_names_its_backbone():
    class Toy(NetworkParams):
        pass

    with pytest.raises(ValueError, match="registered twice"):
        network("resnet50", params=Toy)(lambda *a, **k: None)
    with pytest.raises(ValueError, match="application and backbone_output"):
        network("toy_transfer", params=Toy, transfer=True)(lambda *a, **k: None)
    assert "toy_transfer" not in SPECS


def test_registering_a_toy_network_in_one_place_adds_it_everywhere():
    """One decorator next to the builder: names, settings (validated, unknown keys named), ensemble
    defaults, the CLI's choices and build_model all know the network."""
    out = _python("""
        import json
        from pydantic import Field
        from deepfake_detection.models.registry import NetworkParams, network

        class ToyParams(NetworkParams):
            width: int = Field(4, ge=1)

        @network("toy", params=ToyParams)
        def build_toy(image_size, params, *, backbone_trainable=True):
            import keras
            inputs = keras.Input((image_size, image_size, 3), name="image")
            x = keras.layers.Conv2D(params.width, 3, name="conv")(inputs)
            x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
            return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="probability_fake")(x),
                               name="toy")

        from click.testing import CliRunner
        from deepfake_detection.cli import cli
        from deepfake_detection.config import ConfigError, parse_params
        from deepfake_detection.models import MODEL_NAMES, TRANSFER_MODELS, final_stage

        p = parse_params({"models": {"toy": {"width": 2}}})
        try:
            parse_params({"models": {"toy": {"widht": 2}}})
            error = ""
        except ConfigError as err:
            error = str(err)
        from deepfake_detection.models.zoo import build_model
        model = build_model("toy", 32, p.models)
        print(json.dumps({
            "names": MODEL_NAMES, "transfer": TRANSFER_MODELS, "final": final_stage("toy"),
            "width": p.models.toy.width, "members": p.ensemble.members, "error": error,
            "train_help": CliRunner().invoke(cli, ["train", "--help"]).output,
            "finetune_help": CliRunner().invoke(cli, ["finetune", "--help"]).output,
            "model": [model.name, list(model.output.shape)],
        }))
    """)
    got = json.loads(out)
    assert got["names"][-1] == "toy" and "toy" not in got["transfer"] and got["final"] == "train"
    assert got["width"] == 2 and "toy" in got["members"]
    assert "models.toy.widht: unknown key" in got["error"]
    assert "toy" in got["train_help"] and "toy" not in got["finetune_help"]
    assert got["model"] == ["toy", [None, 1]]


def test_the_cli_and_the_settings_read_the_names_without_tensorflow():
    loaded = _python("""
        import sys
        from deepfake_detection.cli import cli
        from deepfake_detection.config import load_params
        from deepfake_detection.models import MODEL_NAMES
        print(sorted(m for m in ("tensorflow", "keras", "mlflow") if m in sys.modules))
    """)
    assert loaded == "[]"
