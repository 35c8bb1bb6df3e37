"""The comparison table of every model and ensemble on the test split.

One row per (model, ``at``): ``at = "tuned"`` is the threshold chosen on validation, ``at = "0.5"``
the fixed 0.5 reference. Rows are sorted by each model's tuned-row AUC, best first.
"""

from __future__ import annotations

import textwrap
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


# The columns of the markdown table, most important first, with their short headers (the CSV keeps
# every column, counts included). Columns are dropped from the right until the table fits WIDTH.
MARKDOWN_COLUMNS = {
    "model": "model",
    "at": "at",
    "threshold": "thr",
    "auc": "auc",
    "val_auc": "val_auc",
    "accuracy": "acc",
    "recall": "recall",
    "precision": "prec",
    "f1": "f1",
    "ece": "ece",
    "brier": "brier",
}
WIDTH = 120  # characters: a terminal
MARK = " *"  # after the name of the model the register stage picks
TIE = 1e-9


def roc_rows(curves: dict[str, tuple], aucs: dict[str, float]) -> list[dict]:
    """Every model's and ensemble's test ROC points in one DVC plot file (``{"roc": rows}``, the
    ``roc_models`` template): ``model`` (its name and test AUC), ``kind``, ``colour``
    (:func:`~.metrics.model_colour`, as in every figure), ``rank`` (best AUC first), ``step``
    (the point's order on its curve), ``fpr``, ``tpr``, ``threshold``."""
    from .metrics import dvc_roc_points, model_colour

    ranked = sorted(curves, key=lambda n: (-aucs[n], n))
    rows = []
    for rank, name in enumerate(ranked):
        label = f"{name} ({aucs[name]:.3f})"
        kind = "ensemble" if name.startswith("ensemble_") else "single"
        for step, point in enumerate(dvc_roc_points(*curves[name])):
            rows.append(
                {"model": label, "kind": kind, "colour": model_colour(name), "rank": rank, "step": step, **point}
            )
    return rows


def tie_notes(results: list[dict], weights: dict[str, dict[str, float]]) -> list[str]:
    """Why two rows show the same numbers: an ensemble whose weights (``{ensemble: {member:
    weight}}``) put all on one member is that member; other models with the same validation and
    test AUC are named as ties."""
    notes, explained = [], set()
    for ensemble, w in weights.items():
        member, top = max(w.items(), key=lambda kv: kv[1]) if w else (None, 0.0)
        if top >= 1 - 1e-6:
            notes.append(
                f"{ensemble} equals {member}: its weights put {top:.2f} on {member} (fit on validation), "
                "so it scores exactly as that model."
            )
            explained.add(frozenset((ensemble, member)))
    for i, a in enumerate(results):
        for b in results[i + 1 :]:
            same = abs(a["val"]["auc"] - b["val"]["auc"]) < TIE
            same = same and abs(a["test"]["tuned"]["auc"] - b["test"]["tuned"]["auc"]) < TIE
            if same and frozenset((a["model"], b["model"])) not in explained:
                notes.append(
                    f"{a['model']} and {b['model']} tie: validation AUC {a['val']['auc']:.4f}, "
                    f"test AUC {a['test']['tuned']['auc']:.4f}."
                )
    return notes


def markdown_table(df: pd.DataFrame, chosen: str | None = None, width: int = WIDTH) -> str:
    """The :data:`MARKDOWN_COLUMNS` of ``df`` as a Markdown table (3 decimals), ``chosen``'s rows
    marked with :data:`MARK`; the last columns dropped while it is wider than ``width``."""
    shown = df[[c for c in MARKDOWN_COLUMNS if c in df.columns]].rename(columns=MARKDOWN_COLUMNS)
    if chosen is not None:
        shown = shown.assign(model=[f"{m}{MARK}" if m == chosen else m for m in shown["model"]])
    while True:
        table = shown.to_markdown(index=False, floatfmt=".3f")
        if max(len(line) for line in table.splitlines()) <= width or shown.shape[1] <= 3:
            return table
        shown = shown.iloc[:, :-1]


def write_summary(
    df: pd.DataFrame,
    csv_path,
    md_path,
    chosen: str | None = None,
    metric: str = "val_auc",
    notes=(),
    within_se: float = 0.0,
) -> None:
    """Write the table as CSV (every column) and as Markdown (``DataFrame.to_markdown``;
    ``tabulate`` is installed as a dependency of DVC) at most :data:`WIDTH` characters wide: a
    legend, :func:`markdown_table` with ``chosen`` (the model the register stage picks by
    ``metric``, a single model within ``within_se`` standard errors of a better ensemble
    preferred) marked, and ``notes`` (e.g. :func:`tie_notes`). Parent folders are created."""
    csv_path, md_path = Path(csv_path), Path(md_path)
    for path in (csv_path, md_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(csv_path, index=False)
    legend = (
        "Every model and ensemble on the test split, at its tuned threshold and at 0.5 (label 1 = fake), best "
        "test AUC first. thr: threshold; acc: accuracy; prec: precision; ece: expected calibration error; every "
        "column and the counts: reports/summary.csv."
    )
    if chosen is not None:
        simpler = f" (a single model within {within_se:g} standard errors of the best ensemble preferred)"
        legend += (
            f" {MARK.strip()} {chosen}: the best {metric} on validation"
            + (simpler if within_se else "")
            + ", the one `register` registers; it becomes "
            "@champion unless the current champion scores better on the same validation split (metrics/register.json)."
        )
    text = textwrap.fill(legend, WIDTH) + "\n\n" + markdown_table(df, chosen) + "\n"
    if notes:
        text += "\n" + "\n".join(
            textwrap.fill(note, WIDTH, initial_indent="- ", subsequent_indent="  ") for note in notes
        )
        text += "\n"
    md_path.write_text(text, encoding="utf-8")
