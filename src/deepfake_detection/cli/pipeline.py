"""The DVC pipeline's stage commands (train ... robustness-report, register), `card` and `compare`.

Each command imports its stage inside its body: the stages import MLflow (and the training and
scoring stages TensorFlow), which `deepfake-detect --help` must not pay for.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..models import TRANSFER_MODELS
from .group import run_stage, use_tracking
from .options import model_argument, params_of, params_option, params_to_run


@click.command()
@model_argument
@params_option
def train(model, params_path):
    """Baseline training of MODEL (focal loss, Adam, early stopping, LR reduction)."""
    from ..stages import train as stage  # TensorFlow, MLflow: only when the stage runs

    run_stage(stage.run, model, params_to_run(model, params_path))


@click.command()
@click.argument("model", type=click.Choice(TRANSFER_MODELS))
@params_option
def finetune(model, params_path):
    """Fine-tune a transfer MODEL: unfreeze the top finetune.unfreeze_layers layers."""
    from ..stages import finetune as stage  # TensorFlow, MLflow: only when the stage runs

    run_stage(stage.run, model, params_to_run(model, params_path))


@click.command()
@model_argument
@params_option
def threshold(model, params_path):
    """Choose MODEL's decision threshold on the validation split (threshold.method)."""
    from ..stages import threshold as stage  # TensorFlow, MLflow: only when the stage runs

    run_stage(stage.run, model, params_to_run(model, params_path))


@click.command()
@model_argument
@params_option
def evaluate(model, params_path):
    """Evaluate MODEL on the test split at 0.5 and at its tuned threshold."""
    from ..stages import evaluate as stage  # TensorFlow, MLflow: only when the stage runs

    run_stage(stage.run, model, params_to_run(model, params_path))


@click.command()
@params_option
def ensemble(params_path):
    """Soft voting, weighted averaging, majority vote and stacking of ensemble.members."""
    from ..stages import ensemble as stage  # MLflow: only when the stage runs

    run_stage(stage.run, params_of(params_path))


@click.command()
@params_option
def summary(params_path):
    """Write and print the table of every model and ensemble (reports/summary.*)."""
    from ..stages import summary as stage  # MLflow: only when the stage runs

    run_stage(stage.run, params_of(params_path))


@click.command()
@click.option("--force", is_flag=True, help="Move the champion alias even if the new version is not better.")
@params_option
def register(force, params_path):
    """Register the best model or ensemble (by register.metric on validation) with its threshold;
    move the champion alias to it if it beats the current champion."""
    from ..stages import register as stage  # MLflow (TensorFlow when a detector is logged): only when run

    run_stage(stage.run, params_of(params_path), force)


@click.command()
@click.argument("model_uri")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the card to this Markdown file [default: print it].",
)
@params_option
def card(model_uri, output, params_path):
    """Print the model card of a logged detector: MODEL_URI is models:/deepfake-detector/3,
    models:/deepfake-detector@champion or models:/m-<id>. What it detects and its decision rule,
    training data, test metrics with 95% intervals, calibration, robustness and its limits,
    cross-dataset figures, training recipe, lineage, how to call it. Read from this project's
    metrics/ (the files `dvc repro` wrote for the model it was made from). `register` writes the
    same card as each version's description and as model_card.md beside its model."""
    # MLflow: only when the command runs
    from mlflow.exceptions import MlflowException

    from ..stages import register as stage

    params = params_of(params_path)
    use_tracking()
    try:
        text = run_stage(stage.card_of, model_uri, params)
    except MlflowException as err:
        raise click.ClickException(f"{model_uri}: {err.message}") from None
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"model card written to {output}", err=True)
    else:
        click.echo(text, nl=False)


@click.command()
@params_option
def external(params_path):
    """Cross-dataset evaluation: score every final model and ensemble on each labelled folder of
    evaluate.external (name: folder, {real,fake}/ or train|valid|test/{real,fake}/ taken whole)
    at its validation-tuned threshold: AUC, average precision, EER, accuracy.

    Writes metrics/external.json, reports/external.md and artifacts/external/ (files.csv names
    every file not scored and why); logs one MLflow run per model, external-<model>, with the
    metrics external/<set>/auc, .../ap, .../eer, .../accuracy beside in_domain/auc. With
    evaluate.external empty it writes empty outputs. Under DVC, after changing the files of a
    folder, run `dvc repro -f external` (DVC tracks the setting, not the folder's contents).
    """
    from ..stages import external as stage  # TensorFlow, MLflow: only when the stage runs

    run_stage(stage.run, params_of(params_path))


@click.command()
@model_argument
@params_option
def robustness(model, params_path):
    """Re-score MODEL's test split under each perturbation of robustness.perturbations (JPEG
    re-compression, Gaussian blur, down-scaling and back, combinations; seeded) and under none
    (clean): AUC, accuracy at the tuned threshold (metrics/threshold/MODEL.json) and their drop
    from clean.

    Needs the threshold stage's output and the model's final .keras file. Writes
    metrics/robustness/MODEL.json, plots/robustness/MODEL.csv and artifacts/robustness/MODEL.csv
    (every image's score under every perturbation); logs the MLflow run robustness-MODEL with the
    metrics robustness/<perturbation>/auc, .../accuracy, .../auc_drop and a bar chart.
    """
    from ..stages import robustness as stage  # TensorFlow, MLflow: only when the stage runs

    run_stage(stage.run, model, params_to_run(model, params_path))


@click.command("robustness-ensemble")
@params_option
def robustness_ensemble(params_path):
    """The ensembles' robustness: each ensemble the ensemble stage stored (artifacts/ensembles/)
    combines its members' perturbed test scores (artifacts/robustness/<member>.csv, written by
    `robustness MODEL`) with its own weights or stacker, at its own tuned threshold. No model runs.
    Writes metrics/robustness/ensemble_<kind>.json and plots/robustness/ensemble_<kind>.csv; one
    MLflow run per ensemble, robustness-ensemble_<kind>."""
    from ..stages import robustness as stage  # MLflow: only when the stage runs

    run_stage(stage.run_ensembles, params_of(params_path))


@click.command("robustness-report")
@params_option
def robustness_report(params_path):
    """Join every model's and ensemble's robustness (metrics/robustness/) into
    reports/robustness.md and reports/robustness.csv, and print the tables."""
    from ..stages import robustness as stage  # MLflow: only when the stage runs

    run_stage(stage.run_report, params_of(params_path))


@click.command()
@click.option("--width", type=click.IntRange(min=40), default=120, show_default=True, help="Characters per line.")
def compare(width):
    """Compare the DVC experiments in a terminal: each experiment's registered model (val_auc,
    test_auc with its 95% interval, threshold) and the params that differ between rows. Runs
    `dvc exp show --csv --only-changed --drop 'metrics/(scores|robustness|external)' --keep
    metrics/registered.json` and prints it with short column names, 3 decimals, at most WIDTH wide."""
    from ..compare import main  # pandas: only when the command runs

    try:
        click.echo(main(width=width))
    except RuntimeError as err:
        raise click.ClickException(str(err)) from None


COMMANDS = (
    train,
    finetune,
    threshold,
    evaluate,
    ensemble,
    summary,
    register,
    card,
    external,
    robustness,
    robustness_ensemble,
    robustness_report,
    compare,
)
