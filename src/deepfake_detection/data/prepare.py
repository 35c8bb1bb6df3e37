"""Stage `prepare`: validate data/, write the manifest and the dataset statistics."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm import tqdm

from .. import LABELS, SPLITS, paths
from ..config import Params
from .images import inspect_image
from .manifest import MANIFEST_COLUMNS, class_weights, list_layout, md5_of, subgroup_of


def build_manifest(data_dir: Path, progress: bool = True) -> pd.DataFrame:
    """Decode every image under data_dir; raise ValueError listing every problem found."""
    files, problems = list_layout(data_dir)
    rows = []
    for path, split, label in tqdm(files, desc="prepare: checking images", unit="img", disable=not progress):
        info = inspect_image(path)
        if not info.ok:
            problems.append(f"{path}: {info.reason} (run `deepfake-detect ingest` to clean a dataset)")
            continue
        rows.append({"path": path.as_posix(), "label": label, "split": split, "md5": md5_of(path),
                     "width": info.width, "height": info.height, "subgroup": subgroup_of(path.name)})
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ValueError(f"{data_dir} is not a valid dataset ({len(problems)} problems):\n  {shown}{more}")
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def statistics(manifest: pd.DataFrame) -> dict:
    """Counts per split and class, class balance, class weights, cross-split duplicates."""
    counts = {s: {lb: int(((manifest.split == s) & (manifest.label == lb)).sum()) for lb in LABELS}
              for s in SPLITS}
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


def run(params: Params, progress: bool = True) -> dict:
    from .. import tracking

    manifest = build_manifest(params.data.dir, progress=progress)
    stats = statistics(manifest)
    paths.MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    manifest.to_csv(paths.MANIFEST, index=False)
    tracking.write_json(stats, paths.DATA_METRICS)

    flat = {f"n_{s}_{lb}": stats["counts"][s][lb] for s in SPLITS for lb in LABELS}
    flat.update({f"fake_fraction_{s}": v for s, v in stats["fake_fraction"].items()})
    flat.update({f"class_weight_{lb}": v for lb, v in stats["class_weights"].items()})
    flat.update(n_images=stats["total"], duplicates_across_splits=stats["duplicates_across_splits"])
    with tracking.stage_run("prepare", params):
        tracking.log_metrics(flat)
        tracking.log_artifact(paths.MANIFEST)
        tracking.log_dict(stats, "data_stats.json")
    if stats["duplicates_across_splits"]:
        print(f"warning: {stats['duplicates_across_splits']} images appear in more than one split "
              "(identical content): test results may be optimistic")
    return stats
