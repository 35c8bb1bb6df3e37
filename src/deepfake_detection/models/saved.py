"""Loading a saved network of the project: the one place that knows which custom layers a
``.keras`` file may hold (the forensic family's statistics layers, the focal loss), so every
stage, the pyfunc and ``explain`` load every network alike."""

from __future__ import annotations

from pathlib import Path


def load_model(path: str | Path):
    """The ``.keras`` file at ``path``, uncompiled, with the project's custom layers registered."""
    import keras

    from . import forensic, losses  # noqa: F401  (register their serializable classes with Keras)

    return keras.models.load_model(str(path), compile=False)
