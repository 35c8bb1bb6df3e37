"""One read -> check -> decode -> score path for every kind of row a detector scores: whole images
(:func:`score_rows`, the pyfunc's and the ONNX runner's rows) and face crops
(:mod:`deepfake_detection.serving.face_rows`).

Rows are read by :mod:`deepfake_detection.serving.io` (which ``path`` rows may be read:
:func:`~deepfake_detection.serving.io.path_access`) and checked from their header
(:func:`read_checked`), then decoded and scored (:func:`decode_and_score`): at each network's
input size by :mod:`deepfake_detection.data.decode` (the training pipeline's ``decode_resize``),
or at their own resolution (``views.decode_at``). A bad row gets its ``error`` and never fails
the batch; :func:`result_frame` gives the detector's output columns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from deepfake_detection import LABELS
from deepfake_detection.data import decode
from deepfake_detection.data.images import MAX_PIXELS
from deepfake_detection.serving.io import LOCAL_ACCESS, PathAccess, read_inputs

OUTPUT_COLUMNS = ("probability_fake", "label", "threshold", "error", "warning")
SCORE_CHUNK = 256
"""Rows decoded and scored together: the decoded pixels of one chunk at a time are held
(256 x 128² x 3 float32 = 50 MB at 128 px), however many rows a request has."""


def read_checked(
    model_input: pd.DataFrame, access: PathAccess = LOCAL_ACCESS, max_pixels: int = MAX_PIXELS
) -> tuple[list[bytes | None], list[str | None], list[str | None]]:
    """Each row's encoded bytes (:func:`read_inputs` with ``access``), checked from its header
    (:func:`~deepfake_detection.data.decode.check_images` with ``max_pixels`` and the request's
    pixel budget ``access.request_pixels``): the bytes, one error or None per row, and one
    warning or None per row."""
    contents, errors = read_inputs(model_input, access)
    header_errors, warnings_ = decode.check_images(
        [c if e is None else None for c, e in zip(contents, errors)], max_pixels, access.request_pixels
    )
    return contents, [e or h for e, h in zip(errors, header_errors)], warnings_


def decode_and_score(
    encoded: Mapping[int | None, Sequence[bytes]], score: Callable
) -> tuple[np.ndarray, list[str | None]]:
    """Decode the same entries at every size of ``encoded`` (size -> the entries' bytes at that
    size; ``None``: at their own resolution, ``views.decode_at``) and ``score`` those that decode
    at every size: P(fake) ``(n,)`` (NaN where an entry failed) and one error or None per entry.
    ``score`` gets the pixels keyed by size, or for the size ``None`` the list of images."""
    from deepfake_detection.data.views import decode_at  # TensorFlow: only when rows are decoded

    n = len(next(iter(encoded.values()))) if encoded else 0
    errors: list[str | None] = [None] * n
    decoded = {}
    for size in sorted(encoded, key=lambda s: (s is not None, s or 0)):
        decoded[size], decode_errors = decode_at(encoded[size], size)
        errors = [e or d for e, d in zip(errors, decode_errors)]
    probabilities = np.full(n, np.nan)
    good = [j for j, e in enumerate(errors) if e is None]
    if good:
        if None in decoded:
            probabilities[good] = score([decoded[None][j] for j in good])
        else:
            probabilities[good] = score({s: x[good] for s, x in decoded.items()})
    return probabilities, errors


def score_rows(
    model_input: pd.DataFrame,
    sizes: Sequence[int],
    score: Callable[[dict[int, np.ndarray]], np.ndarray],
    *,
    access: PathAccess = LOCAL_ACCESS,
    max_pixels: int = MAX_PIXELS,
    native: bool = False,
) -> tuple[np.ndarray, list[str | None], list[str | None]]:
    """Read and check every row (:func:`read_checked`), decode it (once per input size in
    ``sizes``) and ``score`` the decodable ones (pixels keyed by size -> P(fake)),
    :data:`SCORE_CHUNK` rows at a time (:func:`decode_and_score`). Returns P(fake), NaN where a
    row failed, one error message or None per row (a bad row never fails the batch) and one
    warning or None per row. ``native`` (a view that reads images at their own resolution):
    rows are decoded at their own resolution and ``score`` gets the list of ``(h, w, 3)``
    images instead (``sizes`` is not used)."""
    contents, errors, warnings_ = read_checked(model_input, access, max_pixels)
    ok = [i for i, e in enumerate(errors) if e is None]
    probabilities = np.full(len(contents), np.nan)
    decoded_sizes = [None] if native else sorted(set(sizes))
    for start in range(0, len(ok), SCORE_CHUNK):
        rows = ok[start : start + SCORE_CHUNK]
        chunk = [contents[i] for i in rows]
        p, chunk_errors = decode_and_score({size: chunk for size in decoded_sizes}, score)
        probabilities[rows] = p
        for i, e in zip(rows, chunk_errors):
            errors[i] = errors[i] or e
    warnings_ = [None if e else w for e, w in zip(errors, warnings_)]
    return probabilities, errors, warnings_


def result_frame(
    probabilities: np.ndarray,
    errors: Sequence[str | None],
    threshold: float,
    warnings: Sequence[str | None] | None = None,
) -> pd.DataFrame:
    """The detector's output columns for per-row probabilities (NaN where ``errors`` says why)."""
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    failed = np.array([e is not None for e in errors], dtype=bool)
    p = np.where(failed, np.nan, p)
    labels = [None if bad else LABELS[int(q >= threshold)] for q, bad in zip(p, failed)]
    return pd.DataFrame(
        {
            "probability_fake": p,
            "label": pd.Series(labels, dtype=object),
            "threshold": np.full(len(p), float(threshold)),
            "error": pd.Series(list(errors), dtype=object),
            "warning": pd.Series(list(warnings) if warnings is not None else [None] * len(p), dtype=object),
        }
    )
