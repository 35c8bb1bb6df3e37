"""Stage `prepare`: validate data/, write the manifest and the dataset statistics.

Outputs: ``artifacts/manifest.csv`` (what every later stage streams from) and
``metrics/data.json`` (counts per split and class, class balance, class weights), logged to MLflow.
"""

from __future__ import annotations

import logging

from .. import LABELS, SPLITS, paths, tracking
from ..config import Params
from ..data.manifest import build_manifest, statistics

logger = logging.getLogger(__name__)


def run(params: Params, progress: bool = True) -> dict:
    manifest = build_manifest(params.data.dir, progress=progress)
    stats = statistics(manifest)
    flat = {f"n_{s}_{lb}": stats["counts"][s][lb] for s in SPLITS for lb in LABELS}
    flat.update({f"fake_fraction_{s}": v for s, v in stats["fake_fraction"].items()})
    flat.update({f"class_weight_{lb}": v for lb, v in stats["class_weights"].items()})
    flat.update(n_images=stats["total"], duplicates_across_splits=stats["duplicates_across_splits"])
    with paths.replaced_on_success(paths.MANIFEST, paths.DATA_METRICS):  # nothing half-written
        paths.MANIFEST.parent.mkdir(parents=True, exist_ok=True)
        manifest.to_csv(paths.MANIFEST, index=False)
        tracking.write_json(stats, paths.DATA_METRICS)
        with tracking.stage_run("prepare", params):
            tracking.log_metrics(flat)
            tracking.log_artifact(paths.MANIFEST)
            tracking.log_dict(stats, "data_stats.json")
    if stats["duplicates_across_splits"]:
        logger.warning(
            "%d images appear in more than one split (identical content): test results may be optimistic",
            stats["duplicates_across_splits"],
        )
    return stats
