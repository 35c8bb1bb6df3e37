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
killed half-way leaves versions that the next run tags ``promotion: interrupted``.

The candidates' choice is :mod:`..evaluation.selection`'s; the gate's measurement (scoring both on
the current validation split) is :mod:`.register_gate`'s."""

from __future__ import annotations

import atexit
import json
import logging
import shutil
import tempfile
from pathlib import Path

from .. import champion, paths, tracking
from ..config import Params
from ..data.manifest import face_cropped, load_manifest
from ..data.shards import iter_contents, split_ref
from ..evaluation.card import ModelRef, fit_description, load_facts, render_card
from ..evaluation.report import headline, load_results, read_json
from ..evaluation.selection import pick_best
from ..models import final_stage
from ..serving.pyfunc import log_detector
from .register_gate import champion_rescorer, validation_predictions

logger = logging.getLogger(__name__)

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
    return face_cropped(load_manifest(paths.MANIFEST))


def version_tags_of(best: dict, metric: str) -> dict[str, object]:
    """A version's tags: the decision rule, where it comes from, the headline numbers (and the
    selection metric, which the gate reads), every validation and test metric in one JSON tag."""
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
    # TensorFlow (data.views imports it): only when a detector is logged
    from ..data.views import view_of

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


def _run_log(reg, best: dict, force: bool, faces: bool) -> dict[str, object]:
    """The register run's params."""
    return {
        "register.model_name": reg.model_name,
        "register.metric": reg.metric,
        "register.alias": reg.alias,
        "register.simpler_within_se": reg.simpler_within_se,
        "force": force,
        "source_model": best["model"],
        "threshold": best["threshold"],
        "faces": faces,
    }


def _repair(reg) -> None:
    """Tag the versions a killed run left half-done (``promotion: interrupted``)."""
    repaired = champion.repair(reg.model_name, reg.alias)
    if repaired:
        logger.warning(
            "versions %s of %s were left half-done by a killed run: tagged promotion=%s",
            repaired,
            reg.model_name,
            champion.INTERRUPTED,
        )


def _gate(best: dict, version, value: float, force: bool, params: Params) -> tuple[champion.Decision, dict]:
    """Move the alias to ``version`` if it beats the champion (or ``force``); tag and log the
    decision in the register run. Returns the decision and the gate's two measured values."""
    reg = params.register
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
    return decision, gate


def _tell(reg, best: dict, version, decision) -> None:
    """Print the summary table and the outcome."""
    if paths.SUMMARY_MD.is_file():
        print(paths.SUMMARY_MD.read_text())
    verdict = "now holds" if decision.promoted else "does not take"
    print(
        f"registered {reg.model_name} version {version} ({best['model']}, threshold {best['threshold']:.4f}); "
        f"it {verdict} @{reg.alias}: {decision.reason}"
    )


def _register(params: Params, force: bool) -> dict:
    reg = params.register
    best = pick_best(load_results(params), reg.metric, reg.simpler_within_se)
    faces = trained_on_faces()
    value = best["val"][reg.metric.removeprefix("val_")]
    version_tags = version_tags_of(best, reg.metric)
    log = _run_log(reg, best, force, faces)
    _repair(reg)
    with tracking.stage_run("register", params, model=best["model"], log=log) as run:
        info, version = log_and_register(best, params, run, faces, version_tags)
        champion.describe_model(reg.model_name, MODEL_DESCRIPTION, MODEL_TAGS)
        decision, gate = _gate(best, version, value, force, params)
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
    _tell(reg, best, version, decision)
    return out
