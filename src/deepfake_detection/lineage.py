"""Which `dvc repro` a stage runs under: one id shared by every stage of one pipeline run.

DVC runs each stage as its own process (through a shell), so the stages of one ``dvc repro``
(or ``dvc exp run``, or one queued experiment) have one thing in common: the ``dvc`` process
that started them. :func:`pipeline_run` names that process by its start time (UTC) and process
id, ``20261204-162533-4711``, which sorts by time and is unique on a machine. ``DEEPFAKE_PIPELINE_RUN``
overrides it (e.g. a scheduler that runs the stages one by one); a stage run by hand, outside
DVC, has none. tracking.py puts it on every MLflow run as the tag ``pipeline_run``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

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
