from pathlib import Path

import pytest
import yaml

from deepfake_detection.config import ConfigError, Params, flatten, load_params, parse_params

ROOT = Path(__file__).resolve().parents[2]


def test_repo_params_are_valid_and_match_defaults_where_documented():
    p = load_params(ROOT / "params.yaml")
    assert isinstance(p, Params)
    assert p.models.names() == [
        "resnet50",
        "efficientnet_b0",
        "light_se_cnn",
        "efficientnet_b0_dual_attention",
        "residual_cooc",
        "block_dct",
    ]
    assert p.finetune.unfreeze_layers == 50 and p.finetune.lr == pytest.approx(p.train.lr / 10)
    assert p.data.image_size == p.data.sample.size, "the demo trains on the sample images' own size"
    assert p.mlflow.experiment == "deepfake-detection"


def test_real_size_profile_is_valid():
    p = load_params(ROOT / "params-real.yaml")
    assert p.data.image_size == 224 and p.train.epochs == 20
    assert p.train.lr == 1e-4 and p.finetune.lr == 1e-5, "the original's Adam settings"
    assert p.models.resnet50.weights == "imagenet"


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"train\.epoch: unknown key"):
        parse_params({"train": {"epoch": 3}})


def test_wrong_type_is_named_with_the_value():
    with pytest.raises(ConfigError, match=r"data\.image_size: .*integer.*'big'"):
        parse_params({"data": {"image_size": "big"}})


def test_every_error_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        parse_params({"train": {"epochs": 0, "lr": -1}, "seed": "x"})
    text = str(err.value)
    assert "train.epochs" in text and "train.lr" in text and "seed" in text


def test_cross_field_rules():
    with pytest.raises(ConfigError, match="valid \\+ test"):
        parse_params({"data": {"split": {"valid": 0.5, "test": 0.5}}})
    with pytest.raises(ConfigError, match="threshold.target"):
        parse_params({"threshold": {"method": "target_recall"}})
    with pytest.raises(ConfigError, match="unknown models"):
        parse_params({"ensemble": {"members": ["resnet50", "vgg16"]}})


def test_weights_must_be_imagenet_none_or_a_file(tmp_path):
    with pytest.raises(ConfigError, match="models.resnet50.weights"):
        parse_params({"models": {"resnet50": {"weights": str(tmp_path / "missing.h5")}}})
    f = tmp_path / "w.weights.h5"
    f.write_bytes(b"x")
    assert parse_params({"models": {"resnet50": {"weights": str(f)}}}).models.resnet50.weights == str(f)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "params.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3")
    with pytest.raises(ConfigError, match="mapping"):
        load_params(scalar)


def test_flatten_gives_dotted_keys():
    flat = flatten(parse_params({}))
    assert flat["train.epochs"] == 3
    assert flat["models.light_se_cnn.filters"] == [32, 64, 128]
    assert flat["data.dir"] == "data"


def test_params_yaml_has_no_key_the_schema_drops():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    dumped = load_params(ROOT / "params.yaml").model_dump(mode="json")

    def keys(d, prefix=""):
        out = set()
        for k, v in d.items():
            out.add(prefix + k)
            if isinstance(v, dict):
                out |= keys(v, prefix + k + ".")
        return out

    assert keys(raw) <= keys(dumped)


@pytest.mark.parametrize("text", ["", "\n\n", "# every setting commented out\n# seed: 1\n", "---\n"])
def test_an_empty_or_comment_only_file_is_an_error_naming_it(tmp_path, text):
    f = tmp_path / "params.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=r"params\.yaml holds no settings"):
        load_params(f)


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        ("seed: 1\nseed: 2\n", "seed", 2),
        ("seed: 1\ntrain:\n  epochs: 3\n  lr: 0.1\n  epochs: 4\n", "train.epochs", 5),
        ("data:\n  augment:\n    flip: true\n    zoom: 0.1\n    flip: false\n", "data.augment.flip", 5),
        ("train:\n  epochs: 3\ntrain:\n  lr: 0.1\n", "train", 3),
    ],
)
def test_a_duplicated_key_is_an_error_naming_the_file_key_and_line(tmp_path, text, key, line):
    f = tmp_path / "dup.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_params(f)
    assert str(f) in str(err.value)
    assert f"duplicate key '{key}' at line {line}" in str(err.value)


def _shipped_with(tmp_path, edit) -> Path:
    """The shipped params.yaml with ``edit(raw)`` applied, written to a temporary file."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(raw)
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(raw, sort_keys=False))
    return f


def test_the_same_key_in_different_sections_is_fine(tmp_path):
    def edit(raw):
        raw["train"].update(epochs=4, patience=2)
        raw["finetune"].update(epochs=1, patience=2)

    p = load_params(_shipped_with(tmp_path, edit))
    assert (p.train.epochs, p.finetune.epochs, p.train.patience, p.finetune.patience) == (4, 1, 2, 2)


@pytest.mark.parametrize("name", ["params.yaml", "params-real.yaml", "benchmarks/params-benchmark.yaml"])
def test_the_shipped_files_state_every_key(name):
    from deepfake_detection.config import missing_keys

    raw = yaml.safe_load((ROOT / name).read_text())
    assert missing_keys(load_params(ROOT / name), raw) == []


def test_a_file_missing_a_section_or_key_is_an_error_naming_them(tmp_path):
    """A file with only ``seed: 1`` once trained with the code's defaults (epochs 3, lr 1e-4),
    not the shipped values."""
    f = tmp_path / "seed.yaml"
    f.write_text("seed: 1\n")
    with pytest.raises(ConfigError, match=r"does not state \d+ setting\(s\): data, models, loss") as err:
        load_params(f)
    assert str(f) in str(err.value) and "copy the missing ones from the shipped file" in str(err.value)

    def edit(raw):
        del raw["train"]["lr"]
        del raw["threshold"]["target"]  # a null value must be stated too
        del raw["evaluate"]

    with pytest.raises(ConfigError, match=r"does not state 3 setting\(s\): train\.lr, threshold\.target, evaluate\."):
        load_params(_shipped_with(tmp_path, edit))


@pytest.mark.parametrize("value", ['"no"', '"false"', "0", "1", '"yes"', "no_thanks"])
def test_booleans_are_yaml_booleans_only(tmp_path, value):
    def edit(raw):
        raw["data"]["augment"]["flip"] = "PLACEHOLDER"

    f = _shipped_with(tmp_path, edit)
    f.write_text(f.read_text().replace("PLACEHOLDER", value))
    with pytest.raises(ConfigError, match="data.augment.flip: Input should be a valid boolean"):
        load_params(f)
    f.write_text(f.read_text().replace(f"flip: {value}", "flip: false"))
    assert load_params(f).data.augment.flip is False


def test_a_network_may_have_its_own_epoch_budget():
    from deepfake_detection.config import parse_params

    p = parse_params({"train": {"epochs": 8}, "models": {"light_se_cnn": {"epochs": 30}}})
    assert p.models.light_se_cnn.epochs == 30 and p.models.resnet50.epochs is None
    with pytest.raises(ConfigError, match="models.light_se_cnn.epochs"):
        parse_params({"models": {"light_se_cnn": {"epochs": 0}}})


def test_a_file_may_leave_networks_out_and_they_are_not_run(tmp_path):
    """dvc.yaml's stages loop over the file's `models` keys: a network left out has no stage, and
    the settings then ask for no section of it; fine-tuning and the ensemble name only those run."""
    from click.testing import CliRunner

    from deepfake_detection.cli import cli

    run = ["light_se_cnn", "efficientnet_b0", "residual_cooc"]

    def edit(raw):
        raw["models"] = {name: raw["models"][name] for name in run}
        raw["finetune"]["models"] = ["efficientnet_b0"]
        raw["ensemble"]["members"] = run

    p = load_params(_shipped_with(tmp_path, edit))
    assert p.models.names() == ["efficientnet_b0", "light_se_cnn", "residual_cooc"]
    assert p.models.settings("light_se_cnn").filters == [32, 64, 128]
    with pytest.raises(ConfigError, match=r"'resnet50' is not among params.yaml's models \(efficientnet_b0, light_se"):
        p.models.settings("resnet50")
    out = CliRunner().invoke(cli, ["threshold", "resnet50", "--params", str(tmp_path / "params.yaml")])
    assert out.exit_code != 0 and "'resnet50' is not among params.yaml's models" in out.output

    def transfer_left_in_finetune(raw):
        edit(raw)
        raw["finetune"]["models"] = ["resnet50", "efficientnet_b0"]

    with pytest.raises(ConfigError, match=r"finetune.models must list exactly the transfer models among models"):
        load_params(_shipped_with(tmp_path, transfer_left_in_finetune))

    def no_network(raw):
        raw["models"] = {}

    with pytest.raises(ConfigError, match=r"does not state \d+ setting\(s\): models\.resnet50"):
        load_params(_shipped_with(tmp_path, no_network))
    # in code, stating one network's settings keeps the others (with their defaults)
    every = load_params(ROOT / "params.yaml").models.names()
    assert parse_params({"models": {"light_se_cnn": {"epochs": 3}}}).models.names() == every
