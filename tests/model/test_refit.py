"""``train.refit`` on a linear-head (forensic) network: k-fold heads on train+valid, out-of-fold
scores for the threshold and the validation figures, the final head refitted on train+valid."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from project_commands import params_text
from sklearn.metrics import roc_auc_score

from deepfake_detection import paths
from deepfake_detection.config import parse_params
from deepfake_detection.data.manifest import load_manifest
from deepfake_detection.evaluation.thresholds import select_threshold
from deepfake_detection.linear_fit import Folds
from deepfake_detection.models.saved import load_model, restore_weights
from deepfake_detection.stages import prepare, threshold, train
from deepfake_detection.stages.scoring import perturbed_scores, predict_split

MODEL = "block_dct"  # the smaller forensic network: the same closed-form fit as residual_cooc


def tiny(refit: bool, **data) -> dict:
    return {
        "seed": 3,
        "data": {"image_size": 32, "batch_size": 8, **data},
        "train": {"refit": refit},
        "models": {MODEL: {"cv_folds": 4, "degrade": [{"jpeg": 80}]}},
        "robustness": {"perturbations": {"jpeg_75": {"jpeg": 75}, "blur_1": {"blur": 1.0}}},
        "mlflow": {"experiment": "test-refit"},
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from deepfake_detection.data.sample import generate

    root = tmp_path_factory.mktemp("refit-data")
    generate(root / "data", images_per_class=24, size=40, seed=3, progress=False)
    return root / "data"


def _project(root, dataset, refit: bool):
    import shutil

    shutil.copytree(dataset, root / "data")
    (root / "params.yaml").write_text(params_text(tiny(refit)))
    params = parse_params(tiny(refit))
    prepare.run(params, progress=False)
    trained = train.run(MODEL, params)
    chosen = threshold.run(MODEL, params)
    return params, trained, chosen


@pytest.fixture
def refitted(in_tmp, dataset):
    return _project(in_tmp, dataset, refit=True)


def test_every_train_and_valid_image_is_held_out_by_exactly_one_fold(refitted):
    params, trained, _ = refitted
    manifest = load_manifest(paths.MANIFEST)
    folds = Folds.load(paths.folds(MODEL))
    pooled = manifest[manifest.split.isin(["train", "valid"])]
    assert sorted(folds.paths) == sorted(pooled.path.astype(str))  # each image once, no test image
    assert len(folds.weights) == 4 and set(folds.fold) == {0, 1, 2, 3}
    assert trained["oof_folds"] == 4 and trained["oof_images"] == len(pooled)
    assert trained["train_images"] == len(pooled), "the final head is refitted on train+valid"
    history = pd.read_csv(paths.history_csv("train", MODEL))  # the plotted validation AUC is out of fold too
    assert history.val_auc.iloc[0] == pytest.approx(trained["val_auc"])


def test_threshold_is_chosen_on_scores_by_heads_that_never_saw_the_image(refitted):
    params, trained, chosen = refitted
    manifest = load_manifest(paths.MANIFEST)
    folds = Folds.load(paths.folds(MODEL))
    model = load_model(paths.model_file(MODEL, "train"))
    expected = {}
    for k, weights in enumerate(folds.weights):  # each held-out image, by hand, through the fold's weights
        restore_weights(model, weights)
        held = manifest[manifest.path.astype(str).isin(folds.paths[folds.fold == k])]
        scores = perturbed_scores(model, held, params)
        expected.update(zip(scores.path.astype(str), scores.clean))
    valid = pd.read_csv(paths.predictions(MODEL, "valid"))
    assert len(valid) == (manifest.split == "valid").sum()
    np.testing.assert_allclose(valid.probability, [expected[p] for p in valid.path.astype(str)], atol=1e-5)
    measured = dict(zip(folds.paths, folds.probability))  # what the train stage measured on the features
    np.testing.assert_allclose([measured[p] for p in expected], list(expected.values()), atol=1e-4)

    y = np.array([int(folds.y[list(folds.paths).index(p)]) for p in expected])
    p = np.array(list(expected.values()))
    assert chosen["threshold"] == pytest.approx(select_threshold(y, p, "youden").threshold, abs=1e-5)
    assert chosen["out_of_fold"]["images"] == len(expected) == len(folds.paths)
    assert chosen["val"]["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-5)
    on_disk = json.loads(paths.stage_metrics("threshold", MODEL).read_text())
    assert on_disk["out_of_fold"]["valid_auc"] == pytest.approx(trained["val_auc"], abs=1e-4)

    # the refitted model has seen the validation images: its own scores of them are in-sample
    refit_scores = predict_split(MODEL, "valid", params, model=load_model(paths.model_file(MODEL, "train")))
    assert not np.allclose(refit_scores.probability, valid.probability, atol=1e-3)
    perturbed = pd.read_csv(paths.predictions(MODEL, "valid_perturbed"))
    assert list(perturbed.columns[-3:]) == ["clean", "jpeg_75", "blur_1"]
    np.testing.assert_allclose(perturbed.clean, valid.probability, atol=1e-6)


def test_without_refit_the_folds_file_is_empty_and_validation_is_held_out(in_tmp, dataset):
    params, trained, chosen = _project(in_tmp, dataset, refit=False)
    assert Folds.load(paths.folds(MODEL)).weights == []
    assert "out_of_fold" not in chosen and "oof_auc" not in trained
    manifest = load_manifest(paths.MANIFEST)
    assert trained["train_images"] == (manifest.split == "train").sum()
