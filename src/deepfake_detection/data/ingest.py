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
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from PIL import ImageOps
from tqdm import tqdm

from deepfake_detection import LABELS, SPLITS, __version__
from deepfake_detection.config import FacesParams
from deepfake_detection.data.faces import NO_FACE, Face, cut, detect_faces
from deepfake_detection.data.images import (
    EXTENSIONS,
    MAX_ASPECT_RATIO,
    REASONS,
    SMALL_SIDE,
    ImageError,
    ImageInfo,
    encode,
    inspect_image,
    load_rgb,
    open_image,
    to_rgb,
)
from deepfake_detection.data.manifest import FACES_CSV, md5_of
from deepfake_detection.data.split import assign_splits

REPORT_NAME = "ingest_report.json"
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

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "valid": "valid",
    "validation": "valid",
    "val": "valid",
    "test": "test",
    "testing": "test",
}
CLASS_TOKENS = {"real": "real", "reals": "real", "fake": "fake", "fakes": "fake"}

_COPYABLE_FORMATS = frozenset({"JPEG", "MPO", "PNG"})
_COPYABLE_MODES = frozenset({"RGB", "L"})
_REENCODE = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png"}
_MAX_WRAPPERS = 3

_ACCEPTED = (
    "accepted layouts (folder names in any case):\n"
    "  split: SRC/{train,valid|validation|val,test}/{real,fake}/<images>\n"
    "  flat:  SRC/{real,fake}/<images> (split here, seeded and stratified); class folders may\n"
    "         carry other words, e.g. training_real/training_fake or Real_images/Fake_images"
)


@dataclass
class _Folder:
    path: Path
    split: str | None  # None in the flat layout
    label: str


@dataclass
class _Layout:
    kind: str  # "split" | "flat"
    root: Path
    folders: list[_Folder]
    warnings: list[str] = field(default_factory=list)
    ignored: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Item:
    source: Path
    folder: _Folder
    sub: tuple[str, ...]  # sub-folders between the class folder and the file
    info: ImageInfo | None = None
    md5: str | None = None
    split: str | None = None
    face: Face | None = None  # faces mode: the largest face, in the upright image's pixels
    faces_found: int = 0
    upright_size: tuple[int, int] | None = None  # faces mode: (width, height) after EXIF rotation


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", name.lower()) if t]


def _class_of(name: str) -> str | None:
    found = {CLASS_TOKENS[t] for t in _tokens(name) if t in CLASS_TOKENS}
    return found.pop() if len(found) == 1 else None


def _split_of_tokens(name: str) -> str | None:
    found = {SPLIT_ALIASES[t] for t in _tokens(name) if t in SPLIT_ALIASES}
    return found.pop() if len(found) == 1 else None


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _subdirs(path: Path) -> list[Path]:
    return sorted((p for p in path.iterdir() if p.is_dir()), key=lambda p: p.name)


def _describe(path: Path) -> str:
    entries = sorted(path.iterdir(), key=lambda p: p.name)
    dirs = [p.name + "/" for p in entries if p.is_dir()]
    files = [p for p in entries if not p.is_dir()]
    shown = ", ".join(dirs[:12]) + (", ..." if len(dirs) > 12 else "")
    return f"{path} holds folders [{shown}] and {len(files)} file(s)"


def _duplicate_error(kind: str, key: str, dirs: list[Path]) -> ValueError:
    names = ", ".join(repr(d.name) for d in dirs)
    return ValueError(f"several folders map to {kind} {key!r}: {names}; keep one (or merge them) and retry")


def _class_folders(split_dir: Path, split: str, src: Path, layout: _Layout) -> None:
    by_label: dict[str, list[Path]] = defaultdict(list)
    for entry in sorted(split_dir.iterdir(), key=lambda p: p.name):
        label = _class_of(entry.name) if entry.is_dir() else None
        if label is None:
            layout.ignored.append({"path": _rel(entry, src), "why": "not a class folder"})
        else:
            by_label[label].append(entry)
    for label in LABELS:
        dirs = by_label.get(label, [])
        if len(dirs) > 1:
            raise _duplicate_error("class", f"{split_dir.name}/{label}", dirs)
        if not dirs:
            layout.warnings.append(f"no {label!r} folder in {_rel(split_dir, src)!r}: {split}/{label} stays empty")
        else:
            layout.folders.append(_Folder(dirs[0], split, label))


def _detect(src: Path) -> _Layout:
    root, notes, ignored = src, [], []
    for depth in range(_MAX_WRAPPERS + 1):
        dirs = _subdirs(root)
        files = sorted((p for p in root.iterdir() if not p.is_dir()), key=lambda p: p.name)
        split_dirs = [d for d in dirs if d.name.lower() in SPLIT_ALIASES]
        class_dirs = [d for d in dirs if d.name.lower() not in SPLIT_ALIASES and _class_of(d.name)]
        if split_dirs or class_dirs or depth == _MAX_WRAPPERS:
            break
        if len(dirs) != 1 or any(not f.name.startswith(".") for f in files):
            break
        ignored += [{"path": _rel(f, src), "why": "file outside the class folders"} for f in files]
        notes.append(f"descended into the single folder {_rel(dirs[0], src)!r}")
        root = dirs[0]

    if split_dirs and class_dirs:
        raise ValueError(
            f"ambiguous dataset layout: {root} holds both split folders "
            f"{[d.name for d in split_dirs]} and class folders {[d.name for d in class_dirs]}\n{_ACCEPTED}"
        )
    if not split_dirs and not class_dirs:
        raise ValueError(f"unrecognised dataset layout: {_describe(root)}\n{_ACCEPTED}")
    ignored += [{"path": _rel(f, src), "why": "file outside the class folders"} for f in files]

    if split_dirs:
        layout = _Layout("split", root, [], notes=notes, ignored=ignored)
        ignored += [{"path": _rel(d, src), "why": "not a split folder"} for d in dirs if d not in split_dirs]
        by_split: dict[str, list[Path]] = defaultdict(list)
        for d in split_dirs:
            by_split[SPLIT_ALIASES[d.name.lower()]].append(d)
        for split in SPLITS:
            found = by_split.get(split, [])
            if len(found) > 1:
                raise _duplicate_error("split", split, found)
            if not found:
                layout.warnings.append(f"no {split!r} split folder in the source: {split}/ stays empty")
            else:
                _class_folders(found[0], split, src, layout)
        if not layout.folders:
            raise ValueError(f"split folders found in {root} but no class folder inside them\n{_ACCEPTED}")
        return layout

    ignored += [{"path": _rel(d, src), "why": "not a class folder"} for d in dirs if d not in class_dirs]
    pairs = [(_split_of_tokens(d.name), _class_of(d.name)) for d in class_dirs]
    named_splits = {split for split, _ in pairs}
    if None not in named_splits and len(named_splits) > 1 and len(set(pairs)) == len(pairs):
        notes = [*notes, "split and class read from the folder names"]
        layout = _Layout("split", root, [], notes=notes, ignored=ignored)
        order = sorted(zip(pairs, class_dirs), key=lambda x: (SPLITS.index(x[0][0]), LABELS.index(x[0][1])))
        for (split, label), d in order:
            layout.folders.append(_Folder(d, split, label))
        for split in SPLITS:
            for label in LABELS:
                if (split, label) not in pairs:
                    layout.warnings.append(f"no folder for {split}/{label} in the source: it stays empty")
        return layout

    layout = _Layout("flat", root, [], notes=notes, ignored=ignored)
    by_label: dict[str, list[Path]] = defaultdict(list)
    for d, (_, label) in zip(class_dirs, pairs):
        by_label[label].append(d)
    for label in LABELS:
        found = by_label.get(label, [])
        if len(found) > 1:
            raise _duplicate_error("class", label, found)
        if not found:
            layout.warnings.append(f"no {label!r} class folder in {root}: there will be no {label} images")
        else:
            layout.folders.append(_Folder(found[0], None, label))
    return layout


def _walk(folder: _Folder) -> list[_Item]:
    """Every file below ``folder`` (following directory links once), in a fixed order."""
    items: list[_Item] = []
    visited: set[str] = set()
    for current, dirnames, filenames in os.walk(folder.path, followlinks=True):
        real = os.path.realpath(current)
        if real in visited:
            dirnames[:] = []
            continue
        visited.add(real)
        dirnames.sort()
        sub = Path(current).relative_to(folder.path).parts
        for name in sorted(filenames):
            items.append(_Item(Path(current) / name, folder, tuple(sub)))
    return items


def _out_name(item: _Item, suffix: str, used: set[str]) -> str:
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

    See the module docstring for the accepted layouts and what is written. Returns the report
    (also saved as ``dest/ingest_report.json``) with these keys:

    ``source``, ``dest``, ``layout`` (``"split"``/``"flat"``), ``split_from`` (``"source"`` or
    ``"seeded shuffle"``), ``options`` (the arguments), ``folders`` (each class folder used:
    ``path``, ``split``, ``label``, ``files``), ``seen``, ``written``, ``skipped`` (ints, and
    ``written + skipped == seen``), ``counts`` (``{split: {label: n}}`` written),
    ``written_by_method`` (``copied``/``converted``/``reencoded``), ``skipped_by_reason``
    (every reason of :data:`~deepfake_detection.data.images.REASONS`, 0 included),
    ``skipped_files`` (``source``, ``split``, ``label``, ``reason``, ``detail``),
    ``converted_files`` (``source``, ``dest``, ``format``, ``mode``, ``why``),
    ``written_files`` (``source``, ``dest``, ``method``), ``duplicates`` (groups of
    byte-identical good files: ``md5``, ``files`` [{``source``, ``dest``}]), ``ignored``
    (entries outside the class folders: ``path``, ``why``), ``warnings``, ``notes``,
    ``seconds``, ``version``, ``odd_sizes`` (written images that inference scores with a warning:
    ``small`` and ``elongated``, dest paths; empty with ``faces``, whose crops are square). Source
    paths are relative to ``src``, dest paths to ``dest``.

    With ``faces`` (a :class:`~deepfake_detection.data.faces.FacesParams`; ``face_size`` is
    then required and ``reencode`` must be None or ``"png"``) every written file is a face crop
    (method ``cropped``), ``skipped_by_reason`` also counts :data:`NO_FACE_REASON`, ``dest``
    also holds ``faces.csv`` and the report has a ``faces`` entry: ``cropped`` (True),
    ``size``, ``settings``, ``detector``, ``kept``, ``csv``, ``found`` (images written),
    ``no_face`` and ``several_faces`` (images with more than one face; the largest was kept).
    Without ``faces`` none of these appear.

    With ``shards`` (an int) the images end up in that many TFRecord shards per split (see the
    module docstring) and the report has a ``shards`` entry: ``count``, ``dir``, ``files``
    (``{split: [shard file names]}``) and ``records`` (``{split: n}``); dest paths in the
    report are then the records' names.

    Raises ``ValueError`` for a missing source, an unrecognised or ambiguous layout, a
    non-empty ``dest``, or bad arguments.
    """
    from deepfake_detection.data.shards import MAX_SHARDS, pack

    if shards is not None and (isinstance(shards, bool) or not 1 <= int(shards) <= MAX_SHARDS):
        raise ValueError(f"shards must be an integer in 1..{MAX_SHARDS} (or None for files), not {shards!r}")
    src, dest = Path(src), Path(dest)
    fmt = _check_arguments(src, dest, valid_fraction, test_fraction, reencode, quality, faces, face_size)
    started = time.perf_counter()
    layout, items, warnings = _scan(src)
    _inspect(items, progress)
    if faces is not None:
        _find_faces(items, faces, progress)
    _assign(layout, items, valid_fraction, test_fraction, seed, warnings)

    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        written = _write(items, work, src, fmt, quality, progress, face_size if faces is not None else None)
        if faces is not None:
            _write_faces_csv(written.face_rows, work / FACES_CSV)
        duplicates = _duplicates(items, written.dest_of, src, warnings)
        odd_sizes = _odd_sizes(items, written.dest_of, warnings) if faces is None else {"small": [], "elongated": []}
        options = {
            "valid_fraction": valid_fraction,
            "test_fraction": test_fraction,
            "seed": seed,
            "reencode": fmt,
            "quality": int(quality),
        }
        report = _report(src, dest, layout, items, written, duplicates, warnings, options, started)
        report["odd_sizes"] = odd_sizes
        if faces is not None:
            report = _with_faces(report, written, faces, face_size)
        if shards is not None:  # the written files become TFRecord shards
            report["shards"] = pack(work, shards, progress)
        (work / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
        if dest.exists():
            dest.rmdir()  # checked empty above
        os.replace(work, dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return report


# --- the steps of ingest ---------------------------------------------------------------------


def _check_arguments(
    src: Path,
    dest: Path,
    valid_fraction: float,
    test_fraction: float,
    reencode: str | None,
    quality: int,
    faces: FacesParams | None = None,
    face_size: int | None = None,
) -> str | None:
    """Refuse bad arguments and an unusable ``dest``; return the re-encoding format (or None)."""
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


def _scan(src: Path) -> tuple[_Layout, list[_Item], list[str]]:
    """The layout, every file below its class folders, and the layout's warnings (an empty
    class folder included)."""
    layout = _detect(src)
    warnings = list(layout.warnings)
    items = [item for folder in layout.folders for item in _walk(folder)]
    found = Counter(id(i.folder) for i in items)
    for folder in layout.folders:
        if not found[id(folder)]:
            warnings.append(f"class folder {_rel(folder.path, src)!r} is empty")
    return layout, items, warnings


def _inspect(items: list[_Item], progress: bool) -> None:
    """Decode every file (``item.info``) and hash the good ones (``item.md5``)."""
    for item in tqdm(items, desc="inspect", unit="img", disable=not progress):
        item.info = inspect_image(item.source)
        if item.info.ok:
            try:
                item.md5 = md5_of(item.source)
            except OSError as err:  # vanished or became unreadable since decoding
                item.info = ImageInfo(ok=False, reason="unreadable", detail=f"{type(err).__name__}: {err}")


def _assign(
    layout: _Layout, items: list[_Item], valid_fraction: float, test_fraction: float, seed: int, warnings: list[str]
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


def _find_faces(items: list[_Item], settings: FacesParams, progress: bool) -> None:
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


@dataclass
class _Written:
    counts: dict[str, dict[str, int]]
    methods: Counter
    written_files: list[dict] = field(default_factory=list)
    converted_files: list[dict] = field(default_factory=list)
    skipped_files: list[dict] = field(default_factory=list)
    dest_of: dict[int, str] = field(default_factory=dict)  # id(item) -> its dest path
    face_rows: list[dict] = field(default_factory=list)  # faces mode: the rows of faces.csv


def _write(
    items: list[_Item],
    work: Path,
    src: Path,
    fmt: str | None,
    quality: int,
    progress: bool,
    face_size: int | None = None,
) -> _Written:
    """Copy or convert every good item into ``work/<split>/<label>/``, or with ``face_size``
    write its face crop; record what happened to each item (written, converted, cropped,
    skipped with its reason)."""
    for split in SPLITS:
        for label in LABELS:
            (work / split / label).mkdir(parents=True)
    out = _Written(
        {split: {label: 0 for label in LABELS} for split in SPLITS},
        Counter({"copied": 0, "converted": 0, "reencoded": 0, **({"cropped": 0} if face_size else {})}),
    )
    used: dict[tuple[str, str], set[str]] = defaultdict(set)

    def skip(item: _Item, reason: str, detail: str | None) -> None:
        out.skipped_files.append(
            {
                "source": _rel(item.source, src),
                "split": item.split or item.folder.split,
                "label": item.folder.label,
                "reason": reason,
                "detail": detail,
            }
        )

    for item in tqdm(items, desc="write", unit="img", disable=not progress):
        info = item.info
        if not info.ok:
            skip(item, info.reason, info.detail)
            continue
        label = item.folder.label
        why = _conversion_reasons(info)
        if face_size:
            method, suffix = "cropped", ".png"
        elif fmt is None and not why:
            method, suffix = "copied", EXTENSIONS[info.format]
        else:
            method = "converted" if fmt is None else "reencoded"
            suffix = ".png" if fmt in (None, "png") else ".jpg"
        try:
            if method == "cropped":
                data = encode(cut(load_rgb(item.source), item.face, face_size), "png")
            else:
                data = None if method == "copied" else _converted_bytes(item.source, fmt or "png", quality)
        except ImageError as err:  # changed on disk since it was inspected
            skip(item, err.reason, err.detail)
            continue
        name = _out_name(item, suffix, used[(item.split, label)])
        target = work / item.split / label / name
        if data is None:
            shutil.copyfile(item.source, target)
        else:
            target.write_bytes(data)
        rel_dest = f"{item.split}/{label}/{name}"
        out.dest_of[id(item)] = rel_dest
        out.counts[item.split][label] += 1
        out.methods[method] += 1
        out.written_files.append({"source": _rel(item.source, src), "dest": rel_dest, "method": method})
        if method == "cropped":
            width, height = item.upright_size
            out.face_rows.append(
                {
                    "path": rel_dest,
                    "source": _rel(item.source, src),
                    **item.face.as_dict(),
                    "source_width": width,
                    "source_height": height,
                    "faces_found": item.faces_found,
                }
            )
        if method == "converted":
            out.converted_files.append(
                {
                    "source": _rel(item.source, src),
                    "dest": rel_dest,
                    "format": info.format,
                    "mode": info.mode,
                    "why": ", ".join(why),
                }
            )
    return out


def _write_faces_csv(rows: list[dict], path: Path) -> None:
    """``faces.csv``: one row per written crop (:data:`FACES_COLUMNS`), in the order written."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FACES_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _with_faces(report: dict, written: _Written, settings: FacesParams, size: int) -> dict:
    """The report with what faces mode did: ``no_face`` among the skip reasons, and ``faces``."""
    report["skipped_by_reason"][NO_FACE_REASON] = sum(s["reason"] == NO_FACE_REASON for s in written.skipped_files)
    report["faces"] = {
        "cropped": True,
        "size": int(size),
        "settings": settings.model_dump(),
        "detector": "mtcnn",
        "kept": "largest face",
        "csv": FACES_CSV,
        "found": len(written.face_rows),
        "no_face": report["skipped_by_reason"][NO_FACE_REASON],
        "several_faces": sum(r["faces_found"] > 1 for r in written.face_rows),
    }
    return report


def _odd_sizes(items: list[_Item], dest_of: dict[int, str], warnings: list[str]) -> dict[str, list[str]]:
    """Written images that inference would score with a warning (the same rules, from
    :mod:`~deepfake_detection.data.images`): ``small`` (shorter side under ``SMALL_SIDE``: upscaled)
    and ``elongated`` (sides beyond ``MAX_ASPECT_RATIO``: squashed to a square), as dest paths.
    They are kept (the model should see what it will be asked about) and counted in a warning."""
    odd: dict[str, list[str]] = {"small": [], "elongated": []}
    for item in items:
        info = item.info
        if id(item) not in dest_of or info is None or not info.width or not info.height:
            continue
        short, long = sorted((info.width, info.height))
        if short < SMALL_SIDE:
            odd["small"].append(dest_of[id(item)])
        if long / short > MAX_ASPECT_RATIO:
            odd["elongated"].append(dest_of[id(item)])
    for kind, what in (
        ("small", f"under {SMALL_SIDE} px a side: upscaled to the input size"),
        ("elongated", f"with sides beyond {MAX_ASPECT_RATIO:g}:1: squashed to a square"),
    ):
        if odd[kind]:
            first = ", ".join(odd[kind][:3]) + (", ..." if len(odd[kind]) > 3 else "")
            warnings.append(f"{len(odd[kind])} written image(s) {what} ({first}); odd_sizes in the report lists them")
    return odd


def _duplicates(items: list[_Item], dest_of: dict[int, str], src: Path, warnings: list[str]) -> list[dict]:
    """Groups of byte-identical written files (same md5), with a warning for a group that spans
    splits (possible only where the source fixed the splits) or both labels."""
    by_hash: dict[str, list[_Item]] = defaultdict(list)
    for item in items:
        if id(item) in dest_of:
            by_hash[item.md5].append(item)
    duplicates = []
    for digest, group in sorted(by_hash.items()):
        if len(group) < 2:
            continue
        duplicates.append(
            {"md5": digest, "files": [{"source": _rel(i.source, src), "dest": dest_of[id(i)]} for i in group]}
        )
        if len({i.split for i in group}) > 1:
            warnings.append(f"identical files in several splits (leakage): {[_rel(i.source, src) for i in group]}")
        if len({i.folder.label for i in group}) > 1:
            warnings.append(f"identical files under both labels: {[_rel(i.source, src) for i in group]}")
    return duplicates


def _report(
    src: Path,
    dest: Path,
    layout: _Layout,
    items: list[_Item],
    written: _Written,
    duplicates: list[dict],
    warnings: list[str],
    options: dict,
    started: float,
) -> dict:
    """The report (see :func:`ingest`), after checking that every file seen was written or skipped."""
    seen, n_written, skipped = len(items), len(written.written_files), len(written.skipped_files)
    if n_written + skipped != seen or sum(sum(c.values()) for c in written.counts.values()) != n_written:
        raise AssertionError(f"ingest lost track of files: written {n_written} + skipped {skipped} != seen {seen}")
    by_reason = Counter(s["reason"] for s in written.skipped_files)
    found = Counter(id(i.folder) for i in items)
    return {
        "source": str(src),
        "dest": str(dest),
        "layout": layout.kind,
        "split_from": "seeded shuffle" if layout.kind == "flat" else "source",
        "options": options,
        "folders": [
            {"path": _rel(f.path, src), "split": f.split, "label": f.label, "files": found[id(f)]}
            for f in layout.folders
        ],
        "seen": seen,
        "written": n_written,
        "skipped": skipped,
        "counts": written.counts,
        "written_by_method": dict(written.methods),
        "skipped_by_reason": {reason: by_reason.get(reason, 0) for reason in REASONS},
        "skipped_files": written.skipped_files,
        "converted_files": written.converted_files,
        "written_files": written.written_files,
        "duplicates": duplicates,
        "ignored": layout.ignored,
        "warnings": warnings,
        "notes": layout.notes,
        "seconds": round(time.perf_counter() - started, 3),
        "version": __version__,
    }
