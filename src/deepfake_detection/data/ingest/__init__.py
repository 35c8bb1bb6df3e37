"""Bring a user's image dataset into the project layout ``dest/{train,valid,test}/{real,fake}/``.

Accepted source layouts (folder names are matched case-insensitively):

* **split**: ``src/<split>/<class>/...`` with ``<split>`` one of ``train``/``training``,
  ``valid``/``validation``/``val``, ``test``/``testing``. A missing split folder or a
  missing/empty class folder is a warning in the report, not an error. The source's split is
  kept as it is (``valid_fraction``, ``test_fraction`` and ``seed`` are unused).
* **flat**: ``src/<class>/...``; the files are split into train/valid/test here, per class
  (stratified), by a seeded shuffle (:func:`~deepfake_detection.data.split.assign_splits`):
  the same files and seed always give the same split, and byte-identical files (same md5) land
  in one split, so a duplicate cannot leak from train into valid or test.
* **split in the folder names**: ``src/<split>_<class>/...`` (``training_real``,
  ``test_fake``...) when the class folders carry *different* split words; otherwise (e.g.
  only ``training_real`` and ``training_fake``) it is the flat layout.

``<class>`` is a folder whose name contains exactly one class word (``real``/``reals`` or
``fake``/``fakes``) as a separate token: ``Real``, ``real_images``, ``training_fake`` and
``0_real`` qualify; ``unreal`` and ``real_and_fake`` do not. A chain of single wrapper
folders above the layout (``src/archive/dataset/train/...``) is descended into.

Every file below a class folder (recursively, hidden files included) is *seen* and decoded
with :func:`~deepfake_detection.data.images.inspect_image`; a file is either *written* or
*skipped* with a reason, never dropped silently (``written + skipped == seen`` is checked).
Anything outside the class folders is listed under ``ignored``.

What is written
---------------
* ``reencode=None``: JPEG and PNG files in mode ``RGB`` or ``L`` without an EXIF rotation
  are **copied byte for byte**. Every other readable file (CMYK JPEG, 16-bit / palette /
  transparent PNG, BMP, TIFF, WebP, GIF, EXIF-rotated photos...) is **converted**: decoded,
  rotated upright, turned into 8-bit RGB with :func:`~deepfake_detection.data.images.to_rgb`
  and written as lossless PNG, so the training pipeline only ever meets 8-bit RGB/gray JPEG
  and PNG. Each such file is listed under ``converted_files`` with why. (Converting rather
  than skipping keeps the user's data; PNG avoids a second lossy compression.)
* ``reencode="jpeg"`` or ``"png"``: every file is converted that way into the one format
  (JPEG at ``quality``).
* ``faces=FacesParams(...)`` (``ingest --faces``): every readable file is decoded (upright,
  RGB), the **largest face** found by :mod:`~deepfake_detection.data.faces` (MTCNN) is cut out
  with the settings' margin, resized to ``face_size`` and written as lossless PNG. A file with
  no face is skipped with the reason ``no_face`` (:data:`NO_FACE_REASON`), before the split, so
  a flat layout is split over the images that have a face. ``dest/faces.csv``
  (:data:`~deepfake_detection.data.manifest.FACES_CSV`) holds one row per written image: its
  ``path`` below ``dest``, its ``source``, the face box and crop box (``Face.as_dict()``), the
  upright source's ``source_width``/``source_height`` and ``faces_found``; the ``prepare``
  stage merges it into the manifest.

Output names keep the source stem, prefixed by any sub-folders below the class folder
(``real/easy/12.jpg`` -> ``easy__12.jpg``); the suffix is the written format's (``.jpg`` or
``.png``); a clash (also one differing only in case) gets ``-2``, ``-3``...

With ``shards=N`` (``ingest --shards N``) the images written to ``<split>/<label>/`` are then
packed into ``N`` TFRecord shards per split, ``dest/shards/<split>-NNNNN-of-NNNNN.tfrecord``
(:mod:`~deepfake_detection.data.shards`), and the split folders removed: the same bytes under
the same names (``train/real/12.jpg``), in a few large files instead of many small ones.

The work is done in a hidden sibling folder that is renamed to ``dest`` at the end, so
``dest`` is never left half-written.

The package: :mod:`.layout` (which layout, which files), :mod:`.crop` (faces mode),
:mod:`.write` (copy, convert, crop), :mod:`.report` (the report and its keys); this module runs
the steps in order.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from deepfake_detection import LABELS
from deepfake_detection.config import FacesParams
from deepfake_detection.data.images import ImageInfo, inspect_image
from deepfake_detection.data.ingest.crop import FACES_COLUMNS, NO_FACE_REASON, find_faces, with_faces, write_faces_csv
from deepfake_detection.data.ingest.layout import CLASS_TOKENS, SPLIT_ALIASES, Item, Layout, scan
from deepfake_detection.data.ingest.report import REPORT_NAME, build_report, duplicates, odd_sizes
from deepfake_detection.data.ingest.write import write
from deepfake_detection.data.manifest import FACES_CSV, md5_of
from deepfake_detection.data.shards import MAX_SHARDS, pack
from deepfake_detection.data.split import assign_splits

__all__ = ["CLASS_TOKENS", "FACES_COLUMNS", "NO_FACE_REASON", "REPORT_NAME", "SPLIT_ALIASES", "ingest"]

_REENCODE = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png"}


def ingest(
    src: Path,
    dest: Path,
    *,
    valid_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 42,
    reencode: str | None = None,
    quality: int = 95,
    faces: FacesParams | None = None,
    face_size: int | None = None,
    progress: bool = True,
    shards: int | None = None,
) -> dict:
    """Copy (or convert) a dataset from ``src`` into ``dest/{train,valid,test}/{real,fake}/``.

    See the package docstring for the accepted layouts and what is written. Returns the report,
    also saved as ``dest/ingest_report.json`` (its keys: :mod:`~deepfake_detection.data.ingest.report`).
    With ``faces`` (a :class:`~deepfake_detection.config.FacesParams`; ``face_size`` is then
    required and ``reencode`` must be None or ``"png"``) every written file is a face crop. With
    ``shards`` (an int) the images end up in that many TFRecord shards per split.

    Raises ``ValueError`` for a missing source, an unrecognised or ambiguous layout, a
    non-empty ``dest``, or bad arguments.
    """
    src, dest = Path(src), Path(dest)
    fmt = _check_arguments(src, dest, valid_fraction, test_fraction, reencode, quality, faces, face_size, shards)
    started = time.perf_counter()
    layout, items, warnings = scan(src)
    _inspect(items, progress)
    if faces is not None:
        find_faces(items, faces, progress)
    _assign(layout, items, valid_fraction, test_fraction, seed, warnings)
    options = {
        "valid_fraction": valid_fraction,
        "test_fraction": test_fraction,
        "seed": seed,
        "reencode": fmt,
        "quality": int(quality),
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        report = _fill(work, src, dest, (layout, items, warnings), options, faces, face_size, shards, progress, started)
        (work / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
        if dest.exists():
            dest.rmdir()  # checked empty above
        os.replace(work, dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return report


def _fill(
    work: Path,
    src: Path,
    dest: Path,
    scanned: tuple[Layout, list[Item], list[str]],
    options: dict,
    faces: FacesParams | None,
    face_size: int | None,
    shards: int | None,
    progress: bool,
    started: float,
) -> dict:
    """Write the dataset into ``work`` (files, faces.csv, shards) and return its report."""
    layout, items, warnings = scanned
    cropped = face_size if faces is not None else None
    written = write(items, work, src, options["reencode"], options["quality"], progress, cropped)
    if faces is not None:
        write_faces_csv(written.face_rows, work / FACES_CSV)
    groups = duplicates(items, written.dest_of, src, warnings)
    odd = odd_sizes(items, written.dest_of, warnings) if faces is None else {"small": [], "elongated": []}
    report = build_report(src, dest, layout, items, written, groups, warnings, options, started)
    report["odd_sizes"] = odd
    if faces is not None:
        report = with_faces(report, written.face_rows, written.skipped_files, faces, face_size)
    if shards is not None:  # the written files become TFRecord shards
        report["shards"] = pack(work, shards, progress)
    return report


def _check_arguments(
    src: Path,
    dest: Path,
    valid_fraction: float,
    test_fraction: float,
    reencode: str | None,
    quality: int,
    faces: FacesParams | None = None,
    face_size: int | None = None,
    shards: int | None = None,
) -> str | None:
    """Refuse bad arguments and an unusable ``dest``; return the re-encoding format (or None)."""
    if shards is not None and (isinstance(shards, bool) or not 1 <= int(shards) <= MAX_SHARDS):
        raise ValueError(f"shards must be an integer in 1..{MAX_SHARDS} (or None for files), not {shards!r}")
    if not src.is_dir():
        raise ValueError(f"source {src} is not a folder")
    if not (0 <= valid_fraction < 1 and 0 <= test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise ValueError(
            f"valid_fraction and test_fraction must be in [0, 1) and sum below 1; got {valid_fraction}, {test_fraction}"
        )
    fmt = None
    if reencode is not None:
        fmt = _REENCODE.get(str(reencode).lower())
        if fmt is None:
            raise ValueError(f"reencode must be None, 'jpeg' or 'png', not {reencode!r}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100, not {quality}")
    if faces is not None:
        if fmt not in (None, "png"):
            raise ValueError(f"face crops are written as PNG: reencode={reencode!r} does not apply with faces")
        if face_size is None or int(face_size) < 1:
            raise ValueError(f"faces needs face_size, the crops' side in pixels (a positive int), not {face_size!r}")
        fmt = None  # the crops are PNG anyway; the report's options keep reencode None
    _check_dest(src, dest)
    return fmt


def _inspect(items: list[Item], progress: bool) -> None:
    """Decode every file (``item.info``) and hash the good ones (``item.md5``)."""
    for item in tqdm(items, desc="inspect", unit="img", disable=not progress):
        item.info = inspect_image(item.source)
        if item.info.ok:
            try:
                item.md5 = md5_of(item.source)
            except OSError as err:  # vanished or became unreadable since decoding
                item.info = ImageInfo(ok=False, reason="unreadable", detail=f"{type(err).__name__}: {err}")


def _assign(
    layout: Layout, items: list[Item], valid_fraction: float, test_fraction: float, seed: int, warnings: list[str]
) -> None:
    """Each good item's split: the source's, or for a flat layout
    :func:`~deepfake_detection.data.split.assign_splits` (stratified, seeded, byte-identical
    files in one split), on the items sorted by source path."""
    good = [i for i in items if i.info.ok]
    if layout.kind != "flat":
        for item in good:
            item.split = item.folder.split
        return
    good.sort(key=lambda i: i.source.as_posix())
    splits = assign_splits([i.folder.label for i in good], [i.md5 for i in good], valid_fraction, test_fraction, seed)
    for item, split in zip(good, splits):
        item.split = split
    for label in LABELS:
        n = sum(i.folder.label == label for i in good)
        for split, fraction in (("valid", valid_fraction), ("test", test_fraction)):
            if n and fraction and not any(i.folder.label == label and i.split == split for i in good):
                warnings.append(f"only {n} good {label} image(s): none went to {split}")


def _check_dest(src: Path, dest: Path) -> None:
    if dest.exists():
        if not dest.is_dir():
            raise ValueError(f"dest {dest} exists and is not a folder; give a new or empty folder")
        if any(dest.iterdir()):
            raise ValueError(
                f"dest {dest} is not empty; give a new or empty folder (ingest never merges or overwrites)"
            )
    s, d = src.resolve(), dest.resolve()
    if d == s or s in d.parents:
        raise ValueError(f"dest {dest} lies inside the source {src}; write it elsewhere")
    if d in s.parents:
        raise ValueError(f"the source {src} lies inside dest {dest}; write it elsewhere")
