"""Shared fixtures. Nothing here may reach the network: telemetry and analytics are off."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.pop("MLFLOW_TRACKING_URI", None)  # tests use their own stores

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_store_left_behind(monkeypatch):
    """``mlflow.set_tracking_uri`` also sets ``MLFLOW_TRACKING_URI`` (for subprocesses), which
    ``tracking.tracking_uri`` honours: without this, the first store a test used would take every
    later stage run of the session."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="module", autouse=True)
def _no_store_left_behind_by_another_module():
    """The same for module-scoped fixtures (a tiny project trained once per module), which run
    before the function-scoped guard above: each module starts with no store inherited."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run the test inside an empty folder (its own MLflow store, artifacts and metrics)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
