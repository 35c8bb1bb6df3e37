"""`ingest --shards`: the images as TFRecord shards, listed by prepare, streamed by the input
pipeline, trained on, thresholded and evaluated like files."""

from __future__ import annotations

import json
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from deepfake_detection import paths
from deepfake_detection.cli import cli
from deepfake_detection.config import AugmentParams, parse_params
from deepfake_detection.data import shards
from deepfake_detection.data.ingest import ingest
from deepfake_detection.data.manifest import build_manifest
from deepfake_detection.data.pipeline import make_dataset
from deepfake_detection.data.sample import generate


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """The same sample set ingested as files and as 3 shards per split."""
    root = tmp_path_factory.mktemp("shards")
    generate(root / "src", images_per_class=16, size=40, seed=3, progress=False)
    ingest(root / "src", root / "files", progress=False)
    report = ingest(root / "src", root / "sharded", progress=False, shards=3)
    return root, report


def _names(manifest: pd.DataFrame, split: str | None = None) -> list[str]:
    rows = manifest if split is None else manifest[manifest.split == split]
    return [shards.split_ref(p)[1] if shards.split_ref(p) else p.split("/", 1)[1] for p in rows.path]


def test_ingest_writes_shards_and_prepare_lists_every_image(datasets, monkeypatch):
    root, report = datasets
    monkeypatch.chdir(root)
    files = sorted(p.name for p in (root / "sharded" / "shards").iterdir())
    assert files == sorted(shards.shard_name(s, i, 3) for s in ("train", "valid", "test") for i in range(3))
    assert sorted(p.name for p in (root / "sharded").iterdir()) == ["ingest_report.json", "shards"]
    assert report["shards"]["records"] == {s: sum(c.values()) for s, c in report["counts"].items()}
    assert json.loads((root / "sharded" / "ingest_report.json").read_text())["shards"] == report["shards"]

    by_file = build_manifest("files", progress=False)
    by_shard = build_manifest("sharded", progress=False)
    assert len(by_shard) == len(by_file) == 32
    assert by_shard.path.str.startswith("sharded/shards/").all() and by_shard.path.str.contains("#").all()
    key = ["name", "label", "split", "md5", "width", "height", "subgroup"]
    a = by_file.assign(name=_names(by_file))[key].sort_values("name").reset_index(drop=True)
    b = by_shard.assign(name=_names(by_shard))[key].sort_values("name").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    # every shard holds both classes (round-robin in label order)
    for shard in (root / "sharded" / "shards").glob("train-*"):
        assert {label for _, label, _ in shards.iter_records(shard)} == {0, 1}


def test_cli_ingest_shards(tmp_path):
    generate(tmp_path / "src", images_per_class=10, size=40, seed=1, progress=False)
    result = CliRunner().invoke(cli, ["ingest", str(tmp_path / "src"), str(tmp_path / "dest"), "--shards", "2"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "dest" / "shards").glob("*.tfrecord"))) == 6
    bad = CliRunner().invoke(cli, ["ingest", str(tmp_path / "src"), str(tmp_path / "d2"), "--shards", "0"])
    assert bad.exit_code != 0 and not (tmp_path / "d2").exists()


@pytest.mark.parametrize("patch_size", [None, 32])
def test_dataset_from_shards_yields_the_pixels_and_labels_of_the_files(datasets, monkeypatch, patch_size):
    root, _ = datasets
    monkeypatch.chdir(root)
    by_file = build_manifest("files", progress=False)
    by_shard = build_manifest("sharded", progress=False)
    for split in ("train", "valid", "test"):
        order = {name: i for i, name in enumerate(_names(by_file, split))}
        take = [order[name] for name in _names(by_shard, split)]
        xa, ya = (np.concatenate(t) for t in zip(*make_dataset(by_file, split, 32, 5, patch_size=patch_size)))
        xb, yb = (np.concatenate(t) for t in zip(*make_dataset(by_shard, split, 32, 5, patch_size=patch_size)))
        assert xb.shape == xa.shape and len(xb) == len(order)
        np.testing.assert_allclose(xb, xa[take], atol=1e-4)
        np.testing.assert_array_equal(yb, ya[take])


def test_shuffled_shards_cover_the_split_each_epoch_in_a_seeded_order(datasets, monkeypatch):
    root, _ = datasets
    monkeypatch.chdir(root)
    manifest = build_manifest("sharded", progress=False)
    n = int((manifest.split == "train").sum())

    def epochs(seed):
        ds = make_dataset(manifest, "train", 32, 4, augment=AugmentParams(), shuffle=True, seed=seed)
        return [np.concatenate([x.numpy().sum(axis=(1, 2, 3)) for x, _ in ds]) for _ in range(2)]

    first, again = epochs(7), epochs(7)
    for a, b in zip(first, again):
        assert len(a) == n
        np.testing.assert_allclose(a, b, rtol=1e-5)
    assert not np.allclose(first[0], first[1])  # a new order (and new augmentation) each epoch


def test_manifest_out_of_shard_order_is_refused_and_iter_contents_reads_records(datasets, monkeypatch):
    root, _ = datasets
    monkeypatch.chdir(root)
    manifest = build_manifest("sharded", progress=False)
    valid = manifest[manifest.split == "valid"]
    with pytest.raises(Exception, match="not in the order of the shards"):
        list(make_dataset(valid.iloc[::-1], "valid", 32, 4))
    # a subset in order is fine: the records it does not name are skipped
    assert sum(len(y) for _, y in make_dataset(valid.iloc[::2], "valid", 32, 4)) == len(valid.iloc[::2])

    refs = list(valid.path)
    expected = {name: (root / "files" / name).read_bytes() for name in (shards.split_ref(r)[1] for r in refs)}
    for order in (refs, refs[::-1]):
        got = list(shards.iter_contents([*order, str(root / "files" / _names(valid)[0])]))
        assert got[:-1] == [expected[shards.split_ref(r)[1]] for r in order]
        assert got[-1] == expected[_names(valid)[0]]


def test_train_threshold_evaluate_from_shards(datasets, in_tmp):
    from deepfake_detection.stages import evaluate, prepare, threshold, train

    root, _ = datasets
    shutil.copytree(root / "sharded", in_tmp / "data")
    params = parse_params(
        {
            "data": {"image_size": 32, "batch_size": 8},
            "train": {"epochs": 1},
            "models": {"light_se_cnn": {"epochs": 1, "filters": [8, 16], "convs_per_block": 1}},
            "evaluate": {"gradcam_examples": 1},
            "mlflow": {"experiment": "test-shards"},
        }
    )
    mlflow.set_tracking_uri(f"sqlite:///{in_tmp / 'mlflow.db'}")
    prepare.run(params, progress=False)
    metrics = train.run("light_se_cnn", params)
    assert metrics["epochs_run"] == 1 and np.isfinite(metrics["val_loss"])
    info = threshold.run("light_se_cnn", params)
    assert 0 <= info["threshold"] <= 1
    result = evaluate.run("light_se_cnn", params)
    test = pd.read_csv(paths.predictions("light_se_cnn", "test"))
    manifest = pd.read_csv(paths.MANIFEST)
    assert test.path.tolist() == manifest[manifest.split == "test"].path.tolist()
    assert 0 <= result["test"]["tuned"]["auc"] <= 1
    assert test.path.str.contains(".tfrecord#").all() and test.probability.between(0, 1).all()
