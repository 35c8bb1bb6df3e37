"""The whole settings: :class:`Params` (every section), :func:`parse_params` (a mapping) and
:func:`load_params` (a params YAML file, every key written out), and :func:`flatten` (the dotted
form MLflow params take)."""

from __future__ import annotations

import warnings
from pathlib import Path

from pydantic import BaseModel, ValidationError, model_validator

from ..models.registry import transfer_models
from .base import ConfigError, _Section
from .data_sections import DataParams
from .stage_sections import (
    FROM_FILE,
    EnsembleParams,
    EvaluateParams,
    FinetuneParams,
    LossParams,
    MlflowParams,
    ModelsParams,
    RegisterParams,
    RobustnessParams,
    ThresholdParams,
    TrainParams,
)
from .strict_yaml import _read_yaml

DEFAULT_PARAMS = Path("params.yaml")


with warnings.catch_warnings():  # the `register` section shadows ABCMeta.register, harmlessly
    warnings.simplefilter("ignore", UserWarning)

    class Params(_Section):
        seed: int = 42
        data: DataParams = DataParams()
        models: ModelsParams = ModelsParams()
        loss: LossParams = LossParams()
        train: TrainParams = TrainParams()
        finetune: FinetuneParams = FinetuneParams()
        threshold: ThresholdParams = ThresholdParams()
        evaluate: EvaluateParams = EvaluateParams()
        robustness: RobustnessParams = RobustnessParams()
        ensemble: EnsembleParams = EnsembleParams()
        register: RegisterParams = RegisterParams()
        mlflow: MlflowParams = MlflowParams()

        @model_validator(mode="after")
        def _finetune_models_are_the_transfer_models(self):
            transfer = [name for name in transfer_models() if name in self.models.names()]
            if sorted(self.finetune.models) != sorted(transfer):
                raise ValueError(
                    f"finetune.models must list exactly the transfer models among models, {transfer} "
                    f"(dvc.yaml fine-tunes each of them), not {self.finetune.models}"
                )
            return self

        @model_validator(mode="after")
        def _members_are_models(self):
            unknown = sorted(set(self.ensemble.members) - set(self.models.names()))
            if unknown:
                raise ValueError(f"ensemble.members names unknown models {unknown}; known: {self.models.names()}")
            return self


def _describe(err: ValidationError, source: str) -> str:
    lines = [f"{source} is not valid:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling and section)"
        elif "input" in e and not isinstance(e["input"], dict):
            msg += f" (got {e['input']!r})"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def parse_params(raw: dict | None, source: str = "params", *, from_file: bool = False) -> Params:
    """Validate a params mapping; raise :class:`ConfigError` naming every wrong key. ``from_file``:
    the mapping is a whole params file, whose ``models`` section names the networks to run (in
    code, every registered network runs, with the defaults of those not stated)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} must be a mapping of sections, not {type(raw).__name__}")
    try:
        return Params.model_validate(raw, context={FROM_FILE: from_file})
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate a params YAML file.

    An empty or comment-only file is an error (it would silently train on the code's defaults,
    which differ from the shipped ``params.yaml``), and so is a key repeated within a section and
    a section or key the file does not state (:func:`missing_keys`), except the settings of a
    network the file leaves out of ``models``: that network is not run. Settings in code
    (:func:`parse_params`) may leave keys out: they take the code's defaults.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found: run from the project root or pass --params")
    raw = _read_yaml(path)
    if raw is None:
        raise ConfigError(
            f"{path} holds no settings (empty or only comments): the code's defaults differ "
            f"from the shipped params.yaml; write the settings out (see the shipped file)"
        )
    params = parse_params(raw, source=str(path), from_file=True)
    missing = missing_keys(params, raw)
    if missing:
        shown = ", ".join(missing[:12]) + (f" and {len(missing) - 12} more" if len(missing) > 12 else "")
        raise ConfigError(
            f"{path} does not state {len(missing)} setting(s): {shown}. Every key must be written out (the "
            f"code's defaults differ from the shipped params.yaml): copy the missing ones from the shipped file"
        )
    return params


def missing_keys(params: BaseModel, raw: object, prefix: str = "") -> list[str]:
    """The dotted keys of ``params`` (sections and settings) that the raw mapping ``raw`` does
    not state; a setting whose value may be null must be stated too (``target: null``)."""
    missing = []
    for name, field in type(params).model_fields.items():
        key = field.alias or name
        if isinstance(params, ModelsParams) and name not in params.names():
            continue  # a network left out of models is not run (every one when none is stated)
        if not isinstance(raw, dict) or key not in raw:
            missing.append(f"{prefix}{key}")
            continue
        value = getattr(params, name)
        if isinstance(value, BaseModel):
            missing += missing_keys(value, raw[key], f"{prefix}{key}.")
    return missing


def flatten(params: BaseModel, prefix: str = "") -> dict[str, object]:
    """Dotted key -> value, the form MLflow params take (``train.epochs``)."""
    out: dict[str, object] = {}
    for key, value in params:
        dotted = f"{prefix}{key}"
        if isinstance(value, BaseModel):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = str(value) if isinstance(value, Path) else value
    return out
