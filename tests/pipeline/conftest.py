"""The tiny project that has run the whole pipeline: one per session, shared by the end-to-end
tests (tests/pipeline/test_end_to_end.py) and the team tests (test_team.py), which push it to a
DVC remote and clone it, so that the pipeline runs once."""

from __future__ import annotations

import pytest
from test_end_to_end import copy_project, sh


@pytest.fixture(scope="session")
def project(tmp_path_factory):
    """A copy of the project with tiny params after `dvc repro`, and what `dvc repro` printed."""
    dest = copy_project(tmp_path_factory.mktemp("project"))
    repro = sh("dvc", "repro", cwd=dest)
    return dest, repro.stdout
