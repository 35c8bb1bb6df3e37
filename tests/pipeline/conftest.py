"""The tiny project that has run the whole pipeline: built once per session, shared by the
end-to-end tests (tests/pipeline/test_end_to_end.py) and the team tests (test_team.py), which
push it to a DVC remote and clone it, so that the pipeline runs once.

The two modules are separate xdist work units (tests/conftest.py), so they may run on two
workers at once. The pipeline is built by whichever asks first, behind a file lock in the
session's shared temporary folder (pytest-xdist's documented pattern for session data); the other
waits for it. Right after `dvc repro` the project is copied whole: the team tests get that copy
(Alice's tree, which they commit in and move away for a while), the end-to-end tests the original
(which they re-run and edit), so neither sees the other's changes. The copy leaves out the
stage runs' MLflow artifacts, which the team tests do not read."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from filelock import FileLock
from test_end_to_end import copy_project, sh


def _shared_root(tmp_path_factory) -> Path:
    """A folder every xdist worker of this session sees (the parent of the workers' own)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if base.name.startswith("popen-gw") else base


def _tiny_pipeline(tmp_path_factory) -> tuple[Path, Path, str]:
    """The project after `dvc repro`, its copy for the team, and what `dvc repro` printed."""
    root = _shared_root(tmp_path_factory) / "tiny-pipeline"
    root.mkdir(exist_ok=True)
    project, team, printed = root / "project", root / "team", root / "repro.txt"
    with FileLock(str(root / "build.lock")):
        if not printed.exists():
            for old in (project, team):
                shutil.rmtree(old, ignore_errors=True)
            project.mkdir()
            repro = sh("dvc", "repro", cwd=copy_project(project)).stdout
            # not the stage runs' MLflow artifacts (half of its 2 GB): the team logs to its own server
            shutil.copytree(project, team, symlinks=True, ignore=shutil.ignore_patterns("mlartifacts"))
            printed.write_text(repro)
    return project, team, printed.read_text()


@pytest.fixture(scope="session")
def project(tmp_path_factory):
    """A copy of the project with tiny params after `dvc repro`, and what `dvc repro` printed."""
    dest, _, repro = _tiny_pipeline(tmp_path_factory)
    return dest, repro


@pytest.fixture(scope="session")
def team_project(tmp_path_factory):
    """The same project as :func:`project`, copied right after `dvc repro`: the team's Alice."""
    _, alice, repro = _tiny_pipeline(tmp_path_factory)
    return alice, repro
