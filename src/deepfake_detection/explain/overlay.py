"""Heat maps drawn over images: one overlay (:func:`overlay`), a grid of them (:func:`overlay_grid`),
a whole photo with each face's map and box (:func:`faces_overlay`) and the map's colour bar.
Plots are plain ``matplotlib.figure.Figure`` objects (no pyplot state), for ``mlflow.log_figure``
or ``savefig``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

COLORMAP = "jet"
"""The matplotlib colour map of every heat-map overlay (0: blue, 1: red)."""


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


def _colour_bar(fig, ax) -> None:
    """The heat map's scale beside ``ax``: ``jet``, 0 (no weight) to 1 (the map's maximum)."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), colormaps["jet"]), ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("Grad-CAM weight", fontsize=8)
