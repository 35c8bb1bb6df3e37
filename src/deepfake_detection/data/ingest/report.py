"""The report of ``ingest`` (returned, and saved as ``dest/ingest_report.json``).

Its keys: ``source``, ``dest``, ``layout`` (``"split"``/``"flat"``), ``split_from``
(``"source"`` or ``"seeded shuffle"``), ``options`` (the arguments), ``folders`` (each class
folder used: ``path``, ``split``, ``label``, ``files``), ``seen``, ``written``, ``skipped``
(ints, and ``written + skipped == seen``), ``counts`` (``{split: {label: n}}`` written),
``written_by_method`` (``copied``/``converted``/``reencoded``), ``skipped_by_reason`` (every
reason of :data:`~deepfake_detection.data.images.REASONS`, 0 included), ``skipped_files``
(``source``, ``split``, ``label``, ``reason``, ``detail``), ``converted_files`` (``source``,
``dest``, ``format``, ``mode``, ``why``), ``written_files`` (``source``, ``dest``, ``method``),
``duplicates`` (groups of byte-identical good files: ``md5``, ``files`` [{``source``,
``dest``}]), ``ignored`` (entries outside the class folders: ``path``, ``why``), ``warnings``,
``notes``, ``seconds``, ``version``, ``odd_sizes`` (written images that inference scores with a
warning: ``small`` and ``elongated``, dest paths; empty with ``faces``, whose crops are square).
Source paths are relative to ``src``, dest paths to ``dest``.

With ``faces`` every written file is a face crop (method ``cropped``), ``skipped_by_reason``
also counts ``no_face`` (:data:`~deepfake_detection.data.ingest.NO_FACE_REASON`), ``dest`` also
holds ``faces.csv`` and the report has a ``faces`` entry: ``cropped`` (True), ``size``,
``settings``, ``detector``, ``kept``, ``csv``, ``found`` (images written), ``no_face`` and
``several_faces`` (images with more than one face; the largest was kept). Without ``faces``
none of these appear.

With ``shards`` the report has a ``shards`` entry: ``count``, ``dir``, ``files`` (``{split:
[shard file names]}``) and ``records`` (``{split: n}``); dest paths in the report are then the
records' names.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path

from deepfake_detection import __version__
from deepfake_detection.data.images import MAX_ASPECT_RATIO, REASONS, SMALL_SIDE
from deepfake_detection.data.ingest.layout import Item, Layout, rel
from deepfake_detection.data.ingest.write import Written

REPORT_NAME = "ingest_report.json"


def odd_sizes(items: list[Item], dest_of: dict[int, str], warnings: list[str]) -> dict[str, list[str]]:
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


def duplicates(items: list[Item], dest_of: dict[int, str], src: Path, warnings: list[str]) -> list[dict]:
    """Groups of byte-identical written files (same md5), with a warning for a group that spans
    splits (possible only where the source fixed the splits) or both labels."""
    by_hash: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        if id(item) in dest_of:
            by_hash[item.md5].append(item)
    groups = []
    for digest, group in sorted(by_hash.items()):
        if len(group) < 2:
            continue
        groups.append({"md5": digest, "files": [{"source": rel(i.source, src), "dest": dest_of[id(i)]} for i in group]})
        if len({i.split for i in group}) > 1:
            warnings.append(f"identical files in several splits (leakage): {[rel(i.source, src) for i in group]}")
        if len({i.folder.label for i in group}) > 1:
            warnings.append(f"identical files under both labels: {[rel(i.source, src) for i in group]}")
    return groups


def build_report(
    src: Path,
    dest: Path,
    layout: Layout,
    items: list[Item],
    written: Written,
    duplicate_groups: list[dict],
    warnings: list[str],
    options: dict,
    started: float,
) -> dict:
    """The report (see the module docstring), after checking that every file seen was written or skipped."""
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
            {"path": rel(f.path, src), "split": f.split, "label": f.label, "files": found[id(f)]}
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
        "duplicates": duplicate_groups,
        "ignored": layout.ignored,
        "warnings": warnings,
        "notes": layout.notes,
        "seconds": round(time.perf_counter() - started, 3),
        "version": __version__,
    }
