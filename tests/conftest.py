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


@pytest.fixture(autouse=True)
def _nothing_written_to_the_checkout():
    """A test that logs to MLflow without an artifact location writes ``./mlruns`` wherever it
    runs: in the checkout, it would outlive the test (and be picked up by the next one)."""
    stray = ROOT / "mlruns"
    existed = stray.exists()
    yield
    if not existed and stray.exists():
        pytest.fail(f"the test wrote {stray}: give its MLflow experiment an artifact location (test_pyfunc.use_store)")


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run the test inside an empty folder (its own MLflow store, artifacts and metrics)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# pytest-xdist (`make test`: `-n 2 --dist loadgroup`). A work unit runs whole on one worker: every test
# module is one (a model trained once per module by a module-scoped fixture is trained once, as with
# --dist loadfile), except the tiny project's modules, which share one: `project`
# (tests/pipeline/conftest.py, one `dvc repro` per session) then runs on one worker only, once.
# Not xdist_group marks: with pytest 9.2 xdist 3.8's loadgroup drops them silently (it rewrites
# `item._nodeid`, which pytest no longer reads: pytest-dev/pytest-xdist#1386), so tests of one group ran
# on both workers and two `dvc repro` at once. The scheduler below groups by node id, which it receives.
TINY_PIPELINE = "tiny_pipeline"
TINY_PIPELINE_MODULES = ("tests/pipeline/test_end_to_end.py", "tests/pipeline/test_team.py")
# The tiny pipeline is the critical path: it starts first, then the longest suites and modules (the
# longest measured, 2-4 minutes each), so that no worker is left alone with a long module at the end
# (the scheduler keeps the collection order: loadscope's reorder is off).
_ORDER = (
    "tests/pipeline/",
    "tests/model/test_training.py",
    "tests/model/test_forensic.py",
    "tests/model/test_distribute.py",
    "tests/model/test_zoo.py",
    "tests/model/test_termination.py",
    "tests/model/",
    "tests/data/",
    "tests/code/",
)


def work_unit(nodeid: str) -> str:
    """The xdist work unit of a test: its module, or the tiny pipeline's shared unit."""
    if nodeid.rfind("@") > nodeid.rfind("]"):  # an xdist_group suffix, once xdist sets it again
        return nodeid.rsplit("@", 1)[1]
    module = nodeid.split("::", 1)[0]
    return TINY_PIPELINE if module in TINY_PIPELINE_MODULES else module


def _rank(item: pytest.Item) -> int:
    if work_unit(item.nodeid) == TINY_PIPELINE:
        return 0
    return 1 + next((i for i, prefix in enumerate(_ORDER) if item.nodeid.startswith(prefix)), len(_ORDER))


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: only with pytest-xdist installed
def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling  # pytest-xdist: only when tests run on workers

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    config.option.loadscopereorder = False  # keep the order of pytest_collection_modifyitems below
    return ModuleScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    for item in items:  # `project` of tests/pipeline/conftest.py (the name means other fixtures elsewhere)
        if item.nodeid.startswith("tests/pipeline/") and "project" in item.fixturenames and _rank(item) != 0:
            raise pytest.UsageError(f"{item.nodeid} uses the tiny project: add its module to TINY_PIPELINE_MODULES")
    items.sort(key=_rank)  # stable: modules stay whole and in their order
