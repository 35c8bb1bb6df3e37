"""The dataset layout `data/{train,valid,test}/{real,fake}/` and its manifest.

The manifest (one row per image: path, label, split, md5, width, height, subgroup) is what the
input pipeline streams from and what every later stage refers to.

A dataset written by ``ingest --faces`` holds ``faces.csv`` (:data:`FACES_CSV`) beside the
split folders: each crop's source, face box and crop box. :func:`build_manifest` merges its
columns into the manifest (left join on the image's path below the data folder); without it
the manifest has only the columns above. :func:`face_cropped` says whether every image of a
manifest is a face crop.

A dataset written by ``ingest --shards`` (:mod:`~deepfake_detection.data.shards`) is listed one
row per record, shard by shard in record order, with the path ``<shard file>#<name>``; each
record is checked and hashed as a file is (:func:`~deepfake_detection.data.images.inspect_image`
reads both).
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path, PureWindowsPath

import numpy as np
import pandas as pd
from sklearn.utils.class_weight import compute_class_weight
from tqdm import tqdm

from .. import LABELS, SPLITS
from . import shards
from .images import ImageInfo, inspect_image

MANIFEST_COLUMNS = ["path", "label", "split", "md5", "width", "height", "subgroup"]
FACES_CSV = "faces.csv"
"""The sidecar of ``ingest --faces`` in the data folder: one row per face crop, keyed by
``path`` (below the data folder)."""
CROP_BOX_COLUMNS = ["crop_left", "crop_top", "crop_right", "crop_bottom"]
"""The crop box of a face crop, in its upright source image's pixels (data/faces.py)."""
_SIDECARS = frozenset({"ingest_report.json", FACES_CSV})  # files of ingest beside the split folders

logger = logging.getLogger(__name__)
_SUBGROUP = re.compile(r"^(easy|mid|hard)_", re.IGNORECASE)


def subgroup_of(filename: str) -> str:
    """A subgroup the file name carries: CIPLAB's difficulty of a fake, ``easy_12_0101.jpg`` ->
    ``"easy"`` (also ``mid``/``hard``; any directory part, ``/`` or ``\\``, is ignored); else ``""``."""
    m = _SUBGROUP.match(PureWindowsPath(str(filename)).name)
    return m.group(1).lower() if m else ""


def md5_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def list_layout(data_dir: Path) -> tuple[list[tuple[Path, str, str]], list[str]]:
    """Every file under ``data_dir/<split>/<label>/`` as (path, split, label), plus problems
    with the layout itself (missing or empty folders, stray entries)."""
    data_dir = Path(data_dir)
    problems: list[str] = []
    files: list[tuple[Path, str, str]] = []
    if not data_dir.is_dir():
        return [], [f"{data_dir} does not exist: run `dvc pull data.dvc` or `deepfake-detect ingest SRC {data_dir}`"]
    expected = {s: set(LABELS) for s in SPLITS}
    for entry in sorted(data_dir.iterdir()):
        if entry.name.startswith(".") or (entry.name in _SIDECARS and entry.is_file()):
            continue
        if entry.name not in expected:
            problems.append(f"unexpected entry {entry} (expected only {', '.join(SPLITS)})")
    for split in SPLITS:
        for label in LABELS:
            folder = data_dir / split / label
            if not folder.is_dir():
                problems.append(f"missing folder {folder}")
                continue
            found = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
            if not found:
                problems.append(f"empty folder {folder}")
            files.extend((p, split, label) for p in found)
    return files, problems


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights ``n_samples / (n_classes * count_c)`` per class id, for
    ``model.fit(class_weight=...)`` (sklearn's ``compute_class_weight("balanced")``)."""
    y = np.asarray(labels).ravel()
    if y.size == 0:
        raise ValueError("class_weights needs at least one label")
    classes = np.arange(len(LABELS))
    if not np.isin(y, classes).all():
        raise ValueError(
            f"labels must be class ids {classes.tolist()} ({', '.join(LABELS)}); got {np.unique(y).tolist()}"
        )
    y = y.astype(np.int64)
    absent = [LABELS[c] for c in classes if c not in y]
    if absent:
        raise ValueError(f"no {absent} examples among the labels: class weights need every class present")
    weights = compute_class_weight("balanced", classes=classes, y=y)
    return {int(c): float(w) for c, w in zip(classes, weights)}


def load_manifest(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} not found: run `dvc repro prepare` (or `deepfake-detect prepare`) first")
    df = pd.read_csv(path, dtype={"subgroup": str, "md5": str}, keep_default_na=False)
    missing = set(MANIFEST_COLUMNS) - set(df.columns)
    if missing:
        raise ValueError(f"{path} lacks columns {sorted(missing)}: re-run `deepfake-detect prepare`")
    return df


def build_manifest(data_dir: Path, progress: bool = True) -> pd.DataFrame:
    """Decode every image under data_dir (its files, or the records of its shards); raise
    ValueError listing every problem found. The columns of ``faces.csv`` are merged in when
    the data folder holds one (:func:`merge_faces`)."""
    data_dir = Path(data_dir)
    if shards.has_shards(data_dir):  # `ingest --shards`: one row per record, path <shard>#<name>
        rows, keys, problems = _shard_rows(data_dir, progress)
    else:
        rows, keys, problems = _file_rows(data_dir, progress)
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ValueError(f"{data_dir} is not a valid dataset ({len(problems)} problems):\n  {shown}{more}")
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    if (data_dir / FACES_CSV).is_file():  # `ingest --faces`: its columns too, keyed by the paths below data_dir
        manifest = merge_faces(manifest, keys, data_dir / FACES_CSV)
    return manifest


def _row(path: str, split: str, label: str, md5: str, info: ImageInfo, name: str) -> dict:
    """One manifest row (:data:`MANIFEST_COLUMNS`); ``name`` is the image's path below the data folder."""
    return {
        "path": path,
        "label": label,
        "split": split,
        "md5": md5,
        "width": info.width,
        "height": info.height,
        "subgroup": subgroup_of(name),
    }


def _file_rows(data_dir: Path, progress: bool) -> tuple[list[dict], list[str], list[str]]:
    """The rows of a dataset of files, their paths below ``data_dir`` and the problems found."""
    files, problems = list_layout(data_dir)
    rows, keys = [], []
    for path, split, label in tqdm(files, desc="prepare: checking images", unit="img", disable=not progress):
        info = inspect_image(path)
        if not info.ok:
            problems.append(f"{path}: {info.reason} (run `deepfake-detect ingest` to clean a dataset)")
            continue
        rows.append(_row(path.as_posix(), split, label, md5_of(path), info, path.name))
        keys.append(path.relative_to(data_dir).as_posix())
    return rows, keys, problems


def _shard_rows(data_dir: Path, progress: bool) -> tuple[list[dict], list[str], list[str]]:
    """The rows of a sharded dataset (one per record, shard by shard in record order), the
    records' names and the problems found: a record whose name disagrees with its shard's split
    or its label, a name twice, an undecodable image, a problem with the shard files."""
    files, problems = shards.shard_files(data_dir)
    rows, names, seen = [], [], set()
    total = sum(len(f) for f in files.values())
    with tqdm(total=total, desc="prepare: checking shards", unit="shard", disable=not progress) as bar:
        for split in SPLITS:
            for shard in files[split]:
                for name, label_id, contents in shards.iter_records(shard):
                    row = _record_row(shard, split, name, label_id, contents, seen, problems)
                    if row is not None:
                        rows.append(row)
                        names.append(name)
                bar.update(1)
    return rows, names, problems


def _record_row(
    shard: Path, split: str, name: str, label_id: int, contents: bytes, seen: set[str], problems: list[str]
) -> dict | None:
    """The row of one shard record, or None (its problems appended to ``problems``)."""
    where = f"{shard}#{name}"
    if not 0 <= label_id < len(LABELS):
        problems.append(f"{where}: label {label_id} is not a class id")
        return None
    label = LABELS[label_id]
    parts = name.split("/")
    if len(parts) < 3 or parts[0] != split or parts[1] != label:
        problems.append(f"{where}: the name should start with {split}/{label}/")
    if name in seen:
        problems.append(f"{where}: the name appears twice in the dataset")
    seen.add(name)
    info = inspect_image(contents)
    if not info.ok:
        problems.append(f"{where}: {info.reason} (re-run `deepfake-detect ingest`)")
        return None
    return _row(shards.ref(shard, name), split, label, hashlib.md5(contents).hexdigest(), info, name)


def merge_faces(manifest: pd.DataFrame, rel_paths: list[str], faces_csv: Path) -> pd.DataFrame:
    """``manifest`` with the columns of ``faces_csv`` (all but ``path``, and none that would
    overwrite a manifest column) joined on ``rel_paths`` (each row's path below the data
    folder). A row that faces.csv does not list gets empty cells (logged); a faces.csv row for
    a file no longer there is dropped (logged). Raises ValueError for a faces.csv without
    ``path`` and the crop box, or that lists a path twice."""
    faces = pd.read_csv(faces_csv, dtype={"path": str, "source": str}, keep_default_na=False)
    missing = sorted({"path", *CROP_BOX_COLUMNS} - set(faces.columns))
    if missing:
        raise ValueError(f"{faces_csv} lacks columns {missing}: re-run `deepfake-detect ingest --faces`")
    twice = faces.path[faces.path.duplicated()].tolist()
    if twice:
        raise ValueError(f"{faces_csv} lists {len(twice)} path(s) more than once, e.g. {twice[0]!r}")
    faces = faces.drop(columns=[c for c in faces.columns if c in MANIFEST_COLUMNS and c != "path"])
    key = "_faces_key"
    merged = (
        manifest.assign(**{key: list(rel_paths)})
        .merge(faces.rename(columns={"path": key}), on=key, how="left", validate="one_to_one")
        .drop(columns=key)
    )
    for column in faces.columns.drop("path"):
        if pd.api.types.is_integer_dtype(faces[column]):
            merged[column] = merged[column].astype("Int64")  # empty where faces.csv has no row
    stale = len(set(faces.path) - set(rel_paths))
    if stale:
        logger.warning("%s lists %d file(s) that are not in the dataset: ignored", faces_csv, stale)
    uncropped = int((~_has_crop_box(merged)).sum())
    if uncropped:
        logger.warning(
            "%d of %d images are not in %s (added after `ingest --faces`?): they are not face crops",
            uncropped,
            len(merged),
            faces_csv,
        )
    return merged


def _has_crop_box(manifest: pd.DataFrame) -> pd.Series:
    if not set(CROP_BOX_COLUMNS) <= set(manifest.columns):
        return pd.Series(False, index=manifest.index)
    box = manifest[CROP_BOX_COLUMNS]
    return (box.notna() & (box.astype(str) != "")).all(axis=1)


def face_cropped(manifest: pd.DataFrame) -> bool:
    """True when the manifest has rows and every row has a crop box (``ingest --faces`` wrote
    every image): the data a model trained on were face crops. Works on a manifest built by
    :func:`build_manifest` or read back by :func:`load_manifest`."""
    return bool(len(manifest)) and bool(_has_crop_box(manifest).all())


def statistics(manifest: pd.DataFrame) -> dict:
    """Counts per split and class, class balance, class weights, cross-split duplicates."""
    counts = {s: {lb: int(((manifest.split == s) & (manifest.label == lb)).sum()) for lb in LABELS} for s in SPLITS}
    train_labels = (manifest.label[manifest.split == "train"] == "fake").astype(int)
    weights = class_weights(train_labels)
    dup = manifest.groupby("md5").split.nunique()
    return {
        "counts": counts,
        "total": int(len(manifest)),
        "fake_fraction": {s: round(counts[s]["fake"] / max(1, sum(counts[s].values())), 4) for s in SPLITS},
        "class_weights": {LABELS[k]: round(v, 6) for k, v in weights.items()},
        "duplicates_across_splits": int((dup > 1).sum()),
        "subgroups": {g: int(n) for g, n in manifest.subgroup[manifest.subgroup != ""].value_counts().items()},
    }
