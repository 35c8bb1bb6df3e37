"""The network registry: one :class:`NetworkSpec` per network, the single place a network is
declared. The name lists (``models.MODEL_NAMES``, ``models.TRANSFER_MODELS``), the CLI's model
choices, each model's final training stage and the ``models`` section of the settings
(``config.ModelsParams``) all derive from it; ``dvc.yaml`` loops over the ``models`` section of
params.yaml (and ``finetune.models``), which ``config`` checks against it.

Free of TensorFlow: a spec names its backbone (``keras.applications`` attribute) as a string and
its builder imports Keras when called, so the CLI and the settings read the names cheaply.
Register a network with :func:`network` on its builder, next to its settings class (see
``networks.py``), before ``deepfake_detection.config`` is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class NetworkParams(BaseModel):
    """Base of a network's settings (``models.<name>`` in params.yaml): unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # This network's baseline epochs when it needs another budget than train.epochs (e.g. the
    # from-scratch light CNN trains longer than the transfer models on a CPU); null: train.epochs.
    epochs: int | None = Field(None, ge=1)


@dataclass(frozen=True)
class NetworkSpec:
    """What the project knows about one network.

    ``builder(image_size, params, *, backbone_trainable)`` returns an uncompiled Keras model named
    ``name`` (input ``image``: raw RGB in [0, 255]; output ``probability_fake``). Transfer networks
    (``transfer=True``) have a pretrained backbone that ``finetune`` opens: ``application`` (the
    ``keras.applications`` attribute), ``backbone_output`` (its last 4-D layer), ``weights_file``
    (Keras's notop file, named in the offline error message) and ``preprocessing`` (``"caffe"``:
    RGB -> BGR minus the ImageNet means before the backbone; ``None``: the backbone's own layers).
    """

    name: str
    params: type[NetworkParams]
    builder: Callable[..., object]
    transfer: bool = False
    application: str | None = None
    backbone_output: str | None = None
    weights_file: str | None = None
    preprocessing: Literal["caffe"] | None = None
    view: Literal["native"] | None = None
    fit: Literal["gradient", "linear"] = "gradient"

    @property
    def final_stage(self) -> str:
        """The training stage whose saved model is this network's final one."""
        return "finetune" if self.transfer else "train"


SPECS: dict[str, NetworkSpec] = {}


def network(
    name: str,
    *,
    params: type[NetworkParams],
    transfer: bool = False,
    application: str | None = None,
    backbone_output: str | None = None,
    weights_file: str | None = None,
    preprocessing: Literal["caffe"] | None = None,
    view: Literal["native"] | None = None,
    fit: Literal["gradient", "linear"] = "gradient",
) -> Callable:
    """Decorator: register the decorated builder as network ``name`` with its settings class."""

    def register(builder: Callable) -> Callable:
        if name in SPECS:
            raise ValueError(f"network {name!r} is registered twice")
        if not name.isidentifier():
            raise ValueError(
                f"network name {name!r} must be an identifier (it is a params.yaml key and a DVC stage suffix)"
            )
        if transfer and not (application and backbone_output):
            raise ValueError(f"transfer network {name!r} needs its application and backbone_output")
        SPECS[name] = NetworkSpec(
            name, params, builder, transfer, application, backbone_output, weights_file, preprocessing, view, fit
        )
        return builder

    return register


def spec(name: str) -> NetworkSpec:
    """The spec of network ``name``; ``ValueError`` naming the known ones otherwise."""
    if name not in SPECS:
        raise ValueError(f"unknown model {name!r}; known: {list(SPECS)}")
    return SPECS[name]


def model_names() -> tuple[str, ...]:
    """Every registered network, in registration order."""
    return tuple(SPECS)


def transfer_models() -> tuple[str, ...]:
    """The networks with a pretrained backbone: the ones `finetune` unfreezes."""
    return tuple(n for n, s in SPECS.items() if s.transfer)


def final_stage(model: str) -> str:
    """The stage whose saved model is this model's final one (``finetune`` for transfer models)."""
    return spec(model).final_stage
