"""params.yaml -> typed, validated settings.

Every stage calls :func:`load_params` and reads only its own section. Unknown keys, missing
keys and wrong types are errors that name the key (``train.epochs: Input should be a valid
integer``); booleans are YAML booleans only (``flip: "no"`` is an error, not False).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from .models.networks import DualAttentionParams, LightSECNNParams, TransferParams  # noqa: F401  (re-exported)
from .models.registry import SPECS

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(ValueError):
    """params.yaml is missing, unreadable or holds a wrong key or value."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitParams(_Section):
    valid: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _leaves_training_data(self):
        if self.valid + self.test >= 1:
            raise ValueError("valid + test must leave something to train on (sum < 1)")
        return self


def _ordered_pair(v, low: float, high: float):
    if v is not None and not (low <= v[0] <= v[1] <= high):
        raise ValueError(f"must be [low, high] with {low:g} <= low <= high <= {high:g}")
    return v


class DegradeParams(_Section):
    """CNNDetection's degradation augmentation (Wang et al., CVPR 2020): with probability
    ``blur_prob`` a training image is blurred with a Gaussian of sigma ~ U(``blur_sigma``) pixels,
    then with probability ``jpeg_prob`` re-compressed as JPEG at a quality ~ U(``jpeg_quality``);
    at native resolution, before the resize or crop. Both probabilities 0 (the default): off."""

    blur_prob: float = Field(0.0, ge=0, le=1)
    blur_sigma: tuple[float, float] = (0.0, 3.0)
    jpeg_prob: float = Field(0.0, ge=0, le=1)
    jpeg_quality: tuple[int, int] = (30, 100)

    @field_validator("blur_sigma")
    @classmethod
    def _sigma_range(cls, v):
        return _ordered_pair(v, 0, 10)

    @field_validator("jpeg_quality")
    @classmethod
    def _quality_range(cls, v):
        return _ordered_pair(v, 1, 100)


class AugmentParams(_Section):
    flip: StrictBool = True  # YAML true/false only: "no" or 0 is an error, not False
    rotation: float = Field(0.03, ge=0, le=0.5)
    zoom: float = Field(0.1, ge=0, lt=1)
    brightness: float = Field(0.1, ge=0, le=1)
    contrast: float = Field(0.1, ge=0, le=1)
    jpeg_quality: tuple[int, int] | None = None
    # Self-blended fakes (Shiohara & Yamasaki, CVPR 2022): the probability that a real training
    # image becomes a fake one, blended with a colour- and geometry-jittered copy of itself
    # through a soft elliptical mask over its centre. Training only; 0 turns it off.
    self_blend: float = Field(0.0, ge=0, le=1)
    # Probabilistic blur and JPEG re-compression at native resolution (DegradeParams); the
    # jpeg_quality above re-encodes every image, after the resize.
    degrade: DegradeParams = DegradeParams()

    @field_validator("jpeg_quality")
    @classmethod
    def _quality_range(cls, v):
        if v is not None and not (1 <= v[0] <= v[1] <= 100):
            raise ValueError("must be [low, high] with 1 <= low <= high <= 100")
        return v


class SampleParams(_Section):
    images_per_class: int = Field(600, ge=10)
    size: int = Field(96, ge=32, le=512)
    quality: int = Field(90, ge=1, le=100)


MIN_DETECTABLE_SIDE = 12
"""MTCNN's smallest pyramid level: an image whose shorter side is below this has no face to find."""


class FacesParams(_Section):
    """How faces are found and cropped (``data.faces``; data/faces.py): ``ingest --faces``,
    ``predict --faces``, ``explain --faces`` and the pyfunc model's ``faces`` flag all crop this way.
    The one face-settings type: a logged detector keeps its ``model_dump()``."""

    margin: float = Field(0.25, ge=0, le=2)  # added on each side, as a fraction of the face box's longer side
    min_confidence: float = Field(0.9, ge=0, le=1)  # detections below this are ignored
    min_face_size: int = Field(20, ge=MIN_DETECTABLE_SIDE)  # pixels: smaller faces are not searched for


class DataParams(_Section):
    dir: Path = Path("data")
    image_size: int = Field(64, ge=32, le=1024)
    batch_size: int = Field(32, ge=1)  # the GLOBAL batch: train.distribute splits it across the replicas
    # resize: the whole image resized to image_size. patches: no resampling; training sees random
    # patch_size crops at native resolution, and an image's score averages the crop logits over
    # a fixed grid of crops that covers it (data/views.py).
    view: Literal["resize", "patches"] = "resize"
    patch_size: int = Field(64, ge=32, le=1024)
    split: SplitParams = SplitParams()
    faces: FacesParams = FacesParams()
    augment: AugmentParams = AugmentParams()
    sample: SampleParams = SampleParams()


def _transfer_names() -> list[str]:
    return [name for name, s in SPECS.items() if s.transfer]


class _ModelsSection(_Section):
    def names(self) -> list[str]:
        return list(type(self).model_fields)


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
    jit_compile: StrictBool = False
    # tf.distribute (training.distribution_strategy): none = one device; mirrored = every local GPU
    # (MirroredStrategy; on a CPU-only machine, the CPU); multi_worker = MultiWorkerMirroredStrategy
    # over the cluster in TF_CONFIG. data.batch_size stays the GLOBAL batch, split across replicas.
    distribute: Literal["none", "mirrored", "multi_worker"] = "none"


class FinetuneParams(_Section):
    # The transfer networks, the ones fine-tuned: dvc.yaml's finetune stages loop over this list.
    models: list[str] = Field(default_factory=lambda: _transfer_names())
    unfreeze_layers: int = Field(50, ge=1)
    lr: float = Field(1e-5, gt=0)
    epochs: int = Field(2, ge=1)
    patience: int = Field(5, ge=1)

    @field_validator("models")
    @classmethod
    def _every_transfer_model(cls, v):
        if sorted(v) != sorted(_transfer_names()):
            raise ValueError(
                f"must list exactly the transfer models {_transfer_names()} (dvc.yaml fine-tunes each of them)"
            )
        return v


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
        from .data.external import check_name

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
        import re

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


class RegisterParams(_Section):
    model_name: str = Field("deepfake-detector", min_length=1)
    metric: Literal[SELECTION_METRICS] = "val_auc"  # type: ignore[valid-type]
    alias: str = Field("champion", min_length=1)


class MlflowParams(_Section):
    experiment: str = "deepfake-detection"


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


def parse_params(raw: dict | None, source: str = "params") -> Params:
    """Validate a params mapping; raise :class:`ConfigError` naming every wrong key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} must be a mapping of sections, not {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None


class _DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping repeats a key (YAML 1.2 forbids it; PyYAML would keep the last value)."""


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated in one mapping, at any depth, naming the
    dotted key path and the line of the repetition."""

    def __init__(self, stream):
        super().__init__(stream)
        self._key_paths: dict[int, str] = {}  # id(mapping node) -> its dotted path

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            prefix = self._key_paths.get(id(node), "")
            seen: dict[object, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue  # SafeLoader reports unhashable keys itself
                dotted = f"{prefix}{key}"
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise _DuplicateKeyError(
                        None,
                        None,
                        f"duplicate key {dotted!r} at line {line} (first at line {seen[key]})",
                        key_node.start_mark,
                    )
                seen[key] = line
                self._key_paths[id(value_node)] = f"{dotted}."
                if isinstance(value_node, yaml.SequenceNode):
                    for i, item in enumerate(value_node.value):
                        self._key_paths[id(item)] = f"{dotted}[{i}]."
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> object:
    """Parse ``path`` with :class:`_StrictLoader`; duplicate keys and bad YAML are ConfigErrors."""
    loader = _StrictLoader(path.read_text())
    try:
        return loader.get_single_data()
    except _DuplicateKeyError as err:
        raise ConfigError(f"{path}: {err.problem}: a key may appear once (the last value would silently win)") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    finally:
        loader.dispose()


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate a params YAML file.

    An empty or comment-only file is an error (it would silently train on the code's defaults,
    which differ from the shipped ``params.yaml``), and so is a key repeated within a section and
    a section or key the file does not state (:func:`missing_keys`). Settings in code
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
    params = parse_params(raw, source=str(path))
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
