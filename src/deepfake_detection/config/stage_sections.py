"""The sections of params.yaml past ``data``: the networks (``models``, one field per registered
network), ``loss``, ``train``, ``finetune``, ``threshold``, ``evaluate``, ``robustness``,
``ensemble``, ``register`` and ``mlflow``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    PrivateAttr,
    StrictBool,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from ..models import networks  # noqa: F401  (registers the networks: SPECS below is complete)
from ..models.registry import SPECS, transfer_models
from .base import ConfigError, _Section, check_name

# Validation context: the params come from a file, whose ``models`` names the networks to run.
FROM_FILE = "from_file"


class _ModelsSection(_Section):
    """The networks the pipeline runs: those a params file states (a file may leave registered
    networks out: dvc.yaml's stages loop over the section's keys); in code, every registered
    network (settings stated in code take the defaults for the rest)."""

    _stated: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _networks_of_the_file(self, info: ValidationInfo):
        if info.context and info.context.get(FROM_FILE):
            self._stated = tuple(name for name in type(self).model_fields if name in self.model_fields_set)
        return self

    def names(self) -> list[str]:
        return list(self._stated or type(self).model_fields)

    def settings(self, name: str):
        """``name``'s settings section; ConfigError when the params leave that network out."""
        if name not in self.names():
            raise ConfigError(
                f"{name!r} is not among params.yaml's models ({', '.join(self.names())}): add its section "
                f"to run it (the shipped params.yaml has every network's)"
            )
        return getattr(self, name)


# One field per registered network (models/networks.py), its settings class as the type.
ModelsParams = create_model(
    "ModelsParams",
    __base__=_ModelsSection,
    __module__=__name__,
    **{name: (s.params, s.params()) for name, s in SPECS.items()},
)


class LossParams(_Section):
    gamma: float = Field(2.0, ge=0)
    alpha: float | None = Field(0.25, ge=0, le=1)


class TrainParams(_Section):
    epochs: int = Field(3, ge=1)
    lr: float = Field(1e-4, gt=0)
    patience: int = Field(5, ge=1)
    reduce_lr_factor: float = Field(0.5, gt=0, lt=1)
    reduce_lr_patience: int = Field(2, ge=1)
    monitor: Literal["val_loss", "val_auc"] = "val_loss"  # early stopping (and LR plateau) watch this
    schedule: Literal["plateau", "cosine"] = "plateau"  # ReduceLROnPlateau, or cosine decay to 0 over epochs
    weight_decay: float = Field(0.0, ge=0, lt=1)  # > 0: AdamW with this decoupled weight decay
    class_weighting: StrictBool = True
    # Networks with a closed-form head (fit: linear, the forensic family): k-fold (models.<name>.cv_folds)
    # out-of-fold scores of train+valid choose the threshold and stand for the validation scores
    # downstream, then the head is refitted on train+valid. Gradient-trained networks ignore it.
    refit: StrictBool = False
    jit_compile: StrictBool = False
    # tf.distribute (training.distribution_strategy): none = one device; mirrored = every local GPU
    # (MirroredStrategy; on a CPU-only machine, the CPU); multi_worker = MultiWorkerMirroredStrategy
    # over the cluster in TF_CONFIG. data.batch_size stays the GLOBAL batch, split across replicas.
    distribute: Literal["none", "mirrored", "multi_worker"] = "none"


class FinetuneParams(_Section):
    # The transfer networks, the ones fine-tuned: dvc.yaml's finetune stages loop over this list.
    models: list[str] = Field(default_factory=lambda: list(transfer_models()))
    unfreeze_layers: int = Field(50, ge=1)
    lr: float = Field(1e-5, gt=0)
    epochs: int = Field(2, ge=1)
    patience: int = Field(5, ge=1)


class ThresholdParams(_Section):
    method: Literal["youden", "max_f1", "target_recall", "target_fpr"] = "youden"
    target: float | None = Field(None, gt=0, lt=1)

    @model_validator(mode="after")
    def _target_given(self):
        if self.method.startswith("target_") and self.target is None:
            raise ValueError(f"method {self.method!r} needs threshold.target (a rate in (0, 1))")
        return self


class EvaluateParams(_Section):
    n_bins: int = Field(10, ge=2)
    gradcam_examples: int = Field(4, ge=0)
    # The `external` stage: labelled folders outside the training data, name -> folder
    # ({real,fake}/ or train|valid|test/{real,fake}/, taken whole); relative paths are taken
    # from the project root. Every final model and ensemble is scored on each (data/external.py).
    external: dict[str, Path] = Field(default_factory=dict)

    @field_validator("external", mode="before")
    @classmethod
    def _external_names(cls, v):
        for name, folder in (v or {}).items() if isinstance(v, dict) else ():
            check_name(name)
            if folder is None or not str(folder).strip():
                raise ValueError(f"{name}: give the folder of its labelled images ({{real,fake}}/ inside)")
        return {} if v is None else v


class PerturbationParams(_Section):
    """One named test-time perturbation (data/perturb.py): the operations set here, applied in
    the order downscale, blur, noise, jpeg."""

    downscale: float | None = Field(None, gt=0, lt=1)  # to this fraction of the size and back up
    blur: float | None = Field(None, gt=0, le=10)  # Gaussian sigma, pixels
    noise: float | None = Field(None, gt=0, le=128)  # Gaussian noise std, 0..255 levels (seeded)
    jpeg: int | None = Field(None, ge=1, le=100)  # re-encoded as JPEG at this quality

    @model_validator(mode="after")
    def _something_to_do(self):
        if all(v is None for v in self.model_dump().values()):
            raise ValueError("set at least one of downscale, blur, noise, jpeg")
        return self


def _default_perturbations() -> dict[str, PerturbationParams]:
    return {
        "jpeg_90": PerturbationParams(jpeg=90),
        "jpeg_75": PerturbationParams(jpeg=75),
        "jpeg_50": PerturbationParams(jpeg=50),
        "blur_1": PerturbationParams(blur=1.0),
        "blur_2": PerturbationParams(blur=2.0),
        "downscale_50": PerturbationParams(downscale=0.5),
        "combined": PerturbationParams(downscale=0.5, blur=1.0, jpeg=75),
    }


class RobustnessParams(_Section):
    """The ``robustness`` stages: the test split re-scored under each named perturbation (and
    ``clean``, always). ``seed`` seeds the random operations (noise), per image."""

    seed: int = 42
    perturbations: dict[str, PerturbationParams] = Field(default_factory=_default_perturbations, min_length=1)

    @field_validator("perturbations")
    @classmethod
    def _names(cls, v):
        for name in v:
            if name == "clean" or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                raise ValueError(f"{name!r}: a name is letters, digits, '_' or '-', and not 'clean' (always scored)")
        return v


class EnsembleParams(_Section):
    members: list[str] = Field(default_factory=lambda: ModelsParams().names(), min_length=2)


# Validation metrics the register stage may rank candidates by (never a test metric).
SELECTION_METRICS = (
    "val_auc",
    "val_average_precision",
    "val_f1",
    "val_balanced_accuracy",
    "val_accuracy",
    "val_eer",
    "val_brier",
    "val_ece",
    "val_robust_auc",  # mean of the clean and perturbed (robustness.perturbations) validation AUCs
)
LOWER_IS_BETTER = ("val_eer", "val_brier", "val_ece")
SE_METRICS = ("val_auc", "val_robust_auc")  # those register.simpler_within_se applies to (an AUC's standard error)


class RegisterParams(_Section):
    model_name: str = Field("deepfake-detector", min_length=1)
    metric: Literal[SELECTION_METRICS] = "val_auc"  # type: ignore[valid-type]
    alias: str = Field("champion", min_length=1)
    # > 0: the best single model beats a better ensemble when within this many standard errors
    # of the ensemble's validation AUC (evaluation/selection.pick_best); 0: the best value wins.
    simpler_within_se: float = Field(0.0, ge=0.0, le=3.0)

    @model_validator(mode="after")
    def _se_needs_auc(self):
        if self.simpler_within_se > 0 and self.metric not in SE_METRICS:
            raise ValueError(f"simpler_within_se needs metric {' or '.join(SE_METRICS)}, not {self.metric}")
        return self


class MlflowParams(_Section):
    experiment: str = "deepfake-detection"
