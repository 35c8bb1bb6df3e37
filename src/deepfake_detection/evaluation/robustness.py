"""Robustness tables: a model's test scores under each perturbation against its clean scores.

``scores`` is a DataFrame with the labels ``y`` and one column of P(fake) per perturbation,
``clean`` (the untouched test split) first. For each: ROC AUC, accuracy at the model's tuned
threshold, and their drops from clean (``clean - perturbed``: positive = worse). Numbers and
figures only (no model, no MLflow).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

from .metrics import predict_labels
from .thresholds import validate_scores

CLEAN = "clean"
COLUMNS = ("perturbation", "auc", "accuracy", "auc_drop", "accuracy_drop")


def perturbation_columns(scores: pd.DataFrame) -> list[str]:
    """The score columns of a robustness scores frame: ``clean`` and every perturbation, in order."""
    if CLEAN not in scores.columns:
        raise ValueError(f"robustness scores need a {CLEAN!r} column; got {list(scores.columns)}")
    skip = {"path", "label", "y", "subgroup"}
    return [c for c in scores.columns if c not in skip]


def robustness_table(y, scores: Mapping[str, np.ndarray], threshold: float) -> pd.DataFrame:
    """One row per perturbation (``clean`` first): ``auc``, ``accuracy`` at ``threshold``
    (fake where ``p >= threshold``), ``auc_drop`` and ``accuracy_drop`` from clean."""
    if CLEAN not in scores:
        raise ValueError(f"scores need the {CLEAN!r} reference; got {list(scores)}")
    rows = []
    for name in [CLEAN, *(n for n in scores if n != CLEAN)]:
        yy, p = validate_scores(y, scores[name])
        rows.append(
            {
                "perturbation": name,
                "auc": float(roc_auc_score(yy, p)),
                "accuracy": float(np.mean(predict_labels(p, threshold) == yy)),
            }
        )
    table = pd.DataFrame(rows)
    clean = table.iloc[0]
    table["auc_drop"] = clean["auc"] - table["auc"]
    table["accuracy_drop"] = clean["accuracy"] - table["accuracy"]
    return table[list(COLUMNS)]


METRIC_KEYS = ("auc", "accuracy", "auc_drop")  # per perturbation in the metrics file


def metrics_json(threshold: float, table: pd.DataFrame, n: int) -> dict:
    """The compact metrics file: ``{threshold, n, <perturbation>: {auc, accuracy, auc_drop}}``
    (``clean`` among them, its drop 0); short keys, so ``dvc metrics show`` reads
    ``jpeg_50.auc``."""
    out: dict = {"threshold": float(threshold), "n": int(n)}
    for row in table.itertuples():
        out[row.perturbation] = {k: float(getattr(row, k)) for k in METRIC_KEYS}
    return out


def table_from_json(result: dict, order: list[str] | None = None) -> pd.DataFrame:
    """The :func:`robustness_table` back from :func:`metrics_json` (whose keys JSON may have
    sorted): ``clean`` first, then the perturbations of ``order``, then any other, by name."""
    found = {k: v for k, v in result.items() if isinstance(v, dict)}
    if CLEAN not in found:
        raise ValueError(f"a robustness result needs its {CLEAN!r} entry; got {sorted(found)}")
    names = [CLEAN, *(n for n in order or () if n in found and n != CLEAN)]
    names += sorted(set(found) - set(names))
    table = pd.DataFrame([{"perturbation": name, **found[name]} for name in names])
    table["accuracy_drop"] = table.accuracy.iloc[0] - table.accuracy
    return table[list(COLUMNS)]


def plot_robustness(table: pd.DataFrame, title: str) -> Figure:
    """Bars of the test AUC per perturbation, the clean AUC as a line, chance (0.5) dotted."""
    fig = Figure(figsize=(max(5.0, 0.8 * len(table) + 2), 4), layout="constrained")
    ax = fig.add_subplot()
    clean = float(table.loc[table.perturbation == CLEAN, "auc"].iloc[0])
    colors = ["tab:green" if p == CLEAN else "tab:blue" for p in table.perturbation]
    bars = ax.bar(table.perturbation, table.auc, color=colors)
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.axhline(clean, color="tab:green", linestyle="--", linewidth=1, label=f"clean {clean:.3f}")
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_ylim(min(0.4, float(table.auc.min()) - 0.05), 1.0)
    ax.set_ylabel("test ROC AUC")
    ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=30)
    ax.legend(loc="lower left", fontsize=8)
    return fig


def report_tables(results: Mapping[str, dict], order: list[str] | None = None) -> tuple[pd.DataFrame, str]:
    """Every model's and ensemble's robustness (``{name: metrics_json result}``; ``ensemble_*``
    names are ensembles) in one long table (CSV: ``model, kind, perturbation, auc, accuracy,
    auc_drop, accuracy_drop``) and as Markdown: test AUC then accuracy at the tuned threshold, one
    row per model (best clean first), one column per perturbation (``clean``, then ``order``), each
    perturbed cell with its change from clean."""
    long = pd.concat(
        [
            table_from_json(r, order).assign(model=name, kind="ensemble" if name.startswith("ensemble_") else "single")
            for name, r in results.items()
        ],
        ignore_index=True,
    )
    long = long[["model", "kind", *COLUMNS]]
    sections = []
    for metric, label in (("auc", "Test ROC AUC"), ("accuracy", "Test accuracy at the tuned threshold")):
        order = list(dict.fromkeys(long.perturbation))
        cells = long.assign(
            cell=[
                f"{v:.4f}" if p == CLEAN else f"{v:.4f} ({round(-d, 4) + 0.0:+.4f})"  # + 0.0: no "-0.0000"
                for p, v, d in zip(long.perturbation, long[metric], long[f"{metric}_drop"])
            ]
        )
        wide = cells.pivot(index="model", columns="perturbation", values="cell")[order]
        clean = long[long.perturbation == CLEAN].set_index("model")[metric]
        wide = wide.loc[clean.sort_values(ascending=False, kind="stable").index].reset_index()
        sections.append(f"### {label}\n\n{wide.to_markdown(index=False, disable_numparse=True)}\n")
    intro = (
        "## Robustness of every model and ensemble on the test split\n\n"
        "Each column re-scores the test images after that perturbation (params.yaml `robustness`); "
        "in brackets the change from clean.\n"
    )
    return long, "\n".join([intro, *sections])


def write_report(results: Mapping[str, dict], csv_path, md_path, order: list[str] | None = None) -> pd.DataFrame:
    """Write :func:`report_tables` to ``csv_path`` and ``md_path``; return the long table."""
    long, markdown = report_tables(results, order)
    for path in (Path(csv_path), Path(md_path)):
        path.parent.mkdir(parents=True, exist_ok=True)
    long.to_csv(csv_path, index=False)
    Path(md_path).write_text(markdown, encoding="utf-8")
    return long
