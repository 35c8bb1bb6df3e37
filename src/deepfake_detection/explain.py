"""Grad-CAM heatmaps (Selvaraju et al. 2017) for any of the four models, and overlays.

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

An ensemble is explained as a whole (:func:`ensemble_gradcam`), and a patch-view model
(``data.view: patches``) on its grid of native crops, their maps stitched over the whole image
(:func:`patch_gradcam`).

``explain_files(..., faces=True)`` (``explain --faces``) explains each face of a photo: the
crop the detector scores (:mod:`deepfake_detection.serving.face_rows`) is explained and its heatmap
blended back into the whole photo, face boxes drawn (:func:`faces_overlay`).

Images are float32 RGB pixels in [0, 255], ``(n, S, S, 3)``, as the models take them. Plots are
plain ``matplotlib.figure.Figure`` objects (no pyplot state), for ``mlflow.log_figure`` or
``savefig``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_logger = logging.getLogger(__name__)

TARGETS = ("predicted", "fake", "real")
COLORMAP = "jet"
"""The matplotlib colour map of every heat-map overlay (0: blue, 1: red)."""


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
        from deepfake_detection.models.zoo import last_conv_layer_name

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

    from deepfake_detection.evaluation.ensemble import Ensemble
    from deepfake_detection.serving.members import input_size

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


def mixed_maps(models, ensemble, image: np.ndarray, *, threshold: float = 0.5):
    """The map of one native-resolution ``(h, w, 3)`` image for a detector with forensic members:
    a forensic member's residual-energy map (``models.forensic.energy_map``: its head reads
    statistics pooled over the whole image, so there is no Grad-CAM), a CNN member's Grad-CAM of
    the detector's decision on the image resized to its input (as the pyfunc scores it), the maps
    resized to the image and averaged with each member's :func:`member_influence`. Returns the map
    ``(h, w)`` in [0, 1], the detector's P(fake) and the members' ``(k,)`` (one model: its own)."""
    import tensorflow as tf

    from deepfake_detection.data.pipeline import resize
    from deepfake_detection.evaluation.ensemble import Ensemble
    from deepfake_detection.models.forensic import energy_map
    from deepfake_detection.serving.members import input_size

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
    from deepfake_detection.data.views import grid_crops, score_crops, stitch_crops

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


def native_map(
    models, ensemble, image: np.ndarray, patch: int, *, threshold: float = 0.5, layer_name: str | None = None
) -> tuple[np.ndarray, float, np.ndarray]:
    """The map ``(h, w)`` of one image scored at its own resolution, its P(fake) and the members'
    (:func:`mixed_maps` where a member is forensic, a network of any input size: residual energy;
    else :func:`patch_gradcam`, the grid crops' Grad-CAM stitched over the image)."""
    from deepfake_detection.serving.members import input_size

    if any(input_size(m) is None for m in models):
        return mixed_maps(models, ensemble, image, threshold=threshold)
    return patch_gradcam(models, ensemble, image, patch, threshold=threshold, layer_name=layer_name)


def _to_uint8(image) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(np.round(image.astype(np.float64)), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return image[..., :3]


def overlay(image_uint8: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """The image with the heatmap (``jet`` colours) blended in at ``alpha``; uint8 RGB, image size."""
    from matplotlib import colormaps
    from PIL import Image

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    image = _to_uint8(image_uint8)
    heat = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0.0, 1.0)
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be 2-D, got shape {heat.shape}")
    if heat.shape != image.shape[:2]:
        heat = np.asarray(Image.fromarray(heat, mode="F").resize(image.shape[1::-1], Image.BILINEAR))
    colours = colormaps[COLORMAP](heat)[..., :3] * 255.0
    blended = (1.0 - alpha) * image.astype(np.float64) + alpha * colours
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def overlay_grid(
    images: Sequence[np.ndarray],
    heatmaps: Sequence[np.ndarray],
    titles: Sequence[str],
    *,
    ncols: int = 4,
    alpha: float = 0.4,
):
    """A Figure of Grad-CAM overlays, one panel per image with its title (e.g. "TP p=0.93")."""
    from matplotlib.figure import Figure

    n = len(images)
    if not (n == len(heatmaps) == len(titles)):
        raise ValueError(f"need as many heatmaps and titles as images: {n}, {len(heatmaps)}, {len(titles)}")
    if n == 0:
        raise ValueError("overlay_grid needs at least one image")
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig = Figure(figsize=(3.0 * ncols, 3.2 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, image, heat, title in zip(axes, images, heatmaps, titles):
        ax.imshow(overlay(image, heat, alpha))
        ax.set_title(str(title), fontsize=9)
    fig.tight_layout()
    return fig


class _Detector:
    """What ``explain`` needs of a model: its Keras member(s), the ensemble combining them (or
    None), the threshold, pixel limit and metadata it carries, and each member's input size."""

    def __init__(self, model_uri_or_path: str | Path):
        from deepfake_detection.data.views import scorer
        from deepfake_detection.evaluation.ensemble import Ensemble
        from deepfake_detection.serving.members import input_size, load_keras_detector
        from deepfake_detection.serving.settings import DetectorSettings

        self.models, description, self.metadata = load_keras_detector(model_uri_or_path)
        self.ensemble = Ensemble.from_dict(description) if description else None
        self.settings = DetectorSettings.from_metadata(self.metadata)
        self.threshold = self.settings.threshold
        self.max_pixels = self.settings.max_pixels
        self.sizes = sorted({input_size(m) for m in self.models} - {None})
        self.view = self.settings.view
        views = self.settings.views(len(self.models))
        self.member_views = ["native" if input_size(m) is None else v for m, v in zip(self.models, views)]
        self.forensic = "native" in self.member_views
        self.native = any(scorer(v).native for v in [self.view, *self.member_views])  # decoded at own resolution
        self.map_name = "Grad-CAM"
        if self.forensic:
            only = self.ensemble is None or all(v == "native" for v in self.member_views)
            self.map_name = "residual energy (forensic: no Grad-CAM)" if only else "Grad-CAM + residual energy"

    def explain(self, pixels: dict[int, np.ndarray], layer_name: str | None):
        """Heatmaps at the largest input size, P(fake) and the members' P(fake) (``None`` for
        one model) of pixels decoded at every input size."""
        if self.ensemble is None:
            heat, probs = gradcam_with_scores(
                self.models[0], pixels[self.sizes[0]], layer_name, threshold=self.threshold
            )
            return heat, probs, None
        self._check_layer(layer_name)
        return ensemble_gradcam(self.models, self.ensemble, pixels, threshold=self.threshold)

    def explain_native(self, images: list[np.ndarray], layer_name: str | None):
        """:meth:`explain` under the patch view: native-resolution images, one stitched heat map
        each (lists, as the sizes differ), P(fake) and the members' P(fake) (None for one model).
        A forensic network gets its residual-energy map (``models.forensic.energy_map``)."""
        self._check_layer(layer_name)
        patch = self.sizes[0] if self.sizes else None
        out = [
            native_map(self.models, self.ensemble, im, patch, threshold=self.threshold, layer_name=layer_name)
            for im in images
        ]
        heat = [h for h, _, _ in out]
        probs = np.array([p for _, p, _ in out])
        return heat, probs, None if self.ensemble is None else np.stack([P for _, _, P in out])

    def _check_layer(self, layer_name: str | None) -> None:
        """A named layer belongs to one network: an ensemble's members each use their own."""
        if self.ensemble is not None and layer_name is not None:
            raise ValueError(
                "layer_name names a layer of one network; an ensemble's members are explained at their own"
            )

    def caption(self, member_probs) -> str:
        """'soft_vote of 4: resnet50 0.51, light_se_cnn 0.93, ...' (empty for one model)."""
        if self.ensemble is None:
            return ""
        members = ", ".join(f"{n} {q:.2f}" for n, q in zip(self.ensemble.members, member_probs))
        return f"{self.ensemble.kind} of {len(self.ensemble.members)}: {members}"


def distinct_labels(paths: Sequence[Path]) -> list[str]:
    """Each input's name, or where two inputs share a file name, its last folders too
    (``fake/00001.jpg``, ``real/00001.jpg``): the label in the titles and the output names."""
    parts = [Path(p).parts for p in paths]
    labels = []
    for mine in parts:
        depth = 1
        while depth < len(mine) and sum(other[-depth:] == mine[-depth:] for other in parts) > 1:
            depth += 1
        labels.append("/".join(mine[-depth:]))
    return labels


def _stem(label: str) -> str:
    """``fake/00001.jpg`` -> ``fake_00001``: the output name's stem."""
    return Path(label).with_suffix("").as_posix().replace("/", "_")


def load_explainer(model_uri_or_path: str | Path) -> _Detector:
    """A detector's Keras member(s) loaded once, to pass to :func:`explain_files` many times
    (the web app explains every upload without reloading the model)."""
    return _Detector(model_uri_or_path)


def _unique_name(stem: str, used: set[str]) -> str:
    name, k = f"{stem}_gradcam.png", 1
    while name in used:
        k += 1
        name = f"{stem}_{k}_gradcam.png"
    used.add(name)
    return name


FAKE_COLOUR, REAL_COLOUR = (255, 40, 40), (40, 220, 40)
"""The colour of a face box on a ``--faces`` overlay: labelled fake, labelled real."""


def faces_overlay(rgb: np.ndarray, faces, heatmaps, probabilities, threshold: float, alpha: float = 0.4) -> np.ndarray:
    """The whole photo ``rgb`` with each face's Grad-CAM (computed on its crop) blended back
    into the face's crop box at the photo's resolution, and each face box drawn (red: fake,
    green: real) with its number and P(fake). Faces come largest first; later (smaller) ones
    are drawn over earlier ones. uint8 RGB, the photo's size."""
    from PIL import Image, ImageDraw

    canvas = _to_uint8(rgb).copy()
    for face, heat in zip(faces, heatmaps):
        left, top, right, bottom = face.crop_box
        canvas[top:bottom, left:right] = overlay(canvas[top:bottom, left:right], heat, alpha)
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    width = max(2, round(min(image.size) / 250))
    for k, (face, p) in enumerate(zip(faces, probabilities)):
        x, y, w, h = face.box
        colour = FAKE_COLOUR if p >= threshold else REAL_COLOUR
        draw.rectangle([x, y, x + w - 1, y + h - 1], outline=colour, width=width)
        text = f"{k}: P(fake) {p:.2f} {'fake' if p >= threshold else 'real'}"
        left, top, right, bottom = draw.textbbox((x, 0), text)
        top_y = max(0, y - (bottom - top) - 2 * width)  # above the box, or at the photo's top
        draw.rectangle([x, top_y, x + right - left + 4, top_y + bottom - top + 4], fill=(0, 0, 0))
        draw.text((x + 2, top_y + 2 - top), text, fill=colour)
    return np.asarray(image)


def explain_files(
    model_uri_or_path: str | Path,
    images: Sequence[Path | str],
    out_dir: Path | str,
    *,
    layer_name: str | None = None,
    alpha: float = 0.4,
    faces: bool | None = None,
) -> list[Path]:
    """Write one PNG per image (the model's input | its Grad-CAM overlay, P(fake) in the title)
    into ``out_dir``; return their paths (undecodable images are skipped with a warning).

    ``model_uri_or_path``: a ``.keras`` file or a logged detector (``models:/...``, ``runs:/...``,
    a model folder), or one loaded by :func:`load_explainer`. An ensemble is explained as a whole
    (:func:`ensemble_gradcam`: every member's map of the ensemble's decision, weighted by its
    influence), the members' P(fake) under the title. Images are decoded and resized exactly as for prediction.

    ``faces`` (default: the detector's ``faces`` flag; off for a ``.keras`` file): every face of
    each photo is found and cropped as for prediction (the detector's ``face_settings``), each
    crop explained, and the PNG is the WHOLE photo (its size, upright) with each crop's Grad-CAM
    blended back into its crop box and the face boxes drawn (:func:`faces_overlay`). A photo
    without a face is skipped with a warning, as an undecodable one.
    """
    import pandas as pd
    from matplotlib.figure import Figure

    from deepfake_detection.data.decode import check_images, decode_images, decode_native
    from deepfake_detection.serving.io import read_inputs

    detector = model_uri_or_path if isinstance(model_uri_or_path, _Detector) else _Detector(model_uri_or_path)
    paths = [Path(p) for p in images]
    contents, errors = read_inputs(pd.DataFrame({"path": [str(p) for p in paths]}))
    if faces is None:
        faces = detector.settings.faces
    if faces:
        return _explain_faces(detector, paths, contents, errors, Path(out_dir), layer_name, alpha)
    if detector.native:  # native resolution: whole images (views.scorer)
        header_errors, _ = check_images(
            [c if e is None else None for c, e in zip(contents, errors)], detector.max_pixels
        )
        errors = [e or h for e, h in zip(errors, header_errors)]
        native, decode_errors = decode_native([c if e is None else None for c, e in zip(contents, errors)])
        errors = [e or d for e, d in zip(errors, decode_errors)]
    else:
        pixels = {}
        for size in detector.sizes:
            pixels[size], decode_errors = decode_images(contents, size, max_pixels=detector.max_pixels)
            errors = [e or d for e, d in zip(errors, decode_errors)]
    for p, e in zip(paths, errors):
        if e is not None:
            _logger.warning("skipping %s: %s", p, e)
    keep = [i for i, e in enumerate(errors) if e is None]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not keep:
        return []
    if detector.native:
        shown = [native[i] for i in keep]
        heatmaps, probs, member_probs = detector.explain_native(shown, layer_name)
    else:
        heatmaps, probs, member_probs = detector.explain({s: x[keep] for s, x in pixels.items()}, layer_name)
        shown = list(pixels[detector.sizes[-1]][keep])
    threshold = detector.threshold
    written: list[Path] = []
    used: set[str] = set()
    labels = distinct_labels(paths)
    for j, i in enumerate(keep):
        name = _unique_name(_stem(labels[i]), used)
        image = _to_uint8(shown[j])
        label = "fake" if probs[j] >= threshold else "real"
        fig = Figure(figsize=(6.4, 3.5))
        left, right = fig.subplots(1, 2)
        left.imshow(image)
        left.set_title("input")
        right.imshow(overlay(image, heatmaps[j], alpha))
        right.set_title(detector.map_name)
        for ax in (left, right):
            ax.axis("off")
        _colour_bar(fig, right)
        title = f"{labels[i]}: P(fake) = {probs[j]:.3f} -> {label} (threshold {threshold:.3f})"
        if member_probs is not None:
            title += "\n" + detector.caption(member_probs[j])
        fig.suptitle(title, fontsize=10 if member_probs is None else 8)
        fig.tight_layout()
        target = out_dir / name
        fig.savefig(target, dpi=100)
        written.append(target)
        _logger.info("%s: P(fake) %.3f -> %s (threshold %.3f): %s", labels[i], probs[j], label, threshold, target)
    return written


def _colour_bar(fig, ax) -> None:
    """The heat map's scale beside ``ax``: ``jet``, 0 (no weight) to 1 (the map's maximum)."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), colormaps["jet"]), ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("Grad-CAM weight", fontsize=8)


def _explain_faces(detector: _Detector, paths, contents, errors, out_dir, layer_name, alpha):
    """:func:`explain_files` with faces on: one whole-photo PNG per photo with a face."""
    from PIL import Image

    from deepfake_detection.data.decode import check_images, decode_checked
    from deepfake_detection.serving.face_rows import find_faces

    settings = detector.settings.face_settings
    header_errors, _ = check_images([c if e is None else None for c, e in zip(contents, errors)], detector.max_pixels)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    used: set[str] = set()
    labels = distinct_labels(paths)
    for path, label, data, error in zip(paths, labels, contents, [e or h for e, h in zip(errors, header_errors)]):
        pixels = {}
        if error is None:
            try:
                found, crops, rgb = find_faces(data, detector.sizes, settings, detector.max_pixels)
            except ValueError as err:
                error = str(err)
        for size in detector.sizes if error is None else ():
            pixels[size], crop_errors = decode_checked(crops[size], size)
            error = next((e for e in crop_errors if e is not None), None)
            if error is not None:
                break
        if error is not None:
            _logger.warning("skipping %s: %s", path, error)
            continue
        heatmaps, probs, _ = detector.explain(pixels, layer_name)
        image = faces_overlay(rgb, found, heatmaps, probs, detector.threshold, alpha)
        target = out_dir / _unique_name(_stem(label), used)
        Image.fromarray(image).save(target, "PNG")
        written.append(target)
        scores = ", ".join(f"{p:.3f}" for p in probs)
        _logger.info(
            "%s: %d face(s), P(fake) %s (threshold %.3f): %s", label, len(probs), scores, detector.threshold, target
        )
    return written
