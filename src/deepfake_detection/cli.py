"""`deepfake-detect`: one subcommand per pipeline stage, plus the tools around it.

Heavy imports (TensorFlow, MLflow) happen inside the commands, so `--help` is instant.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from . import signals
from .config import DEFAULT_PARAMS, ConfigError, load_params
from .models import MODEL_NAMES, TRANSFER_MODELS

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bar per model download


def _quiet_tensorflow() -> None:
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
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


params_option = click.option(
    "--params",
    "params_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_PARAMS,
    show_default=True,
    help="Settings file (the single source of settings).",
)


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


def _configure_logging() -> None:
    """The stages log through ``logging`` (``deepfake_detection.*``); the CLI shows INFO and up on stdout."""
    logger = logging.getLogger(__package__)
    if not any(isinstance(h, _Stdout) for h in logger.handlers):
        handler = _Stdout()
        handler.setFormatter(_Lines("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _params(path: Path):
    try:
        return load_params(path)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None


def _run_stage(module: str, *args, function: str = "run"):
    """Import a stage module and run it (its ``run``, or ``function``); missing inputs become a
    clear CLI error."""
    import importlib

    try:
        return getattr(importlib.import_module(f".stages.{module}", __package__), function)(*args)
    except (FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None


class _InOrder(click.Group):
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


@click.group(cls=_InOrder, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="deepfake-detection")
def cli():
    """Train, compare, tune, register and serve deepfake image detectors.

    Pipeline stages (run them all with `dvc repro`): prepare, train, finetune, threshold,
    evaluate, ensemble, summary, register, external, robustness, robustness-ensemble,
    robustness-report. Each logs to MLflow (`mlflow ui`).
    """
    _configure_logging()


# ----------------------------------------------------------------------------- data
@cli.command("sample-data")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--per-class",
    type=click.IntRange(min=10),
    default=None,
    help="Images per class [default: data.sample.images_per_class].",
)
@click.option(
    "--size", type=click.IntRange(32, 512), default=None, help="Image side in pixels [default: data.sample.size]."
)
@click.option("--seed", type=int, default=None, help="Random seed [default: seed].")
@params_option
def sample_data(out, per_class, size, seed, params_path):
    """Generate the synthetic real-vs-fake sample dataset into OUT (deterministic: same seed,
    same bytes)."""
    from .data.sample import generate

    p = _params(params_path)
    s = p.data.sample
    try:
        split = p.data.split
        counts = generate(
            out,
            images_per_class=per_class or s.images_per_class,
            size=size or s.size,
            quality=s.quality,
            seed=p.seed if seed is None else seed,
            fractions=(1 - split.valid - split.test, split.valid, split.test),
        )
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    click.echo(json.dumps(counts, indent=2))


@cli.command()
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--reencode",
    type=click.Choice(["jpeg", "png"]),
    default=None,
    help="Decode every image and write all in this one format.",
)
@click.option(
    "--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG quality when re-encoding."
)
@click.option(
    "--faces",
    is_flag=True,
    help="Write each image's largest face (MTCNN, data.faces settings) cropped to data.image_size as PNG; "
    "images without a face are skipped (no_face). Crop boxes go to DEST/faces.csv.",
)
@click.option(
    "--shards",
    type=click.IntRange(1, 99999),
    default=None,
    help="Write the images as N TFRecord shards per split (DEST/shards/<split>-NNNNN-of-NNNNN.tfrecord) "
    "instead of one file each: faster to copy, hash and push with many small images.",
)
@params_option
def ingest(src, dest, reencode, quality, faces, shards, params_path):
    """Bring a dataset at SRC into DEST as train|valid|test/{real,fake}.

    SRC may already be split (train|valid|validation|test / real|fake, any case) or be flat
    ({real,fake}, training_real/training_fake, ...), which is split stratified and seeded by
    data.split. Every file is decoded; what is skipped is listed, with the reason, in
    DEST/ingest_report.json. With --faces, DEST holds face crops and faces.csv (merged into
    the manifest by prepare).
    """
    from .data.ingest import ingest as run_ingest

    p = _params(params_path)
    try:
        report = run_ingest(
            src,
            dest,
            valid_fraction=p.data.split.valid,
            test_fraction=p.data.split.test,
            seed=p.seed,
            reencode=reencode,
            quality=quality,
            shards=shards,
            faces=p.data.faces if faces else None,
            face_size=p.data.image_size if faces else None,
        )
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    except OSError as err:  # a full disk, a read-only folder, a file too large for the file system
        where = f": {err.filename}" if err.filename else ""
        raise click.ClickException(
            f"ingest stopped, {dest} was not written: {err.strerror or type(err).__name__}{where}"
        ) from None
    shown = {k: report[k] for k in ("seen", "written", "skipped", "counts", "written_by_method") if k in report}
    shown["skipped_by_reason"] = {r: n for r, n in report.get("skipped_by_reason", {}).items() if n}
    if "faces" in report:
        shown["faces"] = {k: report["faces"][k] for k in ("size", "settings", "found", "no_face", "several_faces")}
    click.echo(json.dumps(shown, indent=2))
    for warning in report.get("warnings", []):
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"report: {Path(dest) / 'ingest_report.json'}")


@cli.command()
@params_option
def prepare(params_path):
    """Validate data/, write the manifest and dataset statistics (DVC metrics, MLflow run)."""
    stats = _run_stage("prepare", _params(params_path))
    click.echo(json.dumps(stats["counts"], indent=2))


# ----------------------------------------------------------------------------- training
model_argument = click.argument("model", type=click.Choice(MODEL_NAMES))


@cli.command()
@model_argument
@params_option
def train(model, params_path):
    """Baseline training of MODEL (focal loss, Adam, early stopping, LR reduction)."""
    _run_stage("train", model, _params(params_path))


@cli.command()
@click.argument("model", type=click.Choice(TRANSFER_MODELS))
@params_option
def finetune(model, params_path):
    """Fine-tune a transfer MODEL: unfreeze the top finetune.unfreeze_layers layers."""
    _run_stage("finetune", model, _params(params_path))


# ----------------------------------------------------------------------------- evaluation
@cli.command()
@model_argument
@params_option
def threshold(model, params_path):
    """Choose MODEL's decision threshold on the validation split (threshold.method)."""
    _run_stage("threshold", model, _params(params_path))


@cli.command()
@model_argument
@params_option
def evaluate(model, params_path):
    """Evaluate MODEL on the test split at 0.5 and at its tuned threshold."""
    _run_stage("evaluate", model, _params(params_path))


@cli.command()
@params_option
def ensemble(params_path):
    """Soft voting, weighted averaging, majority vote and stacking of ensemble.members."""
    _run_stage("ensemble", _params(params_path))


@cli.command()
@params_option
def summary(params_path):
    """Write and print the table of every model and ensemble (reports/summary.*)."""
    _run_stage("summary", _params(params_path))


@cli.command()
@click.option("--force", is_flag=True, help="Move the champion alias even if the new version is not better.")
@params_option
def register(force, params_path):
    """Register the best model or ensemble (by register.metric on validation) with its threshold;
    move the champion alias to it if it beats the current champion."""
    _run_stage("register", _params(params_path), force)


@cli.command()
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
    from mlflow.exceptions import MlflowException

    params = _params(params_path)
    _tracking()
    try:
        text = _run_stage("register", model_uri, params, function="card_of")
    except MlflowException as err:
        raise click.ClickException(f"{model_uri}: {err.message}") from None
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"model card written to {output}", err=True)
    else:
        click.echo(text, nl=False)


@cli.command()
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
    _run_stage("external", _params(params_path))


@cli.command()
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
    _run_stage("robustness", model, _params(params_path))


@cli.command("robustness-ensemble")
@params_option
def robustness_ensemble(params_path):
    """The ensembles' robustness: each ensemble the ensemble stage stored (artifacts/ensembles/)
    combines its members' perturbed test scores (artifacts/robustness/<member>.csv, written by
    `robustness MODEL`) with its own weights or stacker, at its own tuned threshold. No model runs.
    Writes metrics/robustness/ensemble_<kind>.json and plots/robustness/ensemble_<kind>.csv; one
    MLflow run per ensemble, robustness-ensemble_<kind>."""
    _run_stage("robustness", _params(params_path), function="run_ensembles")


@cli.command("robustness-report")
@params_option
def robustness_report(params_path):
    """Join every model's and ensemble's robustness (metrics/robustness/) into
    reports/robustness.md and reports/robustness.csv, and print the tables."""
    _run_stage("robustness", _params(params_path), function="run_report")


@cli.command()
@click.option("--width", type=click.IntRange(min=40), default=120, show_default=True, help="Characters per line.")
def compare(width):
    """Compare the DVC experiments in a terminal: each experiment's registered model (val_auc,
    test_auc with its 95% interval, threshold) and the params that differ between rows. Runs
    `dvc exp show --csv --only-changed --drop 'metrics/(scores|robustness|external)' --keep
    metrics/registered.json` and prints it with short column names, 3 decimals, at most WIDTH wide."""
    from .compare import main

    try:
        click.echo(main(width=width))
    except RuntimeError as err:
        raise click.ClickException(str(err)) from None


# ----------------------------------------------------------------------------- inference
model_uri_option = click.option(
    "--model",
    "model_uri",
    required=True,
    help="models:/deepfake-detector@champion, runs:/<id>/model, a local model folder or a .keras file "
    "(predict --runtime onnx: an .onnx file from `export`).",
)


def _tracking():
    """Point MLflow at the project's store (MLFLOW_TRACKING_URI overrides) for models:/ URIs."""
    from . import tracking

    tracking.use_store()


@cli.command()
@model_uri_option
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the rows to FILE.csv or FILE.json (default: print a table).",
)
@click.option(
    "--threshold", type=click.FloatRange(0, 1), default=None, help="Override the decision threshold the model carries."
)
@click.option(
    "--runtime",
    type=click.Choice(["keras", "onnx"]),
    default="keras",
    show_default=True,
    help="keras: a logged MLflow model; onnx: an .onnx file run by onnxruntime.",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Images per prediction batch."
)
@click.option(
    "--faces/--no-faces",
    default=None,
    help="Score every face of each photo (MTCNN, the model's face settings): one row per face with its box "
    "(input, face, face_x, face_y, face_w, face_h, face_confidence), or one row saying no face was found "
    "[default: the model's own flag, on when it was trained on face crops].",
)
def predict(model_uri, inputs, output, threshold, runtime, batch_size, faces):
    """Classify image files and folders (searched recursively): one row per file, in the
    order given, with probability_fake, label (at the model's tuned threshold), and the error
    (not an image, unsupported format, too large, dangling link, ...) or warning (small or
    elongated image) of that file. With faces on: one row per face of each file. Exits with
    status 1 when nothing was scored (every row has an error; the rows are still written)."""
    from .serving.predict import predict_files

    if output is not None and output.suffix.lower() not in (".csv", ".json"):
        raise click.BadParameter("must end in .csv or .json", param_hint="--output")
    _quiet_tensorflow()
    from mlflow.exceptions import MlflowException

    _tracking()
    try:
        rows = predict_files(
            model_uri, list(inputs), threshold=threshold, runtime=runtime, batch_size=batch_size, faces=faces
        )
    except (ValueError, FileNotFoundError, MlflowException) as err:
        raise click.ClickException(str(getattr(err, "message", None) or err)) from None
    if output is None:  # blanks, not None/NaN, where a row has no error, warning or score
        click.echo(rows.astype(object).where(rows.notna(), "").to_string(index=False))
    elif output.suffix.lower() == ".csv":
        rows.to_csv(output, index=False)
    else:
        rows.to_json(output, orient="records", indent=2)
    n_err = int(rows["error"].notna().sum())
    n_warn = int(rows["warning"].notna().sum())
    if "face" in rows.columns:
        n_files = rows["input"].nunique()
        click.echo(
            f"{n_files} files: {len(rows) - n_err} faces scored ({int((rows.label == 'fake').sum())} fake, "
            f"{int((rows.label == 'real').sum())} real{f', {n_warn} with a warning' if n_warn else ''}), "
            f"{n_err} rows without a score (no face, or the error)" + (f"; written to {output}" if output else ""),
            err=True,
        )
    else:
        click.echo(
            f"{len(rows)} files: {len(rows) - n_err} scored ({int((rows.label == 'fake').sum())} fake, "
            f"{int((rows.label == 'real').sum())} real{f', {n_warn} with a warning' if n_warn else ''}), "
            f"{n_err} errors" + (f"; written to {output}" if output else ""),
            err=True,
        )
    if n_err == len(rows):
        raise click.ClickException("nothing was scored: every row has an error (see the error column)")


@cli.command()
@model_uri_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (0.0.0.0: every one).")
@click.option("--port", type=click.IntRange(1, 65535), default=5001, show_default=True)
def serve(model_uri, host, port):
    """Serve a detector over REST (the way to serve it): MLflow's scoring app (/invocations,
    /ping, /health, /version, as `mlflow models serve`) with a body-size limit (413 past
    DEEPFAKE_SERVE_MAX_BODY bytes, default 32 MiB), unknown request params refused (400), strict
    JSON answers (null, not NaN) and a per-request pixel budget (DEEPFAKE_SERVE_REQUEST_PIXELS).
    See the README's "Serving" section for the other settings."""
    from .serving.rest import serve as run_server

    _tracking()
    try:
        run_server(model_uri, host, port)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None


@cli.command()
@model_uri_option
@click.option("--format", "fmt", type=click.Choice(["savedmodel", "onnx"]), required=True)
@click.argument("out", type=click.Path(path_type=Path))
def export(model_uri, fmt, out):
    """Export a detector (or a .keras file) to a TF SavedModel folder or an ONNX file OUT,
    with a sidecar OUT.json holding its threshold and input size."""
    from .serving.export import export_model

    _tracking()
    try:
        path = export_model(model_uri, fmt, out)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"exported {fmt} to {path}")


@cli.command()
@click.option(
    "--model",
    "model_uri",
    required=True,
    help="models:/deepfake-detector@champion, runs:/<id>/<model>, a local model folder or a .keras file.",
)
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for the heat-map overlays (PNG).",
)
@click.option(
    "--faces/--no-faces",
    default=None,
    help="Explain every face of each photo: each face crop's Grad-CAM pasted back onto the whole photo, "
    "face boxes drawn, one PNG per photo [default: the model's own flag; off for a .keras file].",
)
def explain(model_uri, images, out_dir, faces):
    """Grad-CAM heat maps of where the model looks, one PNG overlay per IMAGE (input | heat map
    with its colour bar, P(fake) and the label in the title); prints each input's score and
    the PNG it wrote. Inputs with the same file name are told apart by their folders
    (fake/00001.jpg -> fake_00001_gradcam.png)."""
    from .explain import explain_files

    _quiet_tensorflow()
    _tracking()
    try:
        written = explain_files(model_uri, list(images), out_dir, faces=faces)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    if len(written) < len(images):
        click.echo(
            f"{len(images) - len(written)} image(s) could not be decoded or held no face (see the warnings)", err=True
        )


@cli.command()
@click.option(
    "--model",
    "model_uri",
    default=None,
    help="A registered or logged detector: models:/NAME@ALIAS, models:/NAME/VERSION, runs:/<id>/model or a "
    "model folder [default: models:/<register.model_name>@<register.alias> of --params, "
    "models:/deepfake-detector@champion].",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to bind. Anything but loopback exposes a page with no login and no TLS: put an "
    "authenticating HTTPS proxy in front (README: The web page).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--max-upload-mb",
    type=click.FloatRange(min=0.001),
    default=20.0,
    show_default=True,
    help="The largest file the page accepts (MB); a larger one gets a message, unread.",
)
@params_option
def app(model_uri, host, port, max_upload_mb, params_path):
    """A local web page for a detector: drop or pick images and read, for each, P(fake), the label at
    the model's threshold, a gauge and the Grad-CAM overlay (each face's box and score with face
    detection on), beside the model's version, threshold, test AUC and limitations. Scores come
    from the same pyfunc model as REST and `predict`; uploads stay in a temporary folder, deleted
    after scoring; the page loads nothing from other hosts."""
    from mlflow.exceptions import MlflowException

    from .serving.app import serve

    if model_uri is None:
        if not params_path.is_file():
            raise click.ClickException(
                f"{params_path} not found: run from the project root (after `make demo`) or name the detector "
                "with --model URI"
            )
        reg = _params(params_path).register
        model_uri = f"models:/{reg.model_name}@{reg.alias}"
    _tracking()
    try:
        serve(model_uri, host, port, max_upload_mb)
    except (MlflowException, ValueError, FileNotFoundError, OSError) as err:
        raise click.ClickException(f"{model_uri}: {err}") from None


@cli.group()
def runs():
    """Housekeeping of the project's MLflow runs."""


@runs.command("clean")
@params_option
def runs_clean(params_path):
    """Mark FAILED the runs of the experiment (mlflow.experiment) that a process of this machine
    left RUNNING when it was killed outright (SIGKILL, a crash), with a failed_reason tag. The next
    stage of the same model does it too; runs of other machines are left alone."""
    from . import tracking

    p = _params(params_path)
    closed = tracking.close_stale_runs(tracking.setup(p.mlflow.experiment), "deepfake-detect runs clean")
    click.echo(f"{len(closed)} run(s) marked FAILED" + (f": {', '.join(closed)}" if closed else ""))


@cli.command("relocate-store")
@click.argument("old_folder", type=click.Path(file_okay=False, path_type=Path))
def relocate_store(old_folder):
    """After moving or copying a project from OLD_FOLDER to here (the current folder), point its
    MLflow store (mlflow.db) at the artifacts here (mlartifacts/): the store records absolute
    paths, which still name OLD_FOLDER."""
    from .relocate import relocate_store as relocate

    try:
        changed = relocate(Path("mlflow.db"), old_folder, Path.cwd())
    except FileNotFoundError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{changed} artifact location(s) moved from {Path(old_folder).absolute()} to {Path.cwd()}")


# ----------------------------------------------------------------------------- team
@cli.command("mlflow-server", context_settings={"ignore_unknown_options": True})
@click.option(
    "--backend-store-uri",
    envvar="MLFLOW_BACKEND_STORE_URI",
    required=True,
    help="The database of runs and registry: postgresql://USER@HOST:5432/DB (password in PGPASSWORD "
    "or ~/.pgpass) [env: MLFLOW_BACKEND_STORE_URI].",
)
@click.option(
    "--artifacts-destination",
    envvar="MLFLOW_ARTIFACTS_DESTINATION",
    required=True,
    help="Where the server keeps artifacts: a folder on this machine, or s3://..., gs://... "
    "(the server's credentials; clients need none) [env: MLFLOW_ARTIFACTS_DESTINATION].",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (0.0.0.0: every one).")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Server worker processes [MLflow's: 4].")
@click.option(
    "--allowed-hosts",
    default=None,
    help="Host names clients may use (e.g. mlflow.team.example:5000) when bound beyond localhost.",
)
@click.option("--cors-allowed-origins", default=None, help="Web origins allowed to call the server.")
@click.option("--dry-run", is_flag=True, help="Print the mlflow server command line and exit.")
@click.argument("mlflow_args", nargs=-1, type=click.UNPROCESSED)
def mlflow_server(
    backend_store_uri,
    artifacts_destination,
    host,
    port,
    workers,
    allowed_hosts,
    cors_allowed_origins,
    dry_run,
    mlflow_args,
):
    """Start a shared MLflow tracking server: runs and registry in a database (PostgreSQL),
    artifacts served through the server. Clients set MLFLOW_TRACKING_URI=http://HOST:PORT.
    Anything after `--` goes to `mlflow server` as it is (e.g. -- --app-name basic-auth)."""
    from . import tracking_server

    try:
        cmd = tracking_server.server_command(
            backend_store_uri, artifacts_destination, host, port, workers, allowed_hosts, cors_allowed_origins
        )
        cmd += list(mlflow_args)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    click.echo(tracking_server.shown(cmd))
    if dry_run:
        return
    click.echo(f"clients: export MLFLOW_TRACKING_URI={tracking_server.client_uri(host, port)}")
    tracking_server.exec_server(cmd)


def main():  # pragma: no cover - console entry for `python -m`
    cli(prog_name="deepfake-detect")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
