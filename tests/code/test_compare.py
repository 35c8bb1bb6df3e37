"""`make compare`: the DVC experiments in 120 columns, on a real DVC project with a saved experiment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml
from project_commands import command_env

from deepfake_detection.compare import render

ROOT = Path(__file__).resolve().parents[2]
DVC_YAML = {
    "stages": {
        "register": {
            "cmd": "true",
            "params": ["train.lr", "models.light_se_cnn.epochs"],
            "metrics": [
                {"metrics/registered.json": {"cache": False}},
                {"metrics/scores/light_se_cnn.json": {"cache": False}},
            ],
        }
    }
}


def _sh(*args, cwd):
    done = subprocess.run(list(args), cwd=cwd, env=command_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _headline(path: Path, val_auc: float, test_auc: float) -> None:
    numbers = {
        "val_auc": val_auc,
        "test_auc": test_auc,
        "test_auc_low": test_auc - 0.05,
        "test_auc_high": test_auc + 0.04,
    }
    path.write_text(json.dumps({**numbers, "threshold": 0.4712345}))


def test_make_compare_fits_120_columns_with_the_headline_of_each_experiment(tmp_path):
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (tmp_path / "metrics" / "scores").mkdir(parents=True)
    _headline(tmp_path / "metrics" / "registered.json", 0.91234, 0.90111)
    _headline(tmp_path / "metrics" / "scores" / "light_se_cnn.json", 0.91234, 0.90111)
    _sh("git", "init", "-q", cwd=tmp_path)
    _sh("dvc", "init", "-q", cwd=tmp_path)
    _sh("git", "add", "-A", cwd=tmp_path)
    _sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline", cwd=tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["train"]["lr"] = 0.002
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _headline(tmp_path / "metrics" / "registered.json", 0.93, 0.80)
    _sh("dvc", "exp", "save", "-n", "faster-lr", cwd=tmp_path)

    out = _sh("make", "-s", "-f", str(ROOT / "Makefile"), "compare", f"BIN={Path(sys.executable).parent}", cwd=tmp_path)
    width = max(len(line) for line in out.splitlines())
    assert width <= 120, out
    header = next(line for line in out.splitlines() if line.startswith("experiment"))
    assert header.split() == ["experiment", "created", "val_auc", "test_auc", "low", "high", "thr", "train.lr"]
    rows = {line.split()[0]: line.split() for line in out.splitlines()[out.splitlines().index(header) + 1 :]}
    assert rows["faster-lr"][-6:] == ["0.930", "0.800", "0.750", "0.840", "0.471", "0.002"], out
    assert rows["master"][-2:] == ["0.471", "0.001"] and "…" not in out


def test_columns_that_do_not_fit_are_named_under_the_table():
    table = pd.DataFrame({"experiment": ["a", "b"], "test_auc": [0.9, 0.8]})
    for i in range(12):
        table[f"models.efficientnet_b0_dual_attention.setting_{i}"] = [i, i + 1]
    text = render(table, width=120)
    assert max(len(line) for line in text.splitlines()) <= 120
    assert "test_auc" in text.splitlines()[0] and "Changed too, not shown: models.efficientnet_b0" in text
    assert "setting_11" in text
