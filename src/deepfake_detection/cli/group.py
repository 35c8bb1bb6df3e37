"""The `deepfake-detect` click group: pipeline order in `--help`, logging to stdout, SIGTERM
ending a command with one line and exit status 143, and the shared error handling of commands.

Nothing here imports TensorFlow or MLflow: `--help` stays instant.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from .. import signals

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bar per model download

PACKAGE = __package__.rpartition(".")[0]  # deepfake_detection: the stages log under it


def quiet_tensorflow() -> None:
    """Import TensorFlow with the process's stderr (file descriptor 2) pointed at /dev/null:
    TensorFlow 2.21 writes its start-up lines (abseil's "All log messages before
    absl::InitializeLog()", oneDNN's notice) before any log-level setting applies. An import
    error still raises, after stderr is back."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            # TensorFlow: only for the commands that load a model (predict, explain)
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def use_tracking() -> None:
    """Point MLflow at the project's store (MLFLOW_TRACKING_URI overrides) for models:/ URIs."""
    from .. import tracking  # MLflow: only when a command talks to the store

    tracking.use_store()


def run_stage(function, *args):
    """Run a stage's function; missing inputs and bad values become a clear CLI error."""
    try:
        return function(*args)
    except (FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None


class _Stdout(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time (click's test runner swaps it)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


class _Lines(logging.Formatter):
    """The message as the user reads it; ``warning: ...`` (``error: ...``) from WARNING up."""

    def format(self, record):
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"


def configure_logging() -> None:
    """The stages log through ``logging`` (``deepfake_detection.*``); the CLI shows INFO and up on stdout."""
    logger = logging.getLogger(PACKAGE)
    if not any(isinstance(h, _Stdout) for h in logger.handlers):
        handler = _Stdout()
        handler.setFormatter(_Lines("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


class InOrder(click.Group):
    """List the subcommands in pipeline order, not alphabetically; SIGTERM ends a command
    cleanly: one line on stderr and exit status 143."""

    def list_commands(self, ctx):
        return list(self.commands)

    def invoke(self, ctx):
        try:
            with signals.sigterm_raises():
                return super().invoke(ctx)
        except (KeyboardInterrupt, Exception) as err:
            # Ctrl-C and other errors go on as before; SIGTERM (also when C code turned its
            # exception into another error) ends with one line and 143
            if isinstance(err, click.exceptions.Exit) or not signals.terminated(err):
                raise
            name = " ".join(filter(None, (ctx.info_name, ctx.invoked_subcommand)))
            click.echo(
                f"{name}: terminated by SIGTERM; its MLflow run (if any) is marked KILLED and the "
                f"stage's partial outputs are removed",
                err=True,
            )
            ctx.exit(signals.Terminated.exit_code)


@click.group(cls=InOrder, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="deepfake-detection")
def cli():
    """Train, compare, tune, register and serve deepfake image detectors.

    Pipeline stages (run them all with `dvc repro`): prepare, train, finetune, threshold,
    evaluate, ensemble, summary, register, external, robustness, robustness-ensemble,
    robustness-report. Each logs to MLflow (`mlflow ui`).
    """
    configure_logging()


def main():  # pragma: no cover - console entry for `python -m`
    cli(prog_name="deepfake-detect")
