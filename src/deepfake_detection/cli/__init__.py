"""`deepfake-detect`: one subcommand per pipeline stage, plus the tools around it.

The group and its error handling live in :mod:`.group`, shared options in :mod:`.options`; the
commands in :mod:`.data`, :mod:`.pipeline` (the DVC stages), :mod:`.detectors` (what uses a logged
detector) and :mod:`.store` (the MLflow store). Heavy imports (TensorFlow, MLflow) happen inside
the commands, so `--help` is instant.
"""

from __future__ import annotations

from . import data, detectors, pipeline, store
from .group import cli, main

for _command in (*data.COMMANDS, *pipeline.COMMANDS, *detectors.COMMANDS, *store.COMMANDS):
    cli.add_command(_command)  # in this order: `--help` lists them as the pipeline runs

__all__ = ["cli", "main"]
