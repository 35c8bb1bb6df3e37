"""params.yaml -> typed, validated settings.

Every stage calls :func:`load_params` and reads only its own section. Unknown keys, missing
keys and wrong types are errors that name the key (``train.epochs: Input should be a valid
integer``); booleans are YAML booleans only (``flip: "no"`` is an error, not False).

The package: ``base`` (:class:`ConfigError`, the section base, :func:`check_name`),
``data_sections`` (the ``data`` section), ``stage_sections`` (``models`` and every stage's
section), ``strict_yaml`` (duplicate keys are errors) and ``params`` (:class:`Params`,
:func:`load_params`, :func:`parse_params`, :func:`flatten`). Import the names from here. It
stands on :mod:`deepfake_detection.models` (the registered networks and their settings
classes, re-exported) and on nothing else of the package.
"""

from ..models.networks import DualAttentionParams, LightSECNNParams, TransferParams
from .base import NAME_RULE, ConfigError, check_name
from .data_sections import (
    MIN_DETECTABLE_SIDE,
    AugmentParams,
    DataParams,
    DegradeParams,
    FacesParams,
    SampleParams,
    SplitParams,
)
from .params import DEFAULT_PARAMS, Params, flatten, load_params, missing_keys, parse_params
from .stage_sections import (
    LOWER_IS_BETTER,
    SE_METRICS,
    SELECTION_METRICS,
    EnsembleParams,
    EvaluateParams,
    FinetuneParams,
    LossParams,
    MlflowParams,
    ModelsParams,
    PerturbationParams,
    RegisterParams,
    RobustnessParams,
    ThresholdParams,
    TrainParams,
)

__all__ = [
    "DEFAULT_PARAMS",
    "LOWER_IS_BETTER",
    "SE_METRICS",
    "MIN_DETECTABLE_SIDE",
    "NAME_RULE",
    "SELECTION_METRICS",
    "AugmentParams",
    "ConfigError",
    "DataParams",
    "DegradeParams",
    "DualAttentionParams",
    "EnsembleParams",
    "EvaluateParams",
    "FacesParams",
    "FinetuneParams",
    "LightSECNNParams",
    "LossParams",
    "MlflowParams",
    "ModelsParams",
    "Params",
    "PerturbationParams",
    "RegisterParams",
    "RobustnessParams",
    "SampleParams",
    "SplitParams",
    "ThresholdParams",
    "TrainParams",
    "TransferParams",
    "check_name",
    "flatten",
    "load_params",
    "missing_keys",
    "parse_params",
]
