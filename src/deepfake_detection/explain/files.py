"""``explain`` on image files: :func:`explain_files` writes one PNG per image (the input | its
heat-map overlay), or with faces on one whole photo per input with each face's map and box."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from deepfake_detection.data.decode import check_images, decode_checked, decode_images, decode_native
from deepfake_detection.explain.detector import _Detector
from deepfake_detection.explain.overlay import _colour_bar, _to_uint8, faces_overlay, overlay
from deepfake_detection.serving.face_rows import find_faces
from deepfake_detection.serving.io import read_inputs

_logger = logging.getLogger(__name__)


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


def _unique_name(stem: str, used: set[str]) -> str:
    name, k = f"{stem}_gradcam.png", 1
    while name in used:
        k += 1
        name = f"{stem}_{k}_gradcam.png"
    used.add(name)
    return name


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

    detector = model_uri_or_path if isinstance(model_uri_or_path, _Detector) else _Detector(model_uri_or_path)
    paths = [Path(p) for p in images]
    contents, errors = read_inputs(pd.DataFrame({"path": [str(p) for p in paths]}))
    if faces is None:
        faces = detector.settings.faces
    if faces:
        return _explain_faces(detector, paths, contents, errors, Path(out_dir), layer_name, alpha)
    decoded, errors = _decode(detector, contents, errors)
    for p, e in zip(paths, errors):
        if e is not None:
            _logger.warning("skipping %s: %s", p, e)
    keep = [i for i, e in enumerate(errors) if e is None]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not keep:
        return []
    if detector.native:
        shown = [decoded[i] for i in keep]
        heatmaps, probs, member_probs = detector.explain_native(shown, layer_name)
    else:
        heatmaps, probs, member_probs = detector.explain({s: x[keep] for s, x in decoded.items()}, layer_name)
        shown = list(decoded[detector.sizes[-1]][keep])
    written: list[Path] = []
    used: set[str] = set()
    labels = distinct_labels(paths)
    for j, i in enumerate(keep):
        target = out_dir / _unique_name(_stem(labels[i]), used)
        caption = None if member_probs is None else detector.caption(member_probs[j])
        _save_figure(target, _to_uint8(shown[j]), heatmaps[j], labels[i], probs[j], caption, detector, alpha)
        written.append(target)
    return written


def _decode(detector: _Detector, contents, errors):
    """The images read, as the detector scores them (``views.scorer``): at their own resolution
    (a list, header-checked first), or at every member input size (``{size: pixels}``); and one
    error or None per image."""
    if detector.native:  # native resolution: whole images
        header_errors, _ = check_images(
            [c if e is None else None for c, e in zip(contents, errors)], detector.max_pixels
        )
        errors = [e or h for e, h in zip(errors, header_errors)]
        native, decode_errors = decode_native([c if e is None else None for c, e in zip(contents, errors)])
        return native, [e or d for e, d in zip(errors, decode_errors)]
    pixels = {}
    for size in detector.sizes:
        pixels[size], decode_errors = decode_images(contents, size, max_pixels=detector.max_pixels)
        errors = [e or d for e, d in zip(errors, decode_errors)]
    return pixels, errors


def _save_figure(target: Path, image, heatmap, name: str, probability: float, caption, detector, alpha: float):
    """One PNG: the input | its heat-map overlay, P(fake) and the decision in the title (the
    members' P(fake) under it for an ensemble: ``caption``)."""
    from matplotlib.figure import Figure

    threshold = detector.threshold
    label = "fake" if probability >= threshold else "real"
    fig = Figure(figsize=(6.4, 3.5))
    left, right = fig.subplots(1, 2)
    left.imshow(image)
    left.set_title("input")
    right.imshow(overlay(image, heatmap, alpha))
    right.set_title(detector.map_name)
    for ax in (left, right):
        ax.axis("off")
    _colour_bar(fig, right)
    title = f"{name}: P(fake) = {probability:.3f} -> {label} (threshold {threshold:.3f})"
    if caption is not None:
        title += "\n" + caption
    fig.suptitle(title, fontsize=10 if caption is None else 8)
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    _logger.info("%s: P(fake) %.3f -> %s (threshold %.3f): %s", name, probability, label, threshold, target)


def _explain_faces(detector: _Detector, paths, contents, errors, out_dir, layer_name, alpha):
    """:func:`explain_files` with faces on: one whole-photo PNG per photo with a face."""
    from PIL import Image

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
