"""Stage `prepare`: manifest, statistics, DVC metrics file and its MLflow run."""

import json

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from deepfake_detection import paths
from deepfake_detection.config import parse_params
from deepfake_detection.data.manifest import build_manifest, load_manifest
from deepfake_detection.data.sample import generate
from deepfake_detection.stages.prepare import run


@pytest.fixture
def small_project(in_tmp):
    generate(in_tmp / "data", images_per_class=20, size=48, seed=1, progress=False)
    (in_tmp / "data.dvc").write_text("outs:\n- md5: 0123456789abcdef.dir\n  path: data\n")
    return in_tmp


def test_prepare_writes_manifest_metrics_and_mlflow_run(small_project):
    params = parse_params({"mlflow": {"experiment": "test-prepare"}})
    stats = run(params, progress=False)

    manifest = load_manifest(paths.MANIFEST)
    assert len(manifest) == 40 == stats["total"]
    assert set(manifest.split) == {"train", "valid", "test"} and set(manifest.label) == {"real", "fake"}
    assert manifest.md5.str.fullmatch(r"[0-9a-f]{32}").all()
    assert (manifest.width == 48).all() and (manifest.height == 48).all()
    assert manifest.path.map(lambda p: (small_project / p).is_file()).all()

    on_disk = json.loads(paths.DATA_METRICS.read_text())
    assert on_disk == stats
    n_train = sum(stats["counts"]["train"].values())
    n_fake = stats["counts"]["train"]["fake"]
    assert stats["class_weights"]["fake"] == pytest.approx(n_train / (2 * n_fake), rel=1e-5)
    assert sum(sum(c.values()) for c in stats["counts"].values()) == 40

    mlflow.set_tracking_uri(f"sqlite:///{small_project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["test-prepare"], output_format="list")
    assert len(runs) == 1
    r = runs[0]
    assert r.info.run_name == "prepare"
    assert r.data.tags["stage"] == "prepare"
    assert r.data.tags["data_digest"] == "0123456789abcdef.dir"
    assert r.data.tags["git_commit"]  # a sha, or "unknown" outside a git checkout
    assert r.data.params["data.image_size"] == "64" and r.data.params["seed"] == "42"
    assert r.data.metrics["n_images"] == 40
    assert r.data.metrics["n_train_fake"] == stats["counts"]["train"]["fake"]
    artifacts = {a.path for a in MlflowClient().list_artifacts(r.info.run_id)}
    assert {"manifest.csv", "data_stats.json"} <= artifacts
    assert (small_project / "mlartifacts").is_dir(), "artifacts live beside the store"


def test_prepare_rejects_a_corrupt_image_and_names_it(small_project):
    bad = small_project / "data" / "train" / "fake" / "broken.jpg"
    bad.write_bytes(b"not really a jpeg")
    with pytest.raises(ValueError, match="broken.jpg: not_an_image"):
        build_manifest(small_project / "data", progress=False)


def test_prepare_rejects_missing_and_empty_folders(small_project):
    for f in (small_project / "data" / "valid" / "real").iterdir():
        f.unlink()
    (small_project / "data" / "test" / "fake").rename(small_project / "data" / "test" / "FAKES")
    with pytest.raises(ValueError) as err:
        build_manifest(small_project / "data", progress=False)
    text = str(err.value)
    assert "empty folder" in text and "valid/real" in text
    assert "missing folder" in text and "test/fake" in text


def test_duplicates_across_splits_are_counted(small_project):
    from deepfake_detection.data.manifest import statistics

    src = next((small_project / "data" / "train" / "real").iterdir())
    (small_project / "data" / "test" / "real" / "leak.jpg").write_bytes(src.read_bytes())
    stats = statistics(build_manifest(small_project / "data", progress=False))
    assert stats["duplicates_across_splits"] == 1


def test_subgroups_come_from_file_names(small_project):
    src = next((small_project / "data" / "test" / "fake").iterdir())
    src.rename(src.with_name("hard_7_0101.jpg"))
    manifest = build_manifest(small_project / "data", progress=False)
    assert isinstance(manifest, pd.DataFrame)
    assert manifest.set_index(manifest.path.str.rsplit("/", n=1).str[-1]).loc["hard_7_0101.jpg", "subgroup"] == "hard"
