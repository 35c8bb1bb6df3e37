"""Where each stage reads and writes, relative to the project root. dvc.yaml names the same
paths: a stage that writes an undeclared file, or misses a declared one, fails `dvc repro` in
tests/pipeline/test_end_to_end.py."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

ARTIFACTS = Path("artifacts")
METRICS = Path("metrics")
PLOTS = Path("plots")
REPORTS = Path("reports")

MANIFEST = ARTIFACTS / "manifest.csv"
DATA_METRICS = METRICS / "data.json"


def model_file(model: str, stage: str) -> Path:
    """The saved ``.keras`` model of a training stage (``train`` or ``finetune``)."""
    return ARTIFACTS / "models" / model / f"{stage}.keras"


def stage_metrics(stage: str, model: str) -> Path:
    return METRICS / stage / f"{model}.json"


def scores(name: str) -> Path:
    """The headline numbers of an evaluated model or ensemble (val AUC, test AUC and its 95%
    interval, threshold): the compact DVC metrics file that `dvc metrics show` and `dvc exp show`
    list; the full report stays in :func:`stage_metrics`."""
    return METRICS / "scores" / f"{name}.json"


def history_csv(stage: str, model: str) -> Path:
    """Per-epoch training log, a DVC plot."""
    return PLOTS / stage / f"{model}.csv"


def predictions(name: str, split: str, ensemble: bool = False) -> Path:
    """``path,label,y,subgroup,probability`` for every image of a split, of a model or an ensemble."""
    return (ARTIFACTS / "ensembles" / name if ensemble else ARTIFACTS / "predictions" / name) / f"{split}.csv"


def eval_plots(stage: str, name: str) -> Path:
    """ROC/confusion plot files (DVC templates) and PNG figures of an evaluated model or ensemble."""
    return PLOTS / stage / name


def ensemble_file(name: str) -> Path:
    """The fitted ensemble (JSON: kind, members, weights, threshold, ...)."""
    return ARTIFACTS / "ensembles" / name / "ensemble.json"


def robustness_scores(model: str) -> Path:
    """``path,label,y,subgroup,clean,<perturbation>...``: a model's P(fake) for every test image
    under each perturbation (the robustness stage; the ensembles' robustness combines them)."""
    return ARTIFACTS / "robustness" / f"{model}.csv"


def robustness_plot(name: str) -> Path:
    """``perturbation,auc,accuracy,auc_drop,accuracy_drop`` of a model or ensemble, a DVC plot."""
    return PLOTS / "robustness" / f"{name}.csv"


ROBUSTNESS_CSV = REPORTS / "robustness.csv"
ROBUSTNESS_MD = REPORTS / "robustness.md"

SUMMARY_CSV = REPORTS / "summary.csv"
SUMMARY_MD = REPORTS / "summary.md"
ROC_ALL = REPORTS / "roc_all.png"
ROC_ALL_PLOT = PLOTS / "summary" / "roc_all.json"  # the same curves as a DVC plot: the plots page's first chart
REGISTER_METRICS = METRICS / "register.json"
REGISTERED = METRICS / "registered.json"  # its compact DVC metrics: the registered model's headline numbers
EXTERNAL = ARTIFACTS / "external"  # the external stage: files.csv, report.json, <set>/<model>.csv predictions
EXTERNAL_METRICS = METRICS / "external.json"  # {set: {model: {auc, ap, eer, accuracy, n}}}
EXTERNAL_REPORT = REPORTS / "external.md"


@contextlib.contextmanager
def removed_on_failure(*outputs: Path) -> Iterator[None]:
    """Remove ``outputs`` (files or folders) if the block fails or is interrupted (Ctrl-C, SIGTERM).

    A stage that stops half-way would otherwise leave an empty model folder, a 0-byte history
    CSV or a model without its metrics: files that look like results. Their folders go too when
    this leaves them empty. The exception propagates.
    """
    try:
        yield
    except BaseException:
        for out in map(Path, outputs):
            if out.is_dir() and not out.is_symlink():
                shutil.rmtree(out, ignore_errors=True)
            else:
                out.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # not empty, or already gone
                out.parent.rmdir()
        raise
