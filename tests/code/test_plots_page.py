"""The `dvc plots show` page leads with the answer: real `dvc plots show` on a folder holding the
project's dvc.yaml, params.yaml and plot templates (.dvc/plots/) and a few plot files written by
the project's own functions (no pipeline runs)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
from project_commands import command_env

from deepfake_detection.evaluation.metrics import dvc_confusion_rows, dvc_roc_points, model_colour
from deepfake_detection.evaluation.summary import roc_rows

ROOT = Path(__file__).resolve().parents[2]


def _sh(*args, cwd):
    return subprocess.run(list(args), cwd=cwd, env=command_env(), capture_output=True, text=True, check=True)


def _charts(html: str) -> list[str]:
    """The charts' titles and the images, in page order."""
    body = html[html.index("<body") :]
    return [m.group(1) or m.group(2) for m in re.finditer(r'<img src="([^"]+)"|"title": \{"text": "([^"]+)"', body)]


def test_the_plots_page_leads_with_every_models_roc_and_shows_confusion_counts_as_mlflow(tmp_path):
    for name in ("dvc.yaml", "params.yaml", "tools/dvc_plots_offline.html"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    _sh("git", "init", "-q", cwd=tmp_path)
    _sh("dvc", "init", "-q", cwd=tmp_path)
    shutil.copy(ROOT / ".dvc" / "config", tmp_path / ".dvc" / "config")
    shutil.copytree(ROOT / ".dvc" / "plots", tmp_path / ".dvc" / "plots")

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    p = np.clip(0.3 * y + 0.7 * rng.random(40), 0, 1)
    curves = {"light_se_cnn": (y, p), "ensemble_soft_vote": (y, 0.9 * p), "resnet50": (y, rng.random(40))}
    rows = roc_rows(curves, {"light_se_cnn": 0.9, "ensemble_soft_vote": 0.88, "resnet50": 0.5})
    assert {r["colour"] for r in rows if r["model"].startswith("light_se_cnn")} == {model_colour("light_se_cnn")}
    files = {
        "plots/summary/roc_all.json": {"roc": rows},
        "plots/evaluate/light_se_cnn/roc.json": {"roc": dvc_roc_points(y, p)},
        "plots/evaluate/light_se_cnn/confusion.json": {"confusion": dvc_confusion_rows(y, p, 0.5)},
        "plots/ensemble/ensemble_soft_vote/confusion.json": {"confusion": dvc_confusion_rows(y, p, 0.5)},
    }
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(json.dumps(data))
    (tmp_path / "reports").mkdir()
    shutil.copy(ROOT / "docs" / "screens" / "dvc_plots.png", tmp_path / "reports" / "roc_all.png")  # any PNG

    _sh("dvc", "plots", "show", "-o", "page", cwd=tmp_path)
    html = (tmp_path / "page" / "index.html").read_text()
    charts = _charts(html)
    assert charts[0].startswith("The answer: test ROC of every model and ensemble"), charts
    assert charts.index("static/workspace_reports_roc_all.png") == len(charts) - 1  # DVC puts images last
    assert not any(c.endswith((".json", ".csv")) for c in charts), "every chart is titled in words"
    # the confusion charts: counts shown from the start; actual down the side and predicted across,
    # real before fake, as the MLflow images (ConfusionMatrixDisplay)
    counts = json.loads((ROOT / ".dvc" / "plots" / "confusion_counts.json").read_text())
    assert counts["params"] == [{"name": "showValues", "value": True, "bind": {"input": "checkbox"}}]
    axes = counts["spec"]["encoding"]
    assert axes["x"]["sort"] == axes["y"]["sort"] == "descending"  # "real" > "fake"
    assert '"field": "predicted", "type": "nominal", "sort": "descending", "title": "predicted (1 = fake)"' in html
    assert '"field": "actual", "type": "nominal", "sort": "descending", "title": "actual (1 = fake)"' in html
    # every robustness chart shares one AUC axis, 0 to 1
    bars = json.loads((ROOT / ".dvc" / "plots" / "bar_auc.json").read_text())
    assert bars["encoding"]["x"]["scale"] == {"domain": [0, 1]}
