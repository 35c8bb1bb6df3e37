"""Binary focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection").

For a predicted probability ``p`` of the positive class (fake = 1) and a label ``y``::

    p_t     = y * p + (1 - y) * (1 - p)
    alpha_t = y * alpha + (1 - y) * (1 - alpha)          (1 when alpha is None)
    loss    = -alpha_t * (1 - p_t) ** gamma * log(p_t)

averaged over the last axis, then reduced over the batch like any Keras loss (mean by
default, honouring ``sample_weight`` / ``class_weight``). ``p`` is clipped to
``[epsilon, 1 - epsilon]`` first (Keras's ``backend.epsilon()``, 1e-7, unless given), so
``log`` and the gradient of ``(1 - p_t) ** gamma`` stay finite even for ``gamma < 1`` and a
saturated sigmoid. With ``gamma=0`` and ``alpha=None`` it is binary cross-entropy.

Keras's ``BinaryFocalCrossentropy`` computes the same value (with ``apply_class_balancing=True``
for alpha) but raises the unclipped ``1 - p_t`` to ``gamma``; this class is a small standalone
``Loss`` so its config is just ``gamma`` and ``alpha``. It is registered as
``deepfake_detection>BinaryFocalLoss``: a model compiled with it and saved as ``.keras`` loads
compiled once ``deepfake_detection.models.losses`` has been imported (without it, load with
``compile=False``; the network itself needs nothing from this package).
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="deepfake_detection")
class BinaryFocalLoss(keras.losses.Loss):
    """Focal loss on sigmoid probabilities; ``alpha`` weights the positive (fake) class."""

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | None = 0.25,
        epsilon: float | None = None,
        name: str = "binary_focal_loss",
        reduction: str = "sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if alpha is not None and not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1] or None, got {alpha}")
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else float(alpha)
        self.epsilon = epsilon

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        # Labels arrive as (batch,) from the input pipeline, predictions as (batch, 1): without
        # this reshape they would broadcast to (batch, batch), every prediction scored against
        # every label.
        y_true = ops.reshape(ops.cast(y_true, y_pred.dtype), ops.shape(y_pred))
        eps = keras.config.epsilon() if self.epsilon is None else self.epsilon
        p = ops.clip(y_pred, eps, 1.0 - eps)
        # Cross-entropy in its general form (equals -log(p_t) for 0/1 labels, and stays the
        # right thing for smoothed labels).
        ce = -(y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p))
        p_t = y_true * p + (1.0 - y_true) * (1.0 - p)
        loss = ops.power(1.0 - p_t, self.gamma) * ce
        if self.alpha is not None:
            loss = (y_true * self.alpha + (1.0 - y_true) * (1.0 - self.alpha)) * loss
        return ops.mean(loss, axis=-1)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"gamma": self.gamma, "alpha": self.alpha, "epsilon": self.epsilon})
        return config
