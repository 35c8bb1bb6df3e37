"""Which `dvc repro` a stage runs under: one id shared by every stage of one pipeline run.

DVC runs each stage as its own process (through a shell), so the stages of one ``dvc repro``
(or ``dvc exp run``, or one queued experiment) have one thing in common: the ``dvc`` process
that started them. :func:`pipeline_run` names that process by its start time (UTC) and process
id, ``20261204-162533-4711``, which sorts by time and is unique on a machine. ``DEEPFAKE_PIPELINE_RUN``
overrides it (e.g. a scheduler that runs the stages one by one); a stage run by hand, outside
DVC, has none. tracking.py puts it on every MLflow run as the tag ``pipeline_run``.

The rest of a run's provenance lives here too, free of MLflow: the stages (:data:`STAGES`) and the
splits each reads (:data:`STAGE_SPLITS`), the checked-out commit (:func:`git_commit`), the
dataset's digest (:func:`data_digest`), the process that runs a stage (:data:`PROCESS_TAG`) and
the tags of a stage run (:func:`run_tags`), which :mod:`deepfake_detection.tracking` puts on it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import yaml

ENV = "DEEPFAKE_PIPELINE_RUN"
MAX_DEPTH = 8  # stage -> shell -> dvc is 2; a few more for wrappers (make, a venv launcher)


def _is_dvc(cmdline: list[str]) -> bool:
    """A ``dvc ...`` command line: the executable ``dvc`` (a venv script run by Python too),
    or ``python -m dvc``."""
    names = [Path(part).name for part in cmdline[:3]]
    return "dvc" in names or (len(cmdline) > 2 and cmdline[1] == "-m" and cmdline[2] == "dvc")


def pipeline_run() -> str | None:
    """The id of the DVC process this stage runs under (``DEEPFAKE_PIPELINE_RUN`` if set), or None."""
    if os.environ.get(ENV):
        return os.environ[ENV]
    try:
        import psutil  # installed with DVC
    except ImportError:  # pragma: no cover - DVC requires it
        return None
    try:
        proc = psutil.Process().parent()
        for _ in range(MAX_DEPTH):
            if proc is None:
                return None
            if _is_dvc(proc.cmdline()):
                started = time.strftime("%Y%m%d-%H%M%S", time.gmtime(proc.create_time()))
                return f"{started}-{proc.pid}"
            proc = proc.parent()
    except psutil.Error:  # a process that ended, or one this user may not inspect
        return None
    return None


STAGES = (
    "prepare",
    "train",
    "finetune",
    "threshold",
    "evaluate",
    "ensemble",
    "summary",
    "register",
    "external",
    "robustness",
    "robustness-report",
)
DATA_DVC = Path("data.dvc")
# The splits of the manifest each stage reads: logged as the run's dataset inputs.
STAGE_SPLITS = {
    "prepare": ("train", "valid", "test"),
    "train": ("train", "valid"),
    "finetune": ("train", "valid"),
    "threshold": ("valid",),
    "evaluate": ("test",),
    "ensemble": ("valid", "test"),
    "summary": ("test",),
    "register": ("valid",),
    "robustness": ("test",),  # per model and per ensemble: the test split under perturbations
    "robustness-report": ("test",),
    "external": (),  # folders outside the manifest: logged by log_external_dataset
}


def git_commit(root: Path | None = None) -> str:
    """The checked-out commit (``-dirty`` when tracked code changed), or ``unknown``."""
    cwd = root or Path.cwd()
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        # Only code counts as dirty: dvc.lock and .gitignore files change during `dvc repro`.
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "pyproject.toml", "dvc.yaml"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def data_digest(dvc_file: Path = DATA_DVC) -> str:
    """The md5 that ``data.dvc`` records for the dataset, or ``unknown``."""
    try:
        outs = yaml.safe_load(Path(dvc_file).read_text())["outs"]
        return str(outs[0]["md5"])
    except (OSError, KeyError, IndexError, TypeError):
        return "unknown"


def run_tags(stage: str, model: str | None = None) -> dict[str, str]:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
    tags = {"stage": stage, "git_commit": git_commit(), "data_digest": data_digest(), PROCESS_TAG: process_id()}
    if model:
        tags["model"] = model
    repro = pipeline_run()
    if repro:
        tags["pipeline_run"] = repro
    for tag, var in (("dvc_exp", "DVC_EXP_NAME"), ("dvc_baseline", "DVC_EXP_BASELINE_REV")):
        if os.environ.get(var):
            tags[tag] = os.environ[var]
    return tags


PROCESS_TAG = "process"
"""A stage run's ``<host>:<pid>``: a run still RUNNING whose process has ended was killed outright."""


def process_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def process_ended(process: str) -> bool:
    """Whether the ``<host>:<pid>`` of a run is a process of this machine that has ended (a
    process elsewhere, or a run without the tag, cannot be told: False)."""
    host, _, pid = process.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False
