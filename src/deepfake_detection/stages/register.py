"""Stage `register` (last): the best model or ensemble by a VALIDATION metric becomes a new
version of the registered model, as a pyfunc that carries its preprocessing and its tuned
threshold; the champion alias moves to it only if it beats the current champion."""

from __future__ import annotations

from pathlib import Path

from .. import paths, registry, tracking
from ..config import LOWER_IS_BETTER, Params
from ..evaluation.report import load_results, read_json
from ..models import final_stage


def pick_best(results: list[dict], metric: str) -> dict:
    """The candidate with the best validation ``metric`` (``val_auc`` -> ``result["val"]["auc"]``)."""
    key = metric.removeprefix("val_")
    if not results:
        raise FileNotFoundError("no evaluated model found under metrics/: run `dvc repro` first")
    sign = -1 if metric in LOWER_IS_BETTER else 1  # the same rule as registry.is_better
    return max(results, key=lambda r: (sign * r["val"][key], r["kind"] == "single"))


def _members(best: dict) -> tuple[list[Path], dict | None]:
    if best["kind"] == "single":
        return [paths.model_file(best["model"], final_stage(best["model"]))], None
    ensemble = read_json(paths.ensemble_file(best["model"]))
    return [paths.model_file(m, final_stage(m)) for m in ensemble["members"]], ensemble


def _example_image() -> Path:
    """The logged model's input example: a validation image (this stage never reads test)."""
    from ..data.manifest import load_manifest

    manifest = load_manifest(paths.MANIFEST)
    return Path(manifest[manifest.split == "valid"].path.iloc[0])


def run(params: Params, force: bool = False) -> dict:
    from ..inference import log_detector

    reg = params.register
    if params.data.view != "resize":
        raise ValueError(f"data.view is {params.data.view!r}: the registered model scores whole resized images "
                         "only (data.view: resize); the patch view is an evaluation setting for now")
    best = pick_best(load_results(params), reg.metric)
    keras_paths, ensemble = _members(best)
    value = best["val"][reg.metric.removeprefix("val_")]
    version_tags = {
        "threshold": best["threshold"], "threshold_method": best["threshold_method"],
        "source_model": best["model"], "kind": best["kind"], "selection_metric": reg.metric,
        **{f"val_{k}": v for k, v in best["val"].items()},
        **{f"test_{k}": v for k, v in best["test"]["tuned"].items()},
        "data_digest": tracking.data_digest(), "git_commit": tracking.git_commit(),
    }
    description = (f"{best['model']} ({best['kind']}), chosen by {reg.metric}={value:.4f} on the validation "
                   f"split. Decision rule: fake if probability_fake >= {best['threshold']:.4f} "
                   f"({best['threshold_method']} on validation). Test AUC {best['test']['tuned']['auc']:.4f}, "
                   f"F1 {best['test']['tuned']['f1']:.4f}. Input: a DataFrame with a 'path' or a base64 'image' column.")
    log = {"register.model_name": reg.model_name, "register.metric": reg.metric, "register.alias": reg.alias,
           "force": force, "source_model": best["model"], "threshold": best["threshold"]}
    with tracking.stage_run("register", params, model=best["model"], log=log):
        info = log_detector(keras_paths, best["threshold"], params.data.image_size, ensemble=ensemble,
                            threshold_method=best["threshold_method"], registered_model_name=reg.model_name,
                            input_example_image=_example_image())
        version = str(info.registered_model_version)
        registry.tag_version(reg.model_name, version, version_tags, description)
        decision = registry.promote(reg.model_name, version, reg.alias, reg.metric, value, force)
        tracking.set_tags({"promotion": "promoted" if decision.promoted else "not promoted",
                           "promotion_reason": decision.reason, "registered_version": version})
        tracking.log_metrics({reg.metric: value, "promoted": float(decision.promoted)})
    out = {"model_name": reg.model_name, "version": int(version), "source_model": best["model"],
           "kind": best["kind"], "threshold": best["threshold"], reg.metric: value,
           "promoted": decision.promoted, "reason": decision.reason, "model_uri": info.model_uri}
    tracking.write_json(out, paths.REGISTER_METRICS)
    if paths.SUMMARY_MD.is_file():
        print(paths.SUMMARY_MD.read_text())
    verdict = "now holds" if decision.promoted else "does not take"
    print(f"registered {reg.model_name} version {version} ({best['model']}, threshold {best['threshold']:.4f}); "
          f"it {verdict} @{reg.alias}: {decision.reason}")
    return out
