"""Commands that use a logged detector: `predict`, `serve`, `export`, `explain` and `app`.

Each imports what loads a model (TensorFlow, MLflow, onnxruntime) inside its body: `--help`
pays for none of it.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..serving.rest import serve as run_server
from .group import quiet_tensorflow, use_tracking
from .options import model_uri_option, params_of, params_option


def _write_rows(rows, output: Path | None) -> None:
    """Print the rows as a table (blanks, not None/NaN, where a row has no error, warning or
    score), or write them to ``output`` (.csv or .json)."""
    if output is None:
        click.echo(rows.astype(object).where(rows.notna(), "").to_string(index=False))
    elif output.suffix.lower() == ".csv":
        rows.to_csv(output, index=False)
    else:
        rows.to_json(output, orient="records", indent=2)


def _tell_counts(rows, output: Path | None) -> None:
    """One line on stderr: how many files (faces) were scored, fake, real, with a warning or an error."""
    n_err = int(rows["error"].notna().sum())
    n_warn = int(rows["warning"].notna().sum())
    labels = (
        f"({int((rows.label == 'fake').sum())} fake, "
        f"{int((rows.label == 'real').sum())} real{f', {n_warn} with a warning' if n_warn else ''})"
    )
    written = f"; written to {output}" if output else ""
    if "face" in rows.columns:
        n_files = rows["input"].nunique()
        line = (
            f"{n_files} files: {len(rows) - n_err} faces scored {labels}, "
            f"{n_err} rows without a score (no face, or the error)"
        )
    else:
        line = f"{len(rows)} files: {len(rows) - n_err} scored {labels}, {n_err} errors"
    click.echo(line + written, err=True)


@click.command()
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
    from ..serving.predict import predict_files  # MLflow; TensorFlow once a model loads

    if output is not None and output.suffix.lower() not in (".csv", ".json"):
        raise click.BadParameter("must end in .csv or .json", param_hint="--output")
    quiet_tensorflow()
    from mlflow.exceptions import MlflowException  # MLflow: only when a model is loaded

    use_tracking()
    try:
        rows = predict_files(
            model_uri, list(inputs), threshold=threshold, runtime=runtime, batch_size=batch_size, faces=faces
        )
    except (ValueError, FileNotFoundError, MlflowException) as err:
        raise click.ClickException(str(getattr(err, "message", None) or err)) from None
    _write_rows(rows, output)
    _tell_counts(rows, output)
    if int(rows["error"].notna().sum()) == len(rows):
        raise click.ClickException("nothing was scored: every row has an error (see the error column)")


@click.command()
@model_uri_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (0.0.0.0: every one).")
@click.option("--port", type=click.IntRange(1, 65535), default=5001, show_default=True)
def serve(model_uri, host, port):
    """Serve a detector over REST (the way to serve it): MLflow's scoring app (/invocations,
    /ping, /health, /version, as `mlflow models serve`) with a body-size limit (413 past
    DEEPFAKE_SERVE_MAX_BODY bytes, default 32 MiB), unknown request params refused (400), strict
    JSON answers (null, not NaN) and a per-request pixel budget (DEEPFAKE_SERVE_REQUEST_PIXELS).
    See the README's "Serving" section for the other settings."""

    use_tracking()
    try:
        run_server(model_uri, host, port)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None


@click.command()
@model_uri_option
@click.option("--format", "fmt", type=click.Choice(["savedmodel", "onnx"]), required=True)
@click.argument("out", type=click.Path(path_type=Path))
def export(model_uri, fmt, out):
    """Export a detector (or a .keras file) to a TF SavedModel folder or an ONNX file OUT,
    with a sidecar OUT.json holding its threshold and input size."""
    from ..serving.export import export_model  # TensorFlow, MLflow, tf2onnx: only when run

    use_tracking()
    try:
        path = export_model(model_uri, fmt, out)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"exported {fmt} to {path}")


@click.command()
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
    from ..explain import explain_files  # TensorFlow, MLflow: only when run

    quiet_tensorflow()
    use_tracking()
    try:
        written = explain_files(model_uri, list(images), out_dir, faces=faces)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    if len(written) < len(images):
        click.echo(
            f"{len(images) - len(written)} image(s) could not be decoded or held no face (see the warnings)", err=True
        )


@click.command()
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
    # MLflow and the web app: only when the command runs
    from mlflow.exceptions import MlflowException

    from ..serving.app import serve

    if model_uri is None:
        if not params_path.is_file():
            raise click.ClickException(
                f"{params_path} not found: run from the project root (after `make demo`) or name the detector "
                "with --model URI"
            )
        reg = params_of(params_path).register
        model_uri = f"models:/{reg.model_name}@{reg.alias}"
    use_tracking()
    try:
        serve(model_uri, host, port, max_upload_mb)
    except (MlflowException, ValueError, FileNotFoundError, OSError) as err:
        raise click.ClickException(f"{model_uri}: {err}") from None


COMMANDS = (predict, serve, export, explain, app)
