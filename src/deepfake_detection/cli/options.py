"""Options and arguments several commands share, and reading the settings file."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import DEFAULT_PARAMS, ConfigError, Params, load_params
from ..models import MODEL_NAMES

params_option = click.option(
    "--params",
    "params_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_PARAMS,
    show_default=True,
    help="Settings file (the single source of settings).",
)

model_argument = click.argument("model", type=click.Choice(MODEL_NAMES))

model_uri_option = click.option(
    "--model",
    "model_uri",
    required=True,
    help="models:/deepfake-detector@champion, runs:/<id>/model, a local model folder or a .keras file "
    "(predict --runtime onnx: an .onnx file from `export`).",
)


def params_of(path: Path) -> Params:
    """The settings of ``path``; a bad file becomes a clear CLI error."""
    try:
        return load_params(path)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None


def params_to_run(model: str, path: Path) -> Params:
    """The settings of ``path``, checked to name ``model`` among its ``models`` (a network the
    file leaves out is not run); a clear CLI error otherwise."""
    params = params_of(path)
    try:
        params.models.settings(model)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None
    return params
