"""Writing the good files into ``<work>/<split>/<label>/``: copied byte for byte, converted to
PNG, re-encoded, or (faces mode) cropped; every file written or skipped is recorded."""

from __future__ import annotations

import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from PIL import ImageOps
from tqdm import tqdm

from deepfake_detection import LABELS, SPLITS
from deepfake_detection.data.images import EXTENSIONS, ImageError, ImageInfo, encode, open_image, to_rgb
from deepfake_detection.data.ingest.crop import crop_bytes, face_row
from deepfake_detection.data.ingest.layout import Item, rel

_COPYABLE_FORMATS = frozenset({"JPEG", "MPO", "PNG"})
_COPYABLE_MODES = frozenset({"RGB", "L"})


@dataclass
class Written:
    counts: dict[str, dict[str, int]]
    methods: Counter
    written_files: list[dict] = field(default_factory=list)
    converted_files: list[dict] = field(default_factory=list)
    skipped_files: list[dict] = field(default_factory=list)
    dest_of: dict[int, str] = field(default_factory=dict)  # id(item) -> its dest path
    face_rows: list[dict] = field(default_factory=list)  # faces mode: the rows of faces.csv

    def skip(self, item: Item, src: Path, reason: str, detail: str | None) -> None:
        self.skipped_files.append(
            {
                "source": rel(item.source, src),
                "split": item.split or item.folder.split,
                "label": item.folder.label,
                "reason": reason,
                "detail": detail,
            }
        )

    def add(self, item: Item, src: Path, dest: str, method: str, why: list[str]) -> None:
        """Record ``item`` written to ``dest`` (below the data folder) by ``method``."""
        source = rel(item.source, src)
        self.dest_of[id(item)] = dest
        self.counts[item.split][item.folder.label] += 1
        self.methods[method] += 1
        self.written_files.append({"source": source, "dest": dest, "method": method})
        if method == "cropped":
            self.face_rows.append(face_row(item, dest, src))
        if method == "converted":
            info = item.info
            self.converted_files.append(
                {"source": source, "dest": dest, "format": info.format, "mode": info.mode, "why": ", ".join(why)}
            )


def out_name(item: Item, suffix: str, used: set[str]) -> str:
    """The written file's name: the source stem, prefixed by its sub-folders, unique in ``used``
    (case-insensitively; ``-2``, ``-3``... on a clash)."""
    stem = "__".join([*item.sub, item.source.stem]) if item.sub else item.source.stem
    stem = stem or "image"
    name, k = stem + suffix, 1
    while name.lower() in used:
        k += 1
        name = f"{stem}-{k}{suffix}"
    used.add(name.lower())
    return name


def _conversion_reasons(info: ImageInfo) -> list[str]:
    why = []
    if info.format not in _COPYABLE_FORMATS:
        why.append(f"format {info.format}")
    if info.mode not in _COPYABLE_MODES:
        why.append(f"mode {info.mode}")
    if info.orientation != 1:
        why.append(f"EXIF orientation {info.orientation}")
    return why


def _converted_bytes(path: Path, fmt: str, quality: int) -> bytes:
    with open_image(path) as img:
        upright = ImageOps.exif_transpose(img)
        return encode(to_rgb(upright), fmt, quality)


def _method(info: ImageInfo, fmt: str | None, face_size: int | None) -> tuple[str, str, list[str]]:
    """How a good file is written (``copied``/``converted``/``reencoded``/``cropped``), its suffix,
    and why it is converted (empty when it is not)."""
    why = _conversion_reasons(info)
    if face_size:
        return "cropped", ".png", why
    if fmt is None and not why:
        return "copied", EXTENSIONS[info.format], why
    method = "converted" if fmt is None else "reencoded"
    return method, ".png" if fmt in (None, "png") else ".jpg", why


def _contents(item: Item, method: str, fmt: str | None, quality: int, face_size: int | None) -> bytes | None:
    """The bytes to write, ``None`` for a copy; ImageError if the file changed since it was inspected."""
    if method == "cropped":
        return crop_bytes(item, face_size)
    return None if method == "copied" else _converted_bytes(item.source, fmt or "png", quality)


def write(
    items: list[Item],
    work: Path,
    src: Path,
    fmt: str | None,
    quality: int,
    progress: bool,
    face_size: int | None = None,
) -> Written:
    """Copy or convert every good item into ``work/<split>/<label>/``, or with ``face_size``
    write its face crop; record what happened to each item (written, converted, cropped,
    skipped with its reason)."""
    for split in SPLITS:
        for label in LABELS:
            (work / split / label).mkdir(parents=True)
    out = Written(
        {split: {label: 0 for label in LABELS} for split in SPLITS},
        Counter({"copied": 0, "converted": 0, "reencoded": 0, **({"cropped": 0} if face_size else {})}),
    )
    used: dict[tuple[str, str], set[str]] = defaultdict(set)
    for item in tqdm(items, desc="write", unit="img", disable=not progress):
        if not item.info.ok:
            out.skip(item, src, item.info.reason, item.info.detail)
            continue
        method, suffix, why = _method(item.info, fmt, face_size)
        try:
            data = _contents(item, method, fmt, quality, face_size)
        except ImageError as err:  # changed on disk since it was inspected
            out.skip(item, src, err.reason, err.detail)
            continue
        label = item.folder.label
        dest = f"{item.split}/{label}/{out_name(item, suffix, used[(item.split, label)])}"
        if data is None:
            shutil.copyfile(item.source, work / dest)
        else:
            (work / dest).write_bytes(data)
        out.add(item, src, dest, method, why)
    return out
