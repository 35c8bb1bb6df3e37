"""Where each stage reads and writes, relative to the project root. dvc.yaml names the same
paths: a stage that writes an undeclared file, or misses a declared one, fails `dvc repro` in
tests/pipeline/test_end_to_end.py."""

from __future__ import annotations

import contextlib
import os
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


def folds(model: str) -> Path:
    """The k-fold heads of a refitted linear-head network (``train.refit``): fold of each train and
    validation image, each fold's weights and out-of-fold scores (``linear_fit.Folds``); no folds
    when the network was not refitted (every network's train stage writes it: DVC declares it)."""
    return ARTIFACTS / "models" / model / "folds.npz"


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


PREVIOUS = ".previous"
"""Suffix of a previous output set aside while its stage runs (:func:`replaced_on_success`)."""


def set_aside(output: Path) -> Path:
    """Where :func:`replaced_on_success` keeps the previous ``output`` while its stage runs: a
    hidden name beside it (same folder, so moving it is one atomic rename)."""
    output = Path(output)
    return output.with_name(f".{output.name}{PREVIOUS}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _present(path: Path) -> bool:
    return path.exists() or path.is_symlink()


@contextlib.contextmanager
def replaced_on_success(*outputs: Path) -> Iterator[None]:
    """Replace a stage's ``outputs`` (files or folders) only if the whole block succeeds.

    On entry the previous outputs are set aside (renamed to :func:`set_aside`, beside them);
    the block writes the new ones in place. If the block fails or is interrupted (an error,
    the tracking server down while logging, a full disk, Ctrl-C, SIGTERM), what it wrote is
    removed and the previous outputs are moved back, untouched; on success they are deleted.
    A run killed outright (SIGKILL) leaves them aside: the next run of the stage moves them
    back first. Folders left empty by a failed first run are removed. The exception propagates.
    """
    outputs = tuple(map(Path, outputs))
    for out in outputs:  # a killed run's previous outputs: back in place before anything else
        if _present(set_aside(out)):
            _remove(out)
            os.replace(set_aside(out), out)
    kept = []
    try:
        for out in outputs:
            if _present(out):
                os.replace(out, set_aside(out))
                kept.append(out)
        yield
    except BaseException:
        for out in outputs:
            _remove(out)
            if out in kept:
                out.parent.mkdir(parents=True, exist_ok=True)
                os.replace(set_aside(out), out)
            else:
                with contextlib.suppress(OSError):  # not empty, or already gone
                    out.parent.rmdir()
        raise
    for out in kept:
        _remove(set_aside(out))
