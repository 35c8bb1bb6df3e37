"""Labelled image folders outside the training data (``evaluate.external``), for the
cross-dataset evaluation of the ``external`` stage.

A folder is either ``{real,fake}/...`` (files at any depth below each class folder, as the
manifest reads each split of ``data/``) or a whole split dataset ``{train,valid,test}/{real,fake}/...``
(the layout of ``data/``), which is then taken whole: every split counts, since none of it
was used for training, tuning or model choice. Hidden files are skipped, as ``prepare`` skips
them; every other file is listed, so an undecodable one is reported by the stage, never lost.
"""

from __future__ import annotations

from pathlib import Path

from .. import LABELS, SPLITS


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def list_labelled(folder: str | Path) -> list[tuple[Path, str]]:
    """Every file of a labelled folder as ``(path, label)``, real first, in a fixed order.

    ValueError when the folder does not exist, holds neither ``real``/``fake`` nor
    ``train``/``valid``/``test`` folders, or lacks files of one class (AUC needs both)."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ValueError(f"{folder} {what}")
    names = {p.name for p in folder.iterdir() if p.is_dir()}
    if set(LABELS) & names:
        roots = [folder]
    elif set(SPLITS) & names:
        roots = [folder / s for s in SPLITS if s in names]
    else:
        shown = ", ".join(sorted(names)[:10]) or "no folders"
        raise ValueError(
            f"{folder} holds neither {{real,fake}}/ nor {{train,valid,test}}/{{real,fake}}/ folders (found: {shown})"
        )
    found: list[tuple[Path, str]] = []
    for label in LABELS:
        files = [p for root in roots if (root / label).is_dir() for p in _files(root / label)]
        if not files:
            where = " or ".join(str(root / label) for root in roots)
            raise ValueError(f"{folder} has no {label} images (looked in {where}): AUC needs both classes")
        found.extend((p, label) for p in files)
    return found
