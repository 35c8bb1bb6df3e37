"""Stage `summary`: one table of every model and ensemble at its tuned threshold and at 0.5
(reports/summary.csv and .md), every test ROC on one figure; logged to MLflow and printed."""

from __future__ import annotations

import logging

import matplotlib.pyplot as plt

from .. import paths, tracking
from ..config import Params
from ..evaluation.metrics import plot_roc_overlay
from ..evaluation.report import load_predictions, load_results
from ..evaluation.summary import summary_rows, summary_table, write_summary

logger = logging.getLogger(__name__)


def run(params: Params):
    results = load_results(params)
    table = summary_table(summary_rows(results))
    with paths.replaced_on_success(paths.SUMMARY_CSV, paths.SUMMARY_MD, paths.ROC_ALL):  # nothing half-written
        paths.REPORTS.mkdir(parents=True, exist_ok=True)
        write_summary(table, paths.SUMMARY_CSV, paths.SUMMARY_MD)
        curves = {}
        for r in results:
            test = load_predictions(r["model"], "test", ensemble=r["kind"] == "ensemble")
            curves[r["model"]] = (test.y.to_numpy(), test.probability.to_numpy())
        fig = plot_roc_overlay(curves, "Test ROC of every model and ensemble")
        fig.savefig(paths.ROC_ALL, dpi=100, bbox_inches="tight")
        with tracking.stage_run("summary", params):
            tracking.log_artifact(paths.SUMMARY_CSV)
            tracking.log_artifact(paths.SUMMARY_MD)
            tracking.log_figure(fig, "roc_all.png")
            best = table[table["at"] == "tuned"].iloc[0]
            tracking.log_metrics({"best_test_auc": best["auc"], "n_models": len(results)})
    plt.close(fig)
    logger.info("%s", paths.SUMMARY_MD.read_text())
    return table
