"""The stages that run no network (ensemble, robustness-ensemble, robustness-report, summary) and
register's bookkeeping (the choice, the version's tags, the gate's challenger figure) run without
importing TensorFlow: one fresh interpreter runs them all, inside a project folder whose
predictions, thresholds and robustness scores are made up, and reports what it imported."""

from __future__ import annotations

import json
import subprocess
import sys

from project_commands import command_env

SCRIPT = r"""
import json
import sys

import numpy as np
import pandas as pd

from deepfake_detection import paths, tracking
from deepfake_detection.config import parse_params
from deepfake_detection.evaluation.report import load_results
from deepfake_detection.evaluation.selection import pick_best, selection_value
from deepfake_detection.stages import ensemble, register, robustness, summary
from deepfake_detection.stages.scoring import choose_threshold, evaluate_scores

params = parse_params({"mlflow": {"experiment": "no-tensorflow"}})
perturbations = list(params.robustness.perturbations)
rng = np.random.default_rng(0)
y = np.array([0, 1] * 20)


def rows(split):
    return pd.DataFrame(
        {
            "path": [f"data/{split}/{i}.png" for i in range(len(y))],
            "label": np.where(y == 1, "fake", "real"),
            "y": y,
            "subgroup": "",
        }
    )


def scores():
    return np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, len(y)), 0, 1)


def written(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


for m in params.models.names():  # what the threshold, evaluate and robustness stages leave behind
    val = rows("valid").assign(probability=scores())
    val.to_csv(written(paths.predictions(m, "valid")), index=False)
    perturbed = {"clean": val.probability, **{c: scores() for c in perturbations}}
    rows("valid").assign(**perturbed).to_csv(written(paths.predictions(m, "valid_perturbed")), index=False)
    with tracking.stage_run("threshold", params, model=m):
        chosen = choose_threshold(m, val, params)
    tracking.write_json(chosen, written(paths.stage_metrics("threshold", m)))
    test = rows("test").assign(probability=scores())
    test.to_csv(written(paths.predictions(m, "test")), index=False)
    with tracking.stage_run("evaluate", params, model=m):
        evaluate_scores(m, "single", "evaluate", test, chosen, params)
    perturbed = rows("test").assign(clean=test.probability, **{c: scores() for c in perturbations})
    perturbed.to_csv(written(paths.robustness_scores(m)), index=False)
    robustness.report(m, "single", perturbed, chosen["threshold"], params)

ran = {"ensemble": len(ensemble.run(params))}
ran["robustness-ensemble"] = len(robustness.run_ensembles(params))
ran["robustness-report"] = len(robustness.run_report(params))
ran["summary"] = len(summary.run(params))
best = pick_best(load_results(params), params.register.metric)
tags = register.version_tags_of(best, params.register.metric)
chosen = pd.read_csv(paths.predictions(best["model"], "valid", best["kind"] != "single"), keep_default_na=False)
challenger = selection_value(chosen.y, chosen.probability, best["threshold"], params.register.metric)
ran["register"] = {"model": best["model"], "tagged": tags["selection_metric"], "challenger": challenger}
print(json.dumps({"ran": ran, "loaded": {m: m in sys.modules for m in ("tensorflow", "keras")}}))
"""


def test_the_stages_that_run_no_network_import_no_tensorflow(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, env=command_env(), capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["loaded"] == {"tensorflow": False, "keras": False}
    ran = out["ran"]
    assert ran["ensemble"] == ran["robustness-ensemble"] == 4  # soft vote, weighted, majority, stacking
    assert ran["robustness-report"] > 0 and ran["summary"] > 0
    assert ran["register"]["tagged"] == "val_auc" and 0 <= ran["register"]["challenger"] <= 1
    for written in ("reports/summary.md", "reports/robustness.md", "metrics/ensemble"):
        assert (tmp_path / written).exists(), written
