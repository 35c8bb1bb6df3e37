"""The face path of inference: every face of each photo found, cropped and scored on its own.

With faces on (a detector's ``faces`` flag, set at registration when its training data were
face crops; a request's ``faces`` param; ``predict --faces``), a whole photo gives one row per
face found (largest first), with the face's box::

    input            int     the index of the input row (the photo)
    face             int     0, 1, ... within the photo (largest first); None when the row failed
    face_x, face_y   int     the face box's top-left corner, in the upright photo's pixels
    face_w, face_h   int     its width and height
    face_confidence  float   the detector's confidence (NaN when the row failed)

followed by the usual columns (``probability_fake``, ``label``, ``threshold``, ``error``,
``warning``). A photo in which no face is found gets one row with ``error`` =
:data:`~deepfake_detection.data.faces.NO_FACE` and no probability; so does (with its own error)
one that cannot be read or decoded.

Each photo is read and checked from its header first (the pixel limit, the smallest side:
nothing huge or undecodable reaches the face detector), decoded upright to RGB as
``ingest --faces`` decodes a file (:func:`~deepfake_detection.data.images.decode_rgb`), its
faces found and cut by :func:`~deepfake_detection.data.faces.detect_faces` / ``cut`` at the
model's input size, and each crop encoded as PNG and scored through the model's normal
decode/resize path (:func:`~deepfake_detection.data.decode.decode_checked`), exactly as the
crops ``ingest --faces`` wrote were read in training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from deepfake_detection.config import FacesParams
from deepfake_detection.data.faces import NO_FACE, Face, cut, detect_faces
from deepfake_detection.data.images import MAX_PIXELS, SMALL_SIDE, ImageError, decode_rgb, encode
from deepfake_detection.serving.io import LOCAL_ACCESS, PathAccess
from deepfake_detection.serving.rows import OUTPUT_COLUMNS, decode_and_score, read_checked, result_frame
from deepfake_detection.serving.settings import face_settings  # noqa: F401  (re-exported: the face path's settings)

BOX_COLUMNS = ("face_x", "face_y", "face_w", "face_h", "face_confidence")
FACE_COLUMNS = ("input", "face", *BOX_COLUMNS)
FACE_OUTPUT_COLUMNS = (*FACE_COLUMNS, *OUTPUT_COLUMNS)
"""The columns of a prediction with faces on, in order."""


def find_faces(
    data: bytes, sizes: Sequence[int], settings: FacesParams, max_pixels: int = MAX_PIXELS
) -> tuple[list[Face], dict[int, list[bytes]], np.ndarray]:
    """The faces of one encoded photo (already checked from its header), largest first, each
    one's crop as PNG bytes at every size in ``sizes``, and the upright RGB photo. Raises
    ``ValueError`` with the row's message when the photo does not decode or holds no face."""
    try:
        rgb = decode_rgb(data, max_pixels=max_pixels)
    except ImageError as err:
        raise ValueError(f"not a decodable image: {err.reason} ({err.detail})") from None
    found = detect_faces(rgb, settings)
    if not found:
        raise ValueError(NO_FACE)
    crops = {size: [encode(cut(rgb, face, size), "png") for face in found] for size in sorted(set(sizes))}
    return found, crops, rgb


def face_warning(face: Face) -> str | None:
    """Why a face's score is less reliable: a crop under ``SMALL_SIDE`` pixels a side (upscaled)."""
    left, top, right, bottom = face.crop_box
    w, h = right - left, bottom - top
    if min(w, h) < SMALL_SIDE:
        return f"small face (a {w}x{h} pixel crop, under {SMALL_SIDE} a side): upscaled, a less reliable score"
    return None


def score_faces(
    model_input: pd.DataFrame,
    sizes: Sequence[int],
    score: Callable[[dict[int, np.ndarray]], np.ndarray],
    threshold: float,
    settings: FacesParams | None = None,
    *,
    access: PathAccess = LOCAL_ACCESS,
    max_pixels: int = MAX_PIXELS,
) -> pd.DataFrame:
    """One row per face of every input photo (:data:`FACE_OUTPUT_COLUMNS`), or one row with the
    error of a photo that gave no face; ``score`` maps crop pixels keyed by size to P(fake), as
    for :func:`~deepfake_detection.serving.rows.score_rows`. A bad row never fails the batch."""
    settings = settings or FacesParams()
    contents, errors, _ = read_checked(model_input, access, max_pixels)
    sizes = sorted(set(sizes))
    rows: list[tuple[int, int | None, Face | None, str | None]] = []  # input, face index, face, error
    encoded: dict[int, list[bytes]] = {s: [] for s in sizes}
    for i, (data, error) in enumerate(zip(contents, errors)):
        if error is None:
            try:
                found, crops, _ = find_faces(data, sizes, settings, max_pixels)
            except ValueError as err:
                error = str(err)
        if error is not None:
            rows.append((i, None, None, error))
            continue
        for k, face in enumerate(found):
            rows.append((i, k, face, None))
        for s in sizes:
            encoded[s].extend(crops[s])

    face_rows = [j for j, row in enumerate(rows) if row[2] is not None]
    row_errors = [row[3] for row in rows]
    probabilities = np.full(len(rows), np.nan)
    if face_rows:  # every crop through the path whole images take
        probabilities[face_rows], crop_errors = decode_and_score(encoded, score)
        for j, e in zip(face_rows, crop_errors):
            row_errors[j] = row_errors[j] or e
    warnings_ = [
        face_warning(face) if face is not None and error is None else None
        for (_, _, face, _), error in zip(rows, row_errors)
    ]
    out = result_frame(probabilities, row_errors, threshold, warnings_)
    boxes = [face.box if face is not None else (None,) * 4 for _, _, face, _ in rows]
    columns = {
        "input": np.array([row[0] for row in rows], dtype=np.int64),
        "face": pd.Series([row[1] for row in rows], dtype=object),
        **{name: pd.Series([b[k] for b in boxes], dtype=object) for k, name in enumerate(BOX_COLUMNS[:4])},
        "face_confidence": np.array(
            [face.confidence if face is not None else np.nan for _, _, face, _ in rows], dtype=np.float64
        ),
    }
    for position, (name, values) in enumerate(columns.items()):
        out.insert(position, name, values)
    return out
