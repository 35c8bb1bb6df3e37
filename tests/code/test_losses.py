"""Binary focal loss against the formula, computed by hand with NumPy."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from deepfake_detection.models.losses import BinaryFocalLoss

Y = np.array([[1.0], [0.0], [1.0], [0.0]], dtype="float32")
P = np.array([[0.9], [0.2], [0.3], [0.6]], dtype="float32")


def focal_by_hand(y, p, gamma, alpha):
    """-alpha_t * (1 - p_t)**gamma * log(p_t), one value per row."""
    y, p = np.asarray(y, "float64").ravel(), np.asarray(p, "float64").ravel()
    p_t = np.where(y == 1, p, 1 - p)
    alpha_t = 1.0 if alpha is None else np.where(y == 1, alpha, 1 - alpha)
    return -alpha_t * (1 - p_t) ** gamma * np.log(p_t)


def test_default_gamma_2_alpha_quarter():
    # Row by row: p_t = 0.9, 0.8, 0.3, 0.4; alpha_t = 0.25, 0.75, 0.25, 0.75.
    want = np.mean(
        [
            -0.25 * 0.1**2 * np.log(0.9),
            -0.75 * 0.2**2 * np.log(0.8),
            -0.25 * 0.7**2 * np.log(0.3),
            -0.75 * 0.6**2 * np.log(0.4),
        ]
    )
    assert want == pytest.approx(np.mean(focal_by_hand(Y, P, 2.0, 0.25)))
    assert float(BinaryFocalLoss()(Y, P)) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize(("gamma", "alpha"), [(1.0, None), (0.5, 0.75), (3.0, 0.5)])
def test_matches_the_formula(gamma, alpha):
    got = BinaryFocalLoss(gamma=gamma, alpha=alpha, reduction=None)(Y, P)
    np.testing.assert_allclose(np.asarray(got), focal_by_hand(Y, P, gamma, alpha), rtol=1e-5)


def test_alpha_weights_the_positive_class():
    fake, real = np.array([[1.0]]), np.array([[0.0]])
    loss = BinaryFocalLoss(gamma=0.0, alpha=0.8)
    assert float(loss(fake, [[0.3]])) == pytest.approx(-0.8 * np.log(0.3), rel=1e-5)
    assert float(loss(real, [[0.7]])) == pytest.approx(-0.2 * np.log(0.3), rel=1e-5)


def test_gamma_0_without_alpha_is_binary_cross_entropy():
    y = np.array([[1.0], [0.0], [1.0], [0.0], [1.0], [0.0]], dtype="float32")
    p = np.array([[0.99], [0.01], [0.5], [0.7], [0.0], [1.0]], dtype="float32")  # incl. clipped extremes
    focal = BinaryFocalLoss(gamma=0.0, alpha=None)
    bce = keras.losses.BinaryCrossentropy()
    assert float(focal(y, p)) == pytest.approx(float(bce(y, p)), rel=1e-5)
    np.testing.assert_allclose(
        np.asarray(BinaryFocalLoss(gamma=0.0, alpha=None, reduction=None)(y, p)),
        np.asarray(keras.losses.BinaryCrossentropy(reduction=None)(y, p)),
        rtol=1e-5,
    )


def test_agrees_with_keras_binary_focal_crossentropy_inside_the_clip():
    ours = BinaryFocalLoss(gamma=2.0, alpha=0.25)
    theirs = keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.25, gamma=2.0)
    assert float(ours(Y, P)) == pytest.approx(float(theirs(Y, P)), rel=1e-5)


def test_confident_and_right_costs_little_confident_and_wrong_costs_a_lot():
    loss = BinaryFocalLoss(alpha=None)
    assert float(loss([[1.0]], [[0.95]])) < 1e-3 < float(loss([[1.0]], [[0.05]]))


def test_saturated_probabilities_give_finite_loss_and_gradient():
    y = tf.constant([[1.0], [0.0], [1.0], [0.0]])
    p = tf.Variable([[1.0], [0.0], [0.0], [1.0]])
    for gamma in (0.0, 0.5, 2.0):
        with tf.GradientTape() as tape:
            value = BinaryFocalLoss(gamma=gamma)(y, p)
        grad = tape.gradient(value, p)
        assert np.isfinite(float(value)) and np.all(np.isfinite(grad.numpy())), gamma


def test_sample_weights_are_honoured():
    w = np.array([1.0, 0.0, 0.0, 0.0], dtype="float32")
    got = BinaryFocalLoss(reduction="sum")(Y, P, sample_weight=w)
    assert float(got) == pytest.approx(focal_by_hand(Y, P, 2.0, 0.25)[0], rel=1e-5)


def test_serialises_and_rejects_bad_settings():
    loss = BinaryFocalLoss(gamma=1.5, alpha=None)
    back = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(back, BinaryFocalLoss) and (back.gamma, back.alpha) == (1.5, None)
    assert float(back(Y, P)) == pytest.approx(float(loss(Y, P)))
    with pytest.raises(ValueError, match="gamma"):
        BinaryFocalLoss(gamma=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        BinaryFocalLoss(alpha=1.5)


def test_flat_labels_against_column_predictions():
    """The input pipeline yields labels (n,), the models predict (n, 1): each prediction must be
    scored against its own label, as binary cross-entropy does."""
    import keras

    from deepfake_detection.models.losses import BinaryFocalLoss

    y_flat = np.array([0.0, 1.0, 1.0, 0.0], dtype="float32")
    p_col = np.array([[0.1], [0.9], [0.6], [0.3]], dtype="float32")
    bce = float(keras.losses.BinaryCrossentropy()(y_flat, p_col))
    assert float(BinaryFocalLoss(gamma=0.0, alpha=None)(y_flat, p_col)) == pytest.approx(bce, rel=1e-5)
    focal = BinaryFocalLoss(gamma=2.0, alpha=0.25)
    assert float(focal(y_flat, p_col)) == pytest.approx(float(focal(y_flat[:, None], p_col)), rel=1e-6)
