"""The map of one image scored whole at its own resolution: a forensic member's residual energy
mixed with the CNN members' Grad-CAM (:func:`mixed_maps`), or a patch-view image's grid of crops
stitched (:func:`~deepfake_detection.explain.gradcam.patch_gradcam`); :func:`native_map` picks.
"""

from __future__ import annotations

import keras
import numpy as np

from deepfake_detection.data.pipeline import resize
from deepfake_detection.evaluation.ensemble import Ensemble
from deepfake_detection.explain.gradcam import gradcam_with_scores, member_influence, patch_gradcam
from deepfake_detection.models.forensic import KERNEL
from deepfake_detection.serving.members import input_size


def mixed_maps(models, ensemble, image: np.ndarray, *, threshold: float = 0.5):
    """The map of one native-resolution ``(h, w, 3)`` image for a detector with forensic members:
    a forensic member's residual-energy map (:func:`energy_map`: its head reads
    statistics pooled over the whole image, so there is no Grad-CAM), a CNN member's Grad-CAM of
    the detector's decision on the image resized to its input (as the pyfunc scores it), the maps
    resized to the image and averaged with each member's :func:`member_influence`. Returns the map
    ``(h, w)`` in [0, 1], the detector's P(fake) and the members' ``(k,)`` (one model: its own)."""
    import tensorflow as tf

    h, w = image.shape[:2]
    sizes = [input_size(m) for m in models]
    inputs = [image[np.newaxis] if s is None else resize(image, s).numpy()[np.newaxis] for s in sizes]
    P = np.array([[float(np.asarray(m(x, training=False)).reshape(-1)[0]) for m, x in zip(models, inputs)]])
    P = np.clip(P, 0.0, 1.0)
    if ensemble is None:
        p, W = P[:, 0], np.ones((1, 1))
    else:
        ensemble = ensemble if isinstance(ensemble, Ensemble) else Ensemble.from_dict(ensemble)
        p, W = np.asarray(ensemble.predict(P), dtype=np.float64), member_influence(ensemble, P)
    heat = np.zeros((h, w))
    for m, (model, size, x) in enumerate(zip(models, sizes, inputs)):
        if size is None:
            part = energy_map(model, image)
        else:
            part = gradcam_with_scores(model, x, target=p >= threshold)[0][0]
            part = tf.image.resize(part[..., None], (h, w), method="bilinear")[..., 0].numpy()
        heat += W[0, m] * part
    peak = heat.max()
    return np.clip(heat / peak if peak > 0 else heat, 0.0, 1.0), float(p[0]), P[0]


def native_map(
    models, ensemble, image: np.ndarray, patch: int, *, threshold: float = 0.5, layer_name: str | None = None
) -> tuple[np.ndarray, float, np.ndarray]:
    """The map ``(h, w)`` of one image scored at its own resolution, its P(fake) and the members'
    (:func:`mixed_maps` where a member is forensic, a network of any input size: residual energy;
    else :func:`patch_gradcam`, the grid crops' Grad-CAM stitched over the image)."""
    if any(input_size(m) is None for m in models):
        return mixed_maps(models, ensemble, image, threshold=threshold)
    return patch_gradcam(models, ensemble, image, patch, threshold=threshold, layer_name=layer_name)


def energy_map(model, image: np.ndarray) -> np.ndarray:
    """Where a forensic network's fixed high-pass part responds in one ``(h, w, 3)`` image, as an
    ``(h, w)`` map in [0, 1]: the mean |residual| per pixel (``residual_cooc``) or the mean |AC
    coefficient| of Y per 8x8 block (``block_dct``). Not Grad-CAM: the head reads histograms pooled over
    the whole image, so no map of the decision exists; this shows where the statistics come from."""
    names = {layer.name for layer in model.layers}
    layer, crop = ("residual_filters", KERNEL // 2) if "residual_filters" in names else ("dct_blocks", 0)
    if layer not in names:
        raise ValueError(f"{model.name!r} is not a forensic network (no residual_filters or dct_blocks layer)")
    response = keras.Model(model.input, model.get_layer(layer).output)
    out = np.asarray(response(np.asarray(image, "float32")[np.newaxis]))[0]
    h, w = image.shape[:2]
    if crop:  # per-pixel residuals of the valid 5x5 convolution: pad back to the image's size
        energy = np.pad(np.abs(out).mean(axis=-1), crop, mode="edge")
    else:  # per block: the AC coefficients' magnitude, spread over the block's pixels
        blocks = np.abs(out[..., 1:64]).mean(axis=-1)  # Y's AC coefficients
        energy = np.kron(blocks, np.ones((8, 8)))
        energy = np.pad(energy, ((0, h - energy.shape[0]), (0, w - energy.shape[1])), mode="edge")
    return (energy / max(float(energy.max()), 1e-12))[:h, :w]
