"""``deepfake-detect relocate-store``: after a project folder was moved or copied, point its
SQLite MLflow store at the artifacts in the new folder.

The store records absolute artifact locations (``file:///old/project/mlartifacts/...``) in four
columns; a moved project's store would still read (and write) the old folder. This rewrites the
prefix of those columns, in one transaction, from the old folder's URI to the new one's.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

ARTIFACT_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
)
"""Every column of MLflow's SQLite schema (MLflow 3) that holds an artifact location."""


def relocate_store(db: Path, old_root: Path, new_root: Path) -> int:
    """Rewrite the artifact locations under ``old_root`` in the SQLite store ``db`` to lie under
    ``new_root``; returns the number of rows changed. Locations elsewhere (a tracking server's
    ``mlflow-artifacts:/``, ``s3://``) are left alone."""
    db = Path(db)
    if not db.is_file():
        raise FileNotFoundError(f"no MLflow store at {db}: run this in the moved project's folder")
    old = Path(old_root).absolute().as_uri().rstrip("/") + "/"
    new = Path(new_root).absolute().as_uri().rstrip("/") + "/"
    changed = 0
    with sqlite3.connect(db) as con:  # one transaction: all columns or none
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table, column in ARTIFACT_COLUMNS:
            if table in tables:
                changed += con.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE substr({column}, 1, ?) = ?",
                    (new, len(old) + 1, len(old), old),
                ).rowcount
    return changed
