"""``ingest --faces``: find the largest face of every image, cut it out, and describe each crop
in ``dest/faces.csv`` (:data:`~deepfake_detection.data.manifest.FACES_CSV`)."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from tqdm import tqdm

from deepfake_detection.config import FacesParams
from deepfake_detection.data.faces import NO_FACE, Face, cut, detect_faces
from deepfake_detection.data.images import ImageError, ImageInfo, encode, load_rgb
from deepfake_detection.data.ingest.layout import Item, rel
from deepfake_detection.data.manifest import FACES_CSV

NO_FACE_REASON = "no_face"
"""The skip reason of a file in which ``faces`` mode found no face (beside :data:`REASONS`)."""
FACES_COLUMNS = (
    "path",
    "source",
    *Face((0, 0, 0, 0), 0.0, (0, 0, 0, 0)).as_dict(),
    "source_width",
    "source_height",
    "faces_found",
)
"""The columns of ``dest/faces.csv``."""


def find_faces(items: list[Item], settings: FacesParams, progress: bool) -> None:
    """Faces mode: decode every good item upright and find its faces; keep the largest
    (``item.face``). An item with no face becomes a skipped one (reason :data:`NO_FACE_REASON`),
    before the split is drawn."""
    for item in tqdm(items, desc="faces", unit="img", disable=not progress):
        if not item.info.ok:
            continue
        try:
            rgb = load_rgb(item.source)
        except ImageError as err:  # changed on disk since it was inspected
            item.info = ImageInfo(ok=False, reason=err.reason, detail=err.detail)
            continue
        found = detect_faces(rgb, settings)
        item.faces_found = len(found)
        item.upright_size = (rgb.shape[1], rgb.shape[0])
        if found:
            item.face = found[0]
        else:
            item.info = dataclasses.replace(item.info, ok=False, reason=NO_FACE_REASON, detail=NO_FACE)


def crop_bytes(item: Item, face_size: int) -> bytes:
    """The PNG of ``item``'s face crop, ``face_size`` pixels a side; ImageError if it no longer decodes."""
    return encode(cut(load_rgb(item.source), item.face, face_size), "png")


def face_row(item: Item, dest: str, src: Path) -> dict:
    """The ``faces.csv`` row of ``item``, written to ``dest`` (below the data folder)."""
    width, height = item.upright_size
    return {
        "path": dest,
        "source": rel(item.source, src),
        **item.face.as_dict(),
        "source_width": width,
        "source_height": height,
        "faces_found": item.faces_found,
    }


def write_faces_csv(rows: list[dict], path: Path) -> None:
    """``faces.csv``: one row per written crop (:data:`FACES_COLUMNS`), in the order written."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FACES_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def with_faces(report: dict, face_rows: list[dict], skipped: list[dict], settings: FacesParams, size: int) -> dict:
    """The report with what faces mode did: ``no_face`` among the skip reasons, and ``faces``."""
    report["skipped_by_reason"][NO_FACE_REASON] = sum(s["reason"] == NO_FACE_REASON for s in skipped)
    report["faces"] = {
        "cropped": True,
        "size": int(size),
        "settings": settings.model_dump(),
        "detector": "mtcnn",
        "kept": "largest face",
        "csv": FACES_CSV,
        "found": len(face_rows),
        "no_face": report["skipped_by_reason"][NO_FACE_REASON],
        "several_faces": sum(r["faces_found"] > 1 for r in face_rows),
    }
    return report
