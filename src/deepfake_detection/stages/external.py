"""Stage `external`: cross-dataset evaluation. Every final model and every ensemble of the
`ensemble` stage (the register stage's candidates) is scored on each labelled folder of
``evaluate.external`` (images never used for training, thresholds or model choice): ROC AUC,
average precision, EER, and accuracy at the threshold tuned on the training data's validation
split (``metrics/threshold/<model>.json``; an ensemble's own, in its ``ensemble.json``).

Writes ``metrics/external.json`` (``{set: {model: {auc, ap, eer, accuracy, n}}}``, DVC metrics),
``reports/external.md`` (in-domain test AUC beside each external AUC) and ``artifacts/external/``
(``files.csv``: every file of every set with the reason it was not scored, if so;
``report.json``: per set its folder, content digest and unscored counts by reason;
``<set>/<model>.csv``: the predictions). Logs one MLflow run per model and ensemble,
``external-<model>``, tagged like its evaluate run (``stage``, ``model``), with the metrics
``external/<set>/{auc,ap,eer,accuracy,n,n_unscored}`` and the in-domain test figures as
``in_domain/{auc,ap,eer,accuracy}``, so one row of the runs table holds both.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from .. import LABELS, paths, tracking
from ..config import Params
from ..data.external import list_labelled
from ..data.manifest import md5_of
from ..evaluation.ensemble import KINDS, Ensemble
from ..evaluation.metrics import EXTERNAL_KEYS, external_metrics
from ..evaluation.report import read_json
from .scoring import load_final_model, score_files

logger = logging.getLogger(__name__)

IN_DOMAIN = {"auc": "auc", "ap": "average_precision", "eer": "eer", "accuracy": "accuracy"}  # ours: report's
FILE_COLUMNS = ["set", "path", "label", "error"]


def resolve_sets(params: Params) -> dict[str, tuple[Path, list[tuple[Path, str]]]]:
    """``{name: (folder, [(file, label), ...])}`` of ``evaluate.external``, every folder checked
    before any model is loaded. Relative folders are taken from the project root (DVC's
    ``DVC_ROOT`` under a queued experiment). ValueError naming the key and the folder."""
    sets = {}
    for name, folder in params.evaluate.external.items():
        folder = Path(folder).expanduser()
        resolved = folder if folder.is_absolute() else tracking.project_root() / folder
        try:
            sets[name] = (resolved, list_labelled(resolved))
        except ValueError as err:
            raise ValueError(f"evaluate.external.{name} ({folder}): {err}") from None
    return sets


def _reason_kind(reason: str) -> str:
    """The kind of a reason, for counting: ``not a decodable image: <detail>`` -> its first part."""
    return re.split(r":\s", reason, maxsplit=1)[0]


def _digest(folder: Path, files: list[tuple[Path, str]]) -> str:
    """md5 over every file's path (below the folder), label and content md5: changes when any file does."""
    h = hashlib.md5()
    for path, label in files:
        h.update(f"{path.relative_to(folder).as_posix()}\t{label}\t{md5_of(path)}\n".encode())
    return h.hexdigest()


def _candidates(params: Params) -> tuple[dict[str, float], dict[str, Ensemble]]:
    """Each model's validation-tuned threshold, and the fitted ensembles (with their own)."""
    thresholds = {m: float(read_json(paths.stage_metrics("threshold", m))["threshold"]) for m in params.models.names()}
    ensembles = {}
    for kind in KINDS:
        name = f"ensemble_{kind}"
        ensemble = Ensemble.from_dict(read_json(paths.ensemble_file(name)))
        if ensemble.threshold is None:
            raise ValueError(f"{paths.ensemble_file(name)} has no threshold: re-run `dvc repro ensemble`")
        unknown = sorted(set(ensemble.members) - set(thresholds))
        if unknown:
            raise ValueError(f"{name} combines models that are not in params.yaml's models: {unknown}")
        ensembles[name] = ensemble
    return thresholds, ensembles


def _in_domain(name: str, kind: str) -> dict[str, float]:
    """The test split's figures at the tuned threshold from the evaluate (or ensemble) report, if there."""
    path = paths.stage_metrics("ensemble" if kind == "ensemble" else "evaluate", name)
    if not path.is_file():
        return {}
    tuned = read_json(path).get("test", {}).get("tuned", {})
    return {ours: float(tuned[theirs]) for ours, theirs in IN_DOMAIN.items() if theirs in tuned}


def _score_set(set_name: str, folder: Path, files, models: dict, params: Params):
    """Every model's P(fake) of one set's files, the files' rows (with the reason a file was not
    scored) and which files were scored. ValueError when a class has no decodable image."""
    scores, errors = score_files(models, [f for f, _ in files], params)
    rel = [f.relative_to(folder).as_posix() for f, _ in files]
    labels = [label for _, label in files]
    file_rows = [{"set": set_name, "path": r, "label": lb, "error": e} for r, lb, e in zip(rel, labels, errors)]
    ok = np.array([e is None for e in errors], dtype=bool)
    y = np.array([LABELS.index(lb) for lb in labels])[ok]
    missing = [lb for i, lb in enumerate(LABELS) if not (y == i).any()]
    if missing:
        raise ValueError(
            f"evaluate.external.{set_name} ({folder}): no decodable {' or '.join(missing)} image "
            f"({int((~ok).sum())} of {len(files)} files could not be scored): AUC needs both classes"
        )
    base = pd.DataFrame({"path": np.array(rel)[ok], "label": np.array(labels)[ok], "y": y})
    return {m: scores[m][ok] for m in models}, base, file_rows, errors


def _set_report(set_name: str, folder: Path, files, errors: list, params: Params) -> dict:
    """A set's entry of ``artifacts/external/report.json``: its folder, digest and unscored counts."""
    unscored = Counter(_reason_kind(e) for e in errors if e is not None)
    n_unscored = sum(unscored.values())
    if unscored:
        logger.warning(
            "external %s: %d of %d files not scored: %s",
            set_name,
            n_unscored,
            len(files),
            ", ".join(f"{n} {k}" for k, n in unscored.most_common()),
        )
    return {
        "folder": str(params.evaluate.external[set_name]),
        "resolved": str(folder),
        "digest": _digest(folder, files),
        "files": len(files),
        "scored": len(files) - n_unscored,
        "unscored": n_unscored,
        "unscored_by_reason": dict(sorted(unscored.items())),
    }


def _set_metrics(set_name: str, probabilities: dict, base: pd.DataFrame, thresholds: dict, ensembles: dict) -> dict:
    """Each model's and ensemble's figures on one set at its own threshold; their predictions written."""
    for name, ens in ensembles.items():
        probabilities[name] = ens.predict(np.column_stack([probabilities[m] for m in ens.members]))
    y = base.y.to_numpy()
    results = {}
    for name, p in probabilities.items():
        t = ensembles[name].threshold if name in ensembles else thresholds[name]
        results[name] = external_metrics(y, p, t)
        base.assign(probability=p).to_csv(_predictions(set_name, name), index=False)
    return results


def run(params: Params) -> dict:
    sets = resolve_sets(params)
    outputs = (paths.EXTERNAL, paths.EXTERNAL_METRICS, paths.EXTERNAL_REPORT)
    with paths.replaced_on_success(*outputs):  # a failure keeps the previous outputs
        shutil.rmtree(paths.EXTERNAL, ignore_errors=True)  # sets no longer configured go too
        paths.EXTERNAL.mkdir(parents=True)
        if not sets:
            _write(params, {}, {}, {}, pd.DataFrame(columns=FILE_COLUMNS))
            logger.info("external: evaluate.external is empty, nothing to score")
            return {}
        thresholds, ensembles = _candidates(params)
        models = {m: load_final_model(m) for m in thresholds}
        kinds = {**dict.fromkeys(models, "single"), **dict.fromkeys(ensembles, "ensemble")}
        results: dict[str, dict[str, dict]] = {}
        reports: dict[str, dict] = {}
        file_rows = []
        for set_name, (folder, files) in sets.items():
            logger.info("external %s: scoring %d files of %s", set_name, len(files), folder)
            probabilities, base, rows, errors = _score_set(set_name, folder, files, models, params)
            file_rows += rows
            reports[set_name] = _set_report(set_name, folder, files, errors, params)
            results[set_name] = _set_metrics(set_name, probabilities, base, thresholds, ensembles)
        in_domain = {name: _in_domain(name, kind) for name, kind in kinds.items()}
        _write(params, results, reports, in_domain, pd.DataFrame(file_rows, columns=FILE_COLUMNS))
        _log_runs(params, sets, results, reports, in_domain, thresholds, ensembles)
    for set_name, by_model in results.items():
        for name, r in by_model.items():
            logger.info("external %s: %s AUC %.4f, AP %.4f, EER %.4f", set_name, name, r["auc"], r["ap"], r["eer"])
    logger.info("%s", paths.EXTERNAL_REPORT.read_text())
    return results


def _predictions(set_name: str, name: str) -> Path:
    path = paths.EXTERNAL / set_name / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _write(params: Params, results: dict, reports: dict, in_domain: dict, files: pd.DataFrame) -> None:
    tracking.write_json(results, paths.EXTERNAL_METRICS)
    tracking.write_json(reports, paths.EXTERNAL / "report.json")
    files.to_csv(paths.EXTERNAL / "files.csv", index=False)
    paths.EXTERNAL_REPORT.parent.mkdir(parents=True, exist_ok=True)
    paths.EXTERNAL_REPORT.write_text(report_markdown(results, reports, in_domain), encoding="utf-8")


def report_markdown(results: dict, reports: dict, in_domain: dict) -> str:
    """reports/external.md: in-domain test AUC beside each set's AUC, then each set's figures."""
    lines = ["# Cross-dataset evaluation", ""]
    if not results:
        lines += ["No external sets: `evaluate.external` in params.yaml is empty.", ""]
        return "\n".join(lines)
    lines += [
        "Every model and ensemble at its own validation-tuned threshold, on folders outside the training "
        "data (`evaluate.external`). In-domain: the test split of the training data.",
        "",
    ]
    names = list(next(iter(results.values())))
    table = pd.DataFrame(
        {
            "model": names,
            "in-domain test AUC": pd.Series([in_domain.get(n, {}).get("auc") for n in names], dtype=object),
            **{f"{s} AUC": [results[s][n]["auc"] for n in names] for s in results},
        }
    )
    lines += [table.to_markdown(index=False, floatfmt=".4f", missingval="n/a"), ""]
    for s, by_model in results.items():
        r = reports[s]
        lines += [f"## {s}", "", f"`{r['folder']}`: {r['files']} files, {r['scored']} scored, {r['unscored']} not."]
        if r["unscored"]:
            reasons = ", ".join(f"{k}: {n}" for k, n in r["unscored_by_reason"].items())
            lines += [f"Not scored ({reasons}); every file and its reason: `artifacts/external/files.csv`."]
        rows = pd.DataFrame([{"model": n, **{k: v[k] for k in EXTERNAL_KEYS}} for n, v in by_model.items()])
        lines += ["", rows.to_markdown(index=False, floatfmt=".4f"), ""]
    return "\n".join(lines)


def _log_runs(params, sets, results, reports, in_domain, thresholds, ensembles) -> None:
    """One MLflow run per model and ensemble, ``external-<name>``, tagged ``stage=external``, ``model=<name>``."""
    for name in in_domain:
        ens = ensembles.get(name)
        log = {
            "threshold": ens.threshold if ens else thresholds[name],
            **{f"evaluate.external.{s}": str(params.evaluate.external[s]) for s in sets},
        }
        if ens:
            log["ensemble.kind"] = ens.kind
            log["ensemble.members"] = ",".join(ens.members)
        with tracking.stage_run("external", params, model=name, log=log):
            for s, (folder, files) in sets.items():
                rows = pd.DataFrame(
                    {"path": [f.relative_to(folder).as_posix() for f, _ in files], "label": [lb for _, lb in files]}
                )
                tracking.log_external_dataset(s, rows, folder, reports[s]["digest"])
                figures = {**results[s][name], "n_unscored": reports[s]["unscored"]}
                tracking.log_metrics(figures, prefix=f"external/{s}/")
                tracking.log_artifact(_predictions(s, name), f"external/{s}")
            tracking.log_metrics(in_domain[name], prefix="in_domain/")
            tracking.log_artifact(paths.EXTERNAL_REPORT)
            tracking.log_dict(reports, "external/report.json")
