"""Grad-CAM (Selvaraju et al. 2017) of one network, of an ensemble's decision and of a patch-view
image's grid of crops.

``gradcam`` takes the gradient of the model's decision score with respect to a 4-D feature
map (by default ``zoo.last_conv_layer_name(model)``: the last feature map before the head's
pooling), averages it over space into one weight per channel, and returns
``relu(sum_c weight_c * map_c)`` upsampled to the image size and scaled to [0, 1] per image.

The score is the sigmoid's input (the logit of P(fake)) when the output layer is a sigmoid
``Dense`` (all our models), so a saturated P(fake) = 1.0 still has gradients; otherwise the
output itself. ``target="predicted"`` (default) explains the model's decision for each image
(evidence for fake where it says fake, for real where it says real), ``"fake"``/``"real"`` one
class for all images. A map of 1 x 1 (EfficientNetB0 at 32 px: the backbone divides by 32)
can only give a constant heatmap; use 64 px or more, or name an earlier layer.
"""

from __future__ import annotations

import numpy as np

from deepfake_detection.data.views import grid_crops, score_crops, stitch_crops
from deepfake_detection.evaluation.ensemble import Ensemble
from deepfake_detection.models.zoo import last_conv_layer_name
from deepfake_detection.serving.members import input_size

TARGETS = ("predicted", "fake", "real")


def _score_model(model, layer_name: str):
    """A model ``x -> (feature map, score)``; the score is the output's logit where we can get it."""
    import keras

    feature = model.get_layer(layer_name).output
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    if isinstance(last, keras.layers.Dense) and getattr(activation, "__name__", "") == "sigmoid":
        return keras.Model(model.inputs, [feature, last.input]), last
    return keras.Model(model.inputs, [feature, model.output]), None


def gradcam_with_scores(
    model, images: np.ndarray, layer_name: str | None = None, *, target="predicted", threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps ``(n, S, S)`` in [0, 1] and P(fake) ``(n,)`` of ``images`` (see :func:`gradcam`).
    ``target`` may also be one bool per image: True explains fake, False real (how an
    ensemble's members are made to explain the ensemble's decision)."""
    import tensorflow as tf

    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be (n, S, S, 3) RGB pixels, got shape {x.shape}")
    if isinstance(target, str):
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; choose one of {TARGETS}")
    else:
        explain_fake = np.asarray(target, dtype=bool).reshape(-1)
        if explain_fake.shape != (len(x),):
            raise ValueError(f"a per-image target needs one bool per image ({len(x)}), got {explain_fake.shape}")
    if layer_name is None:
        layer_name = last_conv_layer_name(model)
    grad_model, dense = _score_model(model, layer_name)
    if len(grad_model.outputs[0].shape) != 4:
        raise ValueError(
            f"layer {layer_name!r} has output shape {grad_model.outputs[0].shape}: Grad-CAM needs a 4-D feature map"
        )
    x_t = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        features, head = grad_model(x_t, training=False)
        if dense is not None:  # the sigmoid's input: logit of P(fake)
            logit = tf.matmul(head, dense.kernel)
            if dense.bias is not None:
                logit = logit + dense.bias
            logit = tf.reshape(tf.cast(logit, tf.float32), [-1])
            prob = tf.sigmoid(logit)
        else:
            prob = tf.reshape(tf.cast(head, tf.float32), [-1])
            logit = prob
        if not isinstance(target, str):
            sign = tf.constant(np.where(explain_fake, 1.0, -1.0), dtype=tf.float32)
        elif target == "fake":
            sign = tf.ones_like(logit)
        elif target == "real":
            sign = -tf.ones_like(logit)
        else:
            sign = tf.where(prob >= threshold, 1.0, -1.0)
        score = tf.reduce_sum(sign * logit)
    grads = tape.gradient(score, features)
    if grads is None:
        raise ValueError(f"the output does not depend on layer {layer_name!r}")
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # one weight per channel and image
    cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[..., None]  # (n, h, w, 1)
    cam = tf.image.resize(cam, x.shape[1:3], method="bilinear")[..., 0].numpy().astype(np.float64)
    cam = np.maximum(cam, 0.0)
    peak = cam.reshape(len(cam), -1).max(axis=1)
    cam = np.divide(cam, peak[:, None, None], out=np.zeros_like(cam), where=peak[:, None, None] > 0)
    return np.clip(cam, 0.0, 1.0).astype(np.float32), prob.numpy().astype(np.float64)


def gradcam(
    model, images: np.ndarray, layer_name: str | None = None, *, target: str = "predicted", threshold: float = 0.5
) -> np.ndarray:
    """Grad-CAM heatmaps ``(n, S, S)`` in [0, 1] for float32 RGB ``images`` ``(n, S, S, 3)`` in [0, 255].

    ``layer_name``: the feature map to explain (default: ``zoo.last_conv_layer_name(model)``).
    ``target``: ``"predicted"`` (the class the model picks at ``threshold``), ``"fake"`` or
    ``"real"``. An image whose map is all negative gets an all-zero heatmap.
    """
    return gradcam_with_scores(model, images, layer_name, target=target, threshold=threshold)[0]


def member_influence(ensemble, P: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """How much each member moves the ensemble's P(fake) for each image: ``|d ensemble / d p_m|``
    by central differences, normalised to sum to 1 per image ``(n, k)``. Soft voting gives
    ``1/k``, a weighted mean its weights, stacking its local slopes. Where the ensemble is flat
    in every member (a majority vote away from every member's threshold) the members count
    alike."""
    P = np.asarray(P, dtype=np.float64)
    W = np.zeros_like(P)
    for m in range(P.shape[1]):
        up, down = P.copy(), P.copy()
        up[:, m] = np.clip(P[:, m] + eps, 0.0, 1.0)
        down[:, m] = np.clip(P[:, m] - eps, 0.0, 1.0)
        W[:, m] = np.abs(ensemble.predict(up) - ensemble.predict(down)) / (up[:, m] - down[:, m])
    W[W.sum(axis=1) <= 0] = 1.0
    return W / W.sum(axis=1, keepdims=True)


def ensemble_gradcam(models, ensemble, images, *, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grad-CAM of an ensemble's decision: heatmaps ``(n, D, D)`` at the largest member input
    size ``D``, the ensemble's P(fake) ``(n,)`` and the members' ``(n, k)``.

    Every member explains the ENSEMBLE's decision at ``threshold`` (evidence for fake where the
    ensemble says fake, for real where it says real) at its own last feature map; the maps are
    averaged with each member's :func:`member_influence` on that image and scaled to peak 1.
    ``ensemble``: an :class:`~deepfake_detection.evaluation.ensemble.Ensemble` or its
    ``to_dict()``. ``images``: ``{input size: (n, S, S, 3) pixels}``, or one array when every
    member takes the same size."""
    import tensorflow as tf

    ensemble = ensemble if isinstance(ensemble, Ensemble) else Ensemble.from_dict(ensemble)
    if len(models) != len(ensemble.members):
        raise ValueError(f"the ensemble has {len(ensemble.members)} members but {len(models)} models were given")
    sizes = [input_size(m) for m in models]
    if not isinstance(images, dict):
        if len(set(sizes)) > 1:
            raise ValueError(f"the members take different sizes {sorted(set(sizes))}: give {{size: pixels}}")
        images = {sizes[0]: images}
    x = {size: np.asarray(images[size], dtype=np.float32) for size in set(sizes)}
    P = np.stack([np.asarray(m(x[s], training=False)).reshape(-1) for m, s in zip(models, sizes)], axis=1)
    P = np.clip(P.astype(np.float64), 0.0, 1.0)
    p = np.asarray(ensemble.predict(P), dtype=np.float64)
    display = max(sizes)
    W = member_influence(ensemble, P)
    heat = np.zeros((len(p), display, display), dtype=np.float64)
    for m, (model, size) in enumerate(zip(models, sizes)):
        h = gradcam_with_scores(model, x[size], target=p >= threshold)[0]
        if size != display:
            h = tf.image.resize(h[..., None], (display, display), method="bilinear")[..., 0].numpy()
        heat += W[:, m, None, None] * h
    peak = heat.reshape(len(heat), -1).max(axis=1)
    heat = np.divide(heat, peak[:, None, None], out=np.zeros_like(heat), where=peak[:, None, None] > 0)
    return np.clip(heat, 0.0, 1.0).astype(np.float32), p, P


def patch_gradcam(
    models, ensemble, image: np.ndarray, patch: int, *, threshold: float = 0.5, layer_name: str | None = None
) -> tuple[np.ndarray, float, np.ndarray]:
    """Grad-CAM of one native-resolution ``(h, w, 3)`` image under the patch view: the heat map
    ``(h, w)`` stitched over the whole image from its grid crops' maps
    (:func:`~deepfake_detection.data.views.stitch_crops`), the image's P(fake) and the members'
    ``(k,)``, scored as serving scores it (each member's crops combined by
    ``views.score_crops``, then the ensemble). Every crop explains the IMAGE's decision; an
    ensemble's member maps are mixed by :func:`member_influence`. ``ensemble``: None for one
    model, else an :class:`~deepfake_detection.evaluation.ensemble.Ensemble`."""
    image = np.asarray(image, dtype=np.float32)
    height, width = image.shape[:2]
    crops = grid_crops(image, patch).numpy()

    def members(x):
        return np.stack([np.asarray(m(x, training=False)).reshape(-1) for m in models], axis=1)

    P = np.atleast_1d(score_crops(members, image, patch)).astype(np.float64)
    p = float(P[0]) if ensemble is None else float(np.asarray(ensemble.predict(P[None]))[0])
    W = np.ones((1, 1)) if ensemble is None else member_influence(ensemble, P[None])
    heat = np.zeros((height, width))
    for m, model in enumerate(models):
        maps = gradcam_with_scores(model, crops, layer_name, target=np.full(len(crops), p >= threshold))[0]
        heat += W[0, m] * stitch_crops(maps, height, width, patch)
    peak = heat.max()
    heat = heat / peak if peak > 0 else heat
    return np.clip(heat, 0.0, 1.0).astype(np.float32), p, P
