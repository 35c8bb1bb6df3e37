"""Stage `register` (last): the best model or ensemble by a VALIDATION metric becomes a new
version of the registered model, as a pyfunc that carries its preprocessing and its tuned
threshold; the champion alias moves to it only if it beats the current champion.

Both sides of that comparison are measured on the CURRENT validation split: the challenger from
its validation predictions (cross-fitted for the weighted and stacking ensembles), the champion by
loading its registered pyfunc and scoring the same images in-process, each at its own decision
threshold, with the project's metric code. A version's stored ``val_*`` tag was earned on the
data it was trained with and may come from other images; the gate falls back to it only when the
champion cannot be scored, and says so in its reason; a champion that cannot even be loaded is
beaten. The new version is created with its tags in one call and the alias moves last; a run
killed half-way leaves versions that the next run tags ``promotion: interrupted``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .. import champion, paths, tracking
from ..config import LOWER_IS_BETTER, Params
from ..evaluation.card import ModelRef, fit_description, load_facts, render_card
from ..evaluation.report import headline, load_predictions, load_results, read_json
from ..models import final_stage

logger = logging.getLogger(__name__)
SCORE_CHUNK = 128  # validation images per pyfunc call when scoring the champion

# What the registered model is, on its page in the MLflow UI (each version adds its own numbers).
MODEL_DESCRIPTION = (
    "Deepfake image detector: scores how likely an image (a face photo) is fake, i.e. generated or "
    "manipulated, and labels it real or fake. Input: a DataFrame with an 'image' column (base64-encoded "
    "JPEG/PNG/GIF/BMP/WebP) or a 'path' column (files, when reading files is allowed). Output per row: "
    "probability_fake, label ('real'/'fake'), threshold, error, warning. Decision rule: label 1 = fake; "
    "fake if probability_fake >= the version's threshold (its 'threshold' tag, tuned on validation). "
    "The alias 'champion' names the version to use. With faces on (the version's metadata 'faces': true when it "
    "was trained on face crops; the request param 'faces' overrides it), each photo gives one row per face found "
    "(input, face, face_x, face_y, face_w, face_h, face_confidence, then the columns above), or one row whose "
    "error says no face was found."
)
MODEL_TAGS = {
    "task": "binary image classification: real (0) vs fake (1)",
    "positive_label": "1 = fake",
    "input": "DataFrame column 'image' (base64 image bytes) or 'path'",
    "output": "probability_fake, label, threshold, error, warning",
    "decision_rule": "fake if probability_fake >= version tag 'threshold'",
}


def pick_best(results: list[dict], metric: str) -> dict:
    """The candidate with the best validation ``metric`` (``val_auc`` -> ``result["val"]["auc"]``)."""
    key = metric.removeprefix("val_")
    if not results:
        raise FileNotFoundError("no evaluated model found under metrics/: run `dvc repro` first")
    sign = -1 if metric in LOWER_IS_BETTER else 1  # the same rule as champion.is_better
    return max(results, key=lambda r: (sign * r["val"][key], r["kind"] == "single"))


def _members(best: dict) -> tuple[list[str], list[Path], dict | None]:
    """The member networks of the chosen model or ensemble, their ``.keras`` files and the ensemble."""
    if best["kind"] == "single":
        names, ensemble = [best["model"]], None
    else:
        ensemble = read_json(paths.ensemble_file(best["model"]))
        names = list(ensemble["members"])
    return names, [paths.model_file(m, final_stage(m)) for m in names], ensemble


def _example_image() -> Path:
    """The logged model's input example: a validation image (this stage never reads test); a
    shard record (`ingest --shards`) is copied to a temporary file first."""
    import atexit
    import shutil
    import tempfile

    from ..data.manifest import load_manifest
    from ..data.shards import iter_contents, split_ref

    manifest = load_manifest(paths.MANIFEST)
    path = str(manifest[manifest.split == "valid"].path.iloc[0])
    if split_ref(path) is None:
        return Path(path)
    folder = Path(tempfile.mkdtemp(prefix="deepfake-example-"))
    atexit.register(shutil.rmtree, folder, True)
    example = folder / Path(split_ref(path)[1]).name
    example.write_bytes(next(iter_contents([path])))
    return example


def trained_on_faces() -> bool:
    """Whether the training data were face crops (``ingest --faces``): then the registered
    model's ``faces`` flag is on, and it scores every face of a photo by default."""
    from ..data.manifest import face_cropped, load_manifest

    return face_cropped(load_manifest(paths.MANIFEST))


def selection_value(y, p, threshold: float, metric: str, n_bins: int = 10) -> float:
    """``metric`` (``val_auc`` -> ``auc``) of scores ``p`` at ``threshold``, by the metric code
    every stage uses."""
    from ..evaluation.metrics import binary_metrics

    if metric == "val_robust_auc":
        raise ValueError("val_robust_auc needs the perturbed validation images, not scores: the stored tags decide")
    return float(binary_metrics(y, p, threshold, n_bins)[metric.removeprefix("val_")])


def validation_predictions(best: dict) -> pd.DataFrame:
    """The chosen candidate's validation predictions (``path``, ``y``, ``probability``), checked
    to cover exactly the current manifest's validation split."""
    from ..data.manifest import load_manifest

    val = load_predictions(best["model"], "valid", ensemble=best["kind"] != "single")
    manifest = load_manifest(paths.MANIFEST)
    current = manifest.loc[manifest.split == "valid", "path"].astype(str).tolist()
    if val.path.astype(str).tolist() != current:
        raise ValueError(
            f"the validation predictions of {best['model']} are not those of the current "
            f"validation split: re-run its threshold stage"
        )
    return val


def score_model(model_uri: str, val: pd.DataFrame, metric: str, n_bins: int = 10) -> float:
    """Load a registered detector (pyfunc) and score ``val``'s images (``path`` column; labels
    ``y``) at the detector's own threshold. Images go in as base64 (the ``image`` column), so
    this does not depend on whether the detector may read paths. The images are the model's own
    kind of input (face crops when it was trained on them), so the face path is off. Raises if any
    image fails; :class:`champion.Unloadable` if the detector cannot be loaded."""
    import base64

    import mlflow

    from ..data.shards import iter_contents

    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except Exception as err:  # noqa: BLE001 - whatever stops it loading: the gate replaces it
        raise champion.Unloadable(f"{model_uri}: {type(err).__name__}: {err}") from err
    files = val.path.astype(str).tolist()  # files, or records of TFRecord shards (`ingest --shards`)

    def encoded(chunk: list[str]) -> list[str]:
        return [base64.b64encode(c).decode("ascii") for c in iter_contents(chunk)]

    out = pd.concat(
        [
            model.predict(pd.DataFrame({"image": encoded(files[i : i + SCORE_CHUNK])}), params={"faces": False})
            for i in range(0, len(files), SCORE_CHUNK)
        ],
        ignore_index=True,
    )
    if len(out) != len(files):
        raise ValueError(f"{model_uri} answered {len(out)} rows for {len(files)} images")
    p = pd.to_numeric(out["probability_fake"], errors="coerce").to_numpy(dtype=float)
    failed = ~np.isfinite(p)
    if failed.any():
        first = int(np.argmax(failed))
        why = out["error"].iloc[first] if "error" in out else "no probability"
        raise ValueError(
            f"{int(failed.sum())} of {len(files)} validation images could not be scored (first: {files[first]}: {why})"
        )
    return selection_value(val.y.to_numpy(), p, float(out["threshold"].iloc[0]), metric, n_bins)


def champion_rescorer(model_name: str, val_source, threshold: float, metric: str, n_bins: int = 10) -> champion.Rescore:
    """``rescore`` for :func:`champion.promote`: (challenger, champion) ``metric`` on the current
    validation split. ``val_source`` is the challenger's validation predictions or a function
    that loads them (then a failure there also falls back to the stored tags)."""

    def rescore(champion) -> tuple[float, float]:
        val = val_source() if callable(val_source) else val_source
        challenger = selection_value(val.y.to_numpy(), val.probability.to_numpy(), threshold, metric, n_bins)
        return challenger, score_model(f"models:/{model_name}/{champion.version}", val, metric, n_bins)

    return rescore


def version_tags_of(best: dict, metric: str) -> dict[str, object]:
    """A version's tags: the decision rule, where it comes from, the headline numbers (and the
    selection metric, which the gate reads), every validation and test metric in one JSON tag."""
    import json

    ci = best["test_auc_ci95"]
    return {
        "threshold": best["threshold"],
        "threshold_method": best["threshold_method"],
        "source_model": best["model"],
        "kind": best["kind"],
        "selection_metric": metric,
        metric: best["val"][metric.removeprefix("val_")],
        "val_auc": best["val"]["auc"],
        "test_auc": best["test"]["tuned"]["auc"],
        "test_auc_ci95": f"{ci['low']:.4f}-{ci['high']:.4f}",
        "metrics": json.dumps({"val": best["val"], "test": best["test"]["tuned"]}, sort_keys=True),
        "data_digest": tracking.data_digest(),
        "git_commit": tracking.git_commit(),
    }


def source_run(best: dict, register_run) -> str:
    """The run a registered version points at: the candidate's evaluate run (the ensemble's run
    for an ensemble), which holds its test metrics and figures; the register run for a report
    written before runs were recorded in it."""
    runs = best.get("runs") or {}
    return runs.get("evaluate") or runs.get("ensemble") or register_run.info.run_id


def card_of(model_uri: str, params: Params) -> str:
    """The model card of any logged detector (``deepfake-detect card``), from this project's
    files of the model it was made from (the version's or logged model's ``source_model`` tag)."""
    source = champion.describe_source(model_uri)
    name = source["tags"].get("source_model")
    if not name:
        raise ValueError(
            f"{model_uri} carries no source_model tag (a detector logged before model cards): "
            "register it again with `deepfake-detect register`"
        )
    facts = load_facts(name, params)
    ref = ModelRef(
        uri=model_uri,
        name=source["name"],
        version=source["version"],
        logged_by_run=source["run_id"],
        git_commit=source["tags"].get("git_commit", tracking.git_commit()),
        data_digest=source["tags"].get("data_digest", tracking.data_digest()),
        faces=bool(source["metadata"].get("faces", False)),
    )
    card = render_card(facts, params, ref)
    stored = source["tags"].get("test_auc")
    if stored is not None and abs(float(stored) - facts["result"]["test"]["tuned"]["auc"]) > 1e-9:
        card += (
            f"\n> Note: this project's metrics/ are not those this version was registered with "
            f"(its test_auc tag {float(stored):.4f}): the figures above describe today's `{name}`.\n"
        )
    return card


def log_and_register(best: dict, params: Params, run, faces: bool, version_tags: dict[str, object]):
    """Log ``best`` as a detector in the register ``run``, register it as a new version whose
    source run is its evaluate run, and give that version its tags and its model card (the
    description; also ``model_card.md`` beside the model). Returns MLflow's ModelInfo and the version."""
    from ..data.views import view_of
    from ..serving.pyfunc import log_detector

    name = params.register.model_name
    names, keras_paths, ensemble = _members(best)
    info = log_detector(
        keras_paths,
        best["threshold"],
        params.data.image_size,
        name=best["model"],  # the logged model is named after its network (or ensemble)
        ensemble=ensemble,
        threshold_method=best["threshold_method"],
        input_example_image=_example_image(),
        faces=faces,
        face_settings=params.data.faces,
        view=params.data.view,
        member_views=[view_of(params.data, m).view for m in names],
    )
    # the version with its threshold and tags in one call; the alias moves last (promote)
    version = champion.register_version(name, info.model_uri, info.model_id, source_run(best, run), version_tags)
    ref = ModelRef(
        uri=f"models:/{name}/{version}",
        name=name,
        version=version,
        logged_by_run=run.info.run_id,
        git_commit=str(version_tags["git_commit"]),
        data_digest=str(version_tags["data_digest"]),
        faces=faces,
    )
    card = render_card(load_facts(best["model"], params), params, ref)
    tracking.log_model_card(info.model_id, card, {"source_model": best["model"], "kind": best["kind"]})
    # the card (it names the version) is its description, cut to what MLflow's SQL stores hold
    champion.describe_version(name, version, fit_description(card))
    return info, version


def run(params: Params, force: bool = False) -> dict:
    """Register, gate, then write ``metrics/register.json`` and ``metrics/registered.json``: the
    previous ones are set aside while it runs (``paths.replaced_on_success``), so a killed run
    leaves them missing, which ``dvc status`` reports, never naming a version the alias left."""
    with paths.replaced_on_success(paths.REGISTER_METRICS, paths.REGISTERED):
        return _register(params, force)


def _register(params: Params, force: bool) -> dict:
    reg = params.register
    best = pick_best(load_results(params), reg.metric)
    faces = trained_on_faces()
    value = best["val"][reg.metric.removeprefix("val_")]
    version_tags = version_tags_of(best, reg.metric)
    log = {
        "register.model_name": reg.model_name,
        "register.metric": reg.metric,
        "register.alias": reg.alias,
        "force": force,
        "source_model": best["model"],
        "threshold": best["threshold"],
        "faces": faces,
    }
    repaired = champion.repair(reg.model_name, reg.alias)
    if repaired:
        logger.warning(
            "versions %s of %s were left half-done by a killed run: tagged promotion=%s",
            repaired,
            reg.model_name,
            champion.INTERRUPTED,
        )
    with tracking.stage_run("register", params, model=best["model"], log=log) as run:
        info, version = log_and_register(best, params, run, faces, version_tags)
        champion.describe_model(reg.model_name, MODEL_DESCRIPTION, MODEL_TAGS)
        rescore = champion_rescorer(
            reg.model_name, lambda: validation_predictions(best), best["threshold"], reg.metric, params.evaluate.n_bins
        )
        decision = champion.promote(reg.model_name, version, reg.alias, reg.metric, value, force, rescore=rescore)
        tracking.set_tags(
            {
                "promotion": "promoted" if decision.promoted else "not promoted",
                "promotion_reason": decision.reason,
                "registered_version": version,
            }
        )
        gate = {
            champion.gate_tag("challenger", reg.metric): decision.challenger_value,
            champion.gate_tag("champion", reg.metric): decision.champion_value,
        }
        tracking.log_metrics(
            {
                reg.metric: value,
                "promoted": float(decision.promoted),
                **{k: v for k, v in gate.items() if v is not None},
            }
        )
    out = {
        "model_name": reg.model_name,
        "version": int(version),
        "source_model": best["model"],
        "kind": best["kind"],
        "threshold": best["threshold"],
        reg.metric: value,
        "promoted": decision.promoted,
        "reason": decision.reason,
        "model_uri": info.model_uri,
        "champion_version": decision.previous_version,
        **gate,
    }
    tracking.write_json(out, paths.REGISTER_METRICS)
    tracking.write_json(headline(best), paths.REGISTERED)  # version, decision: metrics/register.json
    if paths.SUMMARY_MD.is_file():
        print(paths.SUMMARY_MD.read_text())
    verdict = "now holds" if decision.promoted else "does not take"
    print(
        f"registered {reg.model_name} version {version} ({best['model']}, threshold {best['threshold']:.4f}); "
        f"it {verdict} @{reg.alias}: {decision.reason}"
    )
    return out
