"""Detectors pickled by older code keep loading and scoring with the package as it is now.

The fixtures (``tests/model/fixtures``, see its README) are MLflow model folders logged by
``log_detector`` before the issue-17 refactor (class path ``deepfake_detection.serving.pyfunc``)
and before ``serving/`` existed (class path ``deepfake_detection.inference``, the one name
:mod:`deepfake_detection.inference` keeps for them).
"""

from __future__ import annotations

import base64
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from deepfake_detection.serving import io as serving_io
from deepfake_detection.serving import pyfunc

FIXTURES = Path(__file__).parent / "fixtures"
CLASS_PATHS = {
    "detector_before_refactor": b"deepfake_detection.serving.pyfunc",
    "detector_inference_path": b"deepfake_detection.inference",
}


def write_png(path: Path, seed: int = 3) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path)
    return path


@pytest.fixture(scope="module", params=sorted(CLASS_PATHS))
def old_detector(request):
    folder = FIXTURES / request.param
    return folder, mlflow.pyfunc.load_model(str(folder))


def test_the_fixtures_pickle_the_old_class_paths():
    for name, module in CLASS_PATHS.items():
        head = (FIXTURES / name / "python_model.pkl").read_bytes()[:80]
        assert module + b"\x94\x8c\x10DeepfakeDetector" in head, (name, head)


def test_an_old_detector_loads_as_todays_class(old_detector):
    _, model = old_detector
    assert type(model.unwrap_python_model()) is pyfunc.DeepfakeDetector


def test_an_old_detector_scores_an_image_with_todays_columns(old_detector, tmp_path):
    _, model = old_detector
    image = write_png(tmp_path / "photo.png")
    by_bytes = model.predict(pd.DataFrame({"image": [base64.b64encode(image.read_bytes()).decode("ascii")]}))
    with serving_io.local_files():
        by_path = model.predict(pd.DataFrame({"path": [str(image)]}))
    for out in (by_bytes, by_path):
        assert list(out.columns) == list(pyfunc.OUTPUT_COLUMNS) and len(out) == 1
        row = out.iloc[0]
        assert row["error"] is None
        assert 0.0 <= row["probability_fake"] <= 1.0
        assert row["threshold"] == pytest.approx(0.5)
        assert row["label"] == ("fake" if row["probability_fake"] >= 0.5 else "real")
    assert by_path.loc[0, "probability_fake"] == pytest.approx(by_bytes.loc[0, "probability_fake"], abs=1e-7)
