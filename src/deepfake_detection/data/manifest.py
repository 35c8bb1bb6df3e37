"""The dataset layout `data/{train,valid,test}/{real,fake}/` and its manifest.

The manifest (one row per image: path, label, split, md5, width, height, subgroup) is what the
input pipeline streams from and what every later stage refers to.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PureWindowsPath

import numpy as np
import pandas as pd
from sklearn.utils.class_weight import compute_class_weight
from tqdm import tqdm

from .. import LABELS, SPLITS
from .images import inspect_image

MANIFEST_COLUMNS = ["path", "label", "split", "md5", "width", "height", "subgroup"]
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
        if entry.name.startswith(".") or entry.name == "ingest_report.json":
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
    """Decode every image under data_dir; raise ValueError listing every problem found."""
    files, problems = list_layout(data_dir)
    rows = []
    for path, split, label in tqdm(files, desc="prepare: checking images", unit="img", disable=not progress):
        info = inspect_image(path)
        if not info.ok:
            problems.append(f"{path}: {info.reason} (run `deepfake-detect ingest` to clean a dataset)")
            continue
        rows.append(
            {
                "path": path.as_posix(),
                "label": label,
                "split": split,
                "md5": md5_of(path),
                "width": info.width,
                "height": info.height,
                "subgroup": subgroup_of(path.name),
            }
        )
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ValueError(f"{data_dir} is not a valid dataset ({len(problems)} problems):\n  {shown}{more}")
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


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
