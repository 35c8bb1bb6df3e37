"""Stage `summary`: one table of every model and ensemble at its tuned threshold and at 0.5
(reports/summary.csv and .md), every test ROC on one figure; logged to MLflow and printed."""

from __future__ import annotations

import logging

import matplotlib.pyplot as plt

from .. import paths, tracking
from ..config import Params
from ..evaluation.metrics import plot_roc_overlay
from ..evaluation.report import load_predictions, load_results, read_json
from ..evaluation.selection import pick_best
from ..evaluation.summary import roc_rows, summary_rows, summary_table, tie_notes, write_summary

logger = logging.getLogger(__name__)


def _weights(results: list[dict]) -> dict[str, dict[str, float]]:
    """``{ensemble: {member: weight}}`` of the ensembles that weigh their members."""
    out = {}
    for r in results:
        if r["kind"] == "ensemble" and paths.ensemble_file(r["model"]).is_file():
            ensemble = read_json(paths.ensemble_file(r["model"]))
            if ensemble.get("weights"):
                out[r["model"]] = dict(zip(ensemble["members"], ensemble["weights"], strict=True))
    return out


def run(params: Params):
    results = load_results(params)
    table = summary_table(summary_rows(results))
    reg = params.register
    chosen = pick_best(results, reg.metric, reg.simpler_within_se)["model"]  # the register stage's own choice
    notes = tie_notes(results, _weights(results))
    with paths.replaced_on_success(
        paths.SUMMARY_CSV, paths.SUMMARY_MD, paths.ROC_ALL, paths.ROC_ALL_PLOT
    ):  # nothing half-written
        paths.REPORTS.mkdir(parents=True, exist_ok=True)
        write_summary(table, paths.SUMMARY_CSV, paths.SUMMARY_MD, chosen, reg.metric, notes, reg.simpler_within_se)
        curves = {}
        for r in results:
            test = load_predictions(r["model"], "test", ensemble=r["kind"] == "ensemble")
            curves[r["model"]] = (test.y.to_numpy(), test.probability.to_numpy())
        fig = plot_roc_overlay(curves, "Test ROC of every model and ensemble")
        fig.savefig(paths.ROC_ALL, dpi=100, bbox_inches="tight")
        aucs = {r["model"]: r["test"]["tuned"]["auc"] for r in results}
        tracking.write_json({"roc": roc_rows(curves, aucs)}, paths.ROC_ALL_PLOT)  # the plots page's first chart
        with tracking.stage_run("summary", params):
            tracking.log_artifact(paths.SUMMARY_CSV)
            tracking.log_artifact(paths.SUMMARY_MD)
            tracking.log_artifact(paths.ROC_ALL)  # roc_all.png, as written above
            best = table[table["at"] == "tuned"].iloc[0]
            tracking.log_metrics({"best_test_auc": best["auc"], "n_models": len(results)})
    plt.close(fig)
    logger.info("%s", paths.SUMMARY_MD.read_text())
    return table
