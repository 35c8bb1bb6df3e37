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


def restore_weights(model, weights: list) -> None:
    """``model.set_weights(weights)`` (e.g. a fold's heads, ``linear_fit.Folds``), then the
    standardisation layers' derived mean and variance, which ``set_weights`` leaves stale, and a
    fresh ``predict_on_batch`` function: a traced one holds the old mean and variance as constants."""
    import keras

    model.set_weights(weights)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()
    model.predict_function = None
