"""The comparison table of every model and ensemble on the test split.

One row per (model, ``at``): ``at = "tuned"`` is the threshold chosen on validation, ``at = "0.5"``
the fixed 0.5 reference. Rows are sorted by each model's tuned-row AUC, best first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

LEADING = ("model", "kind", "at", "threshold", "accuracy", "precision", "recall", "f1", "auc")
KINDS = ("single", "ensemble")
AT = ("tuned", "0.5")


def summary_rows(results: list[dict]) -> list[dict]:
    """The rows of :func:`summary_table` from evaluation results (``metrics/evaluate/<model>.json``,
    ``metrics/ensemble/<ensemble>.json``): one per threshold in ``result["test"]`` (``tuned``, ``0.5``),
    with the validation AUC and the threshold method."""
    return [
        {
            "model": r["model"],
            "kind": r["kind"],
            "at": at,
            **metrics,
            "val_auc": r["val"]["auc"],
            "threshold_method": r["threshold_method"],
        }
        for r in results
        for at, metrics in r["test"].items()
    ]


def _at_label(v) -> str:
    if isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) and float(v) == 0.5:
        return "0.5"
    return str(v)


def summary_table(rows: list[dict]) -> pd.DataFrame:
    """Tidy table from rows holding ``model, kind, at`` and metrics (e.g. :func:`summary_rows`).

    Columns: :data:`LEADING` first, then the other keys in first-seen order. ``kind`` must be
    ``single`` or ``ensemble``; ``at`` ``tuned`` or ``0.5`` (a float 0.5 is accepted). Sorted by the
    model's tuned AUC descending (ties: model name), ``tuned`` before ``0.5`` within a model.
    """
    if not rows:
        return pd.DataFrame(columns=list(LEADING))
    df = pd.DataFrame(rows)
    missing = [c for c in LEADING if c not in df.columns]
    if missing:
        raise ValueError(f"summary rows lack columns: {missing}")
    df["at"] = df["at"].map(_at_label)
    bad_kind = sorted(set(df["kind"]) - set(KINDS))
    bad_at = sorted(set(df["at"]) - set(AT))
    if bad_kind or bad_at:
        raise ValueError(f"kind must be one of {KINDS} and at one of {AT}; got kind {bad_kind}, at {bad_at}")
    if df.duplicated(["model", "at"]).any():
        dups = df.loc[df.duplicated(["model", "at"], keep=False), ["model", "at"]].drop_duplicates()
        raise ValueError(f"duplicate (model, at) rows: {dups.to_records(index=False).tolist()}")

    tuned_auc = df[df["at"] == "tuned"].set_index("model")["auc"]
    fallback = df.groupby("model")["auc"].max()  # a model without a tuned row sorts by its best AUC
    key = df["model"].map(tuned_auc).fillna(df["model"].map(fallback))
    df = (
        df.assign(_key=-key.astype(float), _at=df["at"].map(AT.index))
        .sort_values(["_key", "model", "_at"], kind="stable", na_position="last")
        .drop(columns=["_key", "_at"])
    )
    rest = [c for c in df.columns if c not in LEADING]
    return df[list(LEADING) + rest].reset_index(drop=True)


# The columns of the markdown table (the CSV keeps every column, counts included).
MARKDOWN_COLUMNS = (*LEADING, "average_precision", "balanced_accuracy", "eer", "brier", "ece", "val_auc")


def write_summary(df: pd.DataFrame, csv_path, md_path) -> None:
    """Write the table as CSV (every column) and as a GitHub markdown table of the
    :data:`MARKDOWN_COLUMNS` present (``DataFrame.to_markdown``; ``tabulate`` is installed as a
    dependency of DVC). Parent folders are created."""
    csv_path, md_path = Path(csv_path), Path(md_path)
    for path in (csv_path, md_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(csv_path, index=False)
    shown = df[[c for c in MARKDOWN_COLUMNS if c in df.columns]]
    md_path.write_text(shown.to_markdown(index=False, floatfmt=".4f") + "\n", encoding="utf-8")
