"""The model zoo: four CNNs built from shared blocks.

``networks.py`` declares each network (its settings and its builder) in the registry
(``registry.py``); ``zoo.py`` holds the Keras machinery they share. Importing this package
registers the networks without importing TensorFlow, so the CLI and dvc.yaml checks read the
names cheaply: ``MODEL_NAMES`` and ``TRANSFER_MODELS`` are read from the registry on access.
"""

from . import networks  # noqa: F401  (registers the networks)
from .registry import SPECS, final_stage, model_names, transfer_models

__all__ = ["MODEL_NAMES", "SPECS", "TRANSFER_MODELS", "final_stage", "model_names", "transfer_models"]


def __getattr__(name: str):
    if name == "MODEL_NAMES":
        return model_names()
    if name == "TRANSFER_MODELS":
        return transfer_models()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
