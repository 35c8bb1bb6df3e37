"""The model card of a detector: one Markdown page with what it detects and its decision rule,
the data it learnt from, its test metrics with 95% intervals, calibration, robustness and its
limits in words, cross-dataset figures, the training recipe, lineage and how to call it.

In the spirit of Mitchell et al., "Model Cards for Model Reporting" (FAT* 2019) and Hugging Face
model cards. Everything is read from the files the stages write (``metrics/evaluate|ensemble/``,
``metrics/threshold/``, ``metrics/train|finetune/``, ``metrics/robustness/``,
``metrics/external.json``, ``metrics/data.json``, ``artifacts/ensembles/``): no metric is
computed again here, only the Wilson intervals of accuracy and recall from their counts.
The register stage logs it with each registered version's model and makes it the version's
description; ``deepfake-detect card MODEL_URI`` prints it for any logged detector.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import SPLITS, paths
from ..config import Params
from ..models.registry import SPECS
from .metrics import proportion_interval
from .report import read_json
from .robustness import CLEAN

HARMFUL_DROP = 0.05  # a perturbation that costs at least this much test AUC is a limitation
WORDS = {  # each perturbation operation: how it reads in a sentence, and what images it rules out
    "downscale": (lambda v: f"down-scaling to {v:.0%} and back", "re-scaled"),
    "blur": (lambda v: f"Gaussian blur sigma {v:g}", "blurred"),
    "noise": (lambda v: f"Gaussian noise (std {v:g} levels)", "noisy"),
    "jpeg": (lambda v: f"JPEG quality {v}", "re-compressed (JPEG)"),
}


@dataclass(frozen=True)
class ModelRef:
    """Where the carded detector lives: the URI to load it by, the registered name and version
    (None for a logged model that is not registered) and the run that logged it."""

    uri: str
    name: str | None = None
    version: str | None = None
    logged_by_run: str | None = None
    git_commit: str = "unknown"
    data_digest: str = "unknown"
    faces: bool = False


def _optional(path: Path) -> dict | None:
    return json.loads(Path(path).read_text()) if Path(path).is_file() else None


def load_facts(name: str, params: Params) -> dict:
    """What the stages wrote about the model or ensemble ``name``; the test report is required."""
    single = name in params.models.names()
    result = read_json(paths.stage_metrics("evaluate" if single else "ensemble", name))
    ensemble = None if single else read_json(paths.ensemble_file(name))
    members = [name] if single else list(ensemble["members"])
    external = _optional(paths.EXTERNAL_METRICS) or {}
    return {
        "name": name,
        "result": result,
        "ensemble": ensemble,
        "members": members,
        "training": {m: {s: _optional(paths.stage_metrics(s, m)) for s in ("train", "finetune")} for m in members},
        "thresholds": {m: _optional(paths.stage_metrics("threshold", m)) for m in members},
        "robustness": _optional(paths.stage_metrics("robustness", name)),
        "external": {s: figures[name] for s, figures in external.items() if name in figures},
        "data": _optional(paths.DATA_METRICS),
    }


def describe_perturbation(ops: dict) -> str:
    """``{"blur": 1.0}`` -> ``Gaussian blur sigma 1``; several operations joined by ``+``."""
    return " + ".join(WORDS[op][0](v) for op, v in ops.items() if v is not None and op in WORDS) or "none"


def perturbation_rows(robustness: dict) -> list[tuple[str, dict]]:
    """The perturbations of a robustness result (``metrics/robustness/<name>.json``), worst AUC first."""
    rows = [(k, v) for k, v in robustness.items() if isinstance(v, dict) and k != CLEAN]
    return sorted(rows, key=lambda kv: (kv[1]["auc"], kv[0]))


def robustness_limits(robustness: dict, perturbations: dict[str, dict]) -> list[str]:
    """The robustness limits in words: the worst perturbation with its AUC and cost, then the kinds
    of image the model should not be used on (every perturbation costing >= :data:`HARMFUL_DROP`)."""
    rows = perturbation_rows(robustness)
    if not rows:
        return []
    clean = robustness[CLEAN]["auc"]
    worst, figures = rows[0]
    ops = perturbations.get(worst, {})
    lines = [
        f"- **Worst perturbation: `{worst}`** ({describe_perturbation(ops)}): test AUC {figures['auc']:.3f}, "
        f"{figures['auc_drop']:.2f} below the clean {clean:.3f}."
    ]
    harmful = [(k, v) for k, v in rows if v["auc_drop"] >= HARMFUL_DROP]
    if harmful:
        kinds = []
        for key, _ in harmful:
            kinds += [WORDS[op][1] for op, v in perturbations.get(key, {}).items() if v is not None and op in WORDS]
        kinds = list(dict.fromkeys(kinds))
        costs = ", ".join(f"`{k}` {v['auc_drop']:.2f}" for k, v in harmful)
        lines.append(
            f"- Do not use it on {' or '.join(kinds) or 'perturbed'} images: AUC lost per perturbation: {costs}."
        )
    else:
        lines.append(f"- No perturbation tested costs {HARMFUL_DROP} AUC or more.")
    return lines


PROPORTIONS = (  # the rates shown with a Wilson interval: label, counts above, counts below the line
    ("accuracy", ("tp", "tn"), ("n",)),
    ("recall (fakes caught)", ("tp",), ("tp", "fn")),
    ("false-positive rate (reals called fake)", ("fp",), ("fp", "tn")),
)


def _proportion(at: dict, above: tuple[str, ...], below: tuple[str, ...]) -> str:
    k, n = sum(at[c] for c in above), sum(at[c] for c in below)
    low, high = proportion_interval(k, n)
    return f"{k / max(1, n):.3f} [{low:.3f}, {high:.3f}]"


def _metric_rows(test: dict) -> list[str]:
    tuned, half = test["tuned"], test["0.5"]
    rows = [f"| | at the tuned threshold ({tuned['threshold']:.4f}) | at 0.5 |", "|---|---|---|"]
    for label, above, below in PROPORTIONS:
        rows.append(f"| {label} | {_proportion(tuned, above, below)} | {_proportion(half, above, below)} |")
    for label, key in (("precision", "precision"), ("F1", "f1"), ("balanced accuracy", "balanced_accuracy")):
        rows.append(f"| {label} | {tuned[key]:.3f} | {half[key]:.3f} |")
    counts = [", ".join(str(at[c]) for c in ("tp", "fp", "tn", "fn")) for at in (tuned, half)]
    rows.append(f"| confusion (TP, FP, TN, FN) | {counts[0]} | {counts[1]} |")
    return rows


def _recipe(facts: dict, params: Params) -> list[str]:
    data = params.data
    size = f"{data.patch_size} px crops at native resolution (patch view)" if data.view == "patches" else None
    lines = [
        f"- Input: {size or f'the whole image resized to {data.image_size} x {data.image_size} px'} "
        f"(`data.view: {data.view}`); each network normalizes inside itself.",
        "- Loss: "
        + (
            "binary cross-entropy (focal gamma 0, no alpha)."
            if params.loss.gamma == 0 and params.loss.alpha is None
            else f"binary focal loss, gamma {params.loss.gamma:g}, alpha {params.loss.alpha}."
        ),
        f"- Optimizer: {'AdamW' if params.train.weight_decay else 'Adam'} at {params.train.lr:g}, "
        f"{params.train.schedule} schedule, early stopping on {params.train.monitor} (best weights restored), "
        f"class weights {'on' if params.train.class_weighting else 'off'}.",
    ]
    for m in facts["members"]:
        section = getattr(params.models, m, None)
        dumped = section.model_dump() if section else {}
        settings = ", ".join(f"{k} {v}" for k, v in dumped.items() if v is not None)
        runs = []
        for stage, figures in facts["training"][m].items():
            if figures:
                n = figures.get("epochs_run")
                runs.append(f"{stage}: {n} epoch{'' if n == 1 else 's'}, best {figures.get('best_epoch')}")
        lines.append(f"- Network `{m}` ({settings}): {'; '.join(runs) or 'no training record found'}.")
        if SPECS.get(m) is not None and SPECS[m].view == "native":
            lines.append(
                f"  `{m}` is a forensic network: it reads each image whole at its own resolution (never "
                "resized), fixed high-pass statistics and a logistic-regression head fitted in closed form."
            )
    if facts["ensemble"]:
        ens = facts["ensemble"]
        weights = ens.get("weights")
        shown = f", weights {', '.join(f'{w:.2f}' for w in weights)}" if weights else ""
        lines.insert(0, f"- Ensemble `{ens['kind']}` of {', '.join(ens['members'])}{shown}.")
    return lines


def _lineage(facts: dict, ref: ModelRef) -> list[str]:
    runs = facts["result"].get("runs") or {}
    lines = []
    for m in facts["members"]:
        for stage, figures in facts["training"][m].items():
            if figures and figures.get("run_id"):
                lines.append(f"- `{stage}-{m}` run: `{figures['run_id']}`")
        threshold = facts["thresholds"].get(m) or {}
        if threshold.get("run_id") and facts["ensemble"]:
            lines.append(f"- `threshold-{m}` run: `{threshold['run_id']}`")
    by_run: dict[str, list[str]] = {}  # an ensemble chooses its threshold in its own run
    for stage, run_id in sorted(runs.items(), key=lambda kv: kv[0] != "threshold"):  # threshold, then test
        if run_id:
            by_run.setdefault(run_id, []).append(stage)
    for run_id, stages in by_run.items():
        name = f"{stages[-1]}-{facts['name']}"
        lines.append(f"- `{name}` run{' (' + ' and '.join(stages) + ')' if len(stages) > 1 else ''}: `{run_id}`")
    if ref.logged_by_run:
        lines.append(f"- `register` run (logged this model): `{ref.logged_by_run}`")
    lines.append(f"- git commit: `{ref.git_commit}`; data: `data.dvc` md5 `{ref.data_digest}`")
    return lines


def _usage(ref: ModelRef) -> list[str]:
    uri = f"models:/{ref.name}/{ref.version}" if ref.version else ref.uri
    return [
        "```python",
        "import base64, mlflow, pandas as pd",
        'mlflow.set_tracking_uri("sqlite:///mlflow.db")  # the project\'s store',
        f'model = mlflow.pyfunc.load_model("{uri}")',
        'image = base64.b64encode(open("face.jpg", "rb").read()).decode()',
        'print(model.predict(pd.DataFrame({"image": [image]})))  # probability_fake, label, threshold, error, warning',
        "```",
        "",
        "```bash",
        f"deepfake-detect predict --model {uri} photos/ --output predictions.csv",
        f"mlflow models serve -m {uri} --env-manager local -p 5001   # REST",
        "curl -s localhost:5001/invocations -H 'Content-Type: application/json' \\",
        '  -d "{\\"dataframe_split\\": {\\"columns\\": [\\"image\\"], \\"data\\": [[\\"$(base64 -w0 face.jpg)\\"]]}}"',
        "```",
    ]


def render_card(facts: dict, params: Params, ref: ModelRef) -> str:
    """The model card (Markdown) of ``facts`` (:func:`load_facts`) for the detector at ``ref``."""
    r, name = facts["result"], facts["name"]
    tuned, ci = r["test"]["tuned"], r["test_auc_ci95"]
    title = f"{ref.name} version {ref.version}" if ref.version else ref.uri
    out = [
        f"# Model card: {title} (`{name}`, {r['kind']})",
        "",
        "## What it detects",
        "",
        "Scores how likely an image (a face photo) is fake, i.e. generated or manipulated: `probability_fake`. "
        "Label 1 = fake, 0 = real.",
        "",
        f"**Decision rule:** label 1 = fake; fake if `probability_fake >= {r['threshold']:.4f}`; "
        f"the threshold was chosen by `{r['threshold_method']}` on the validation split (never on test) "
        "and travels with the model (metadata `threshold`; a request may override it with the param `threshold`).",
        "",
        f"Faces: {'each face of a photo is found (MTCNN) and scored' if ref.faces else 'the image is scored whole'}.",
        "",
        "## Training data",
        "",
    ]
    out += _data_lines(facts["data"], params, ref)
    out += ["", "## Test metrics", ""]
    out.append(
        f"Test ROC AUC **{tuned['auc']:.4f}** (95% interval {ci['low']:.4f}-{ci['high']:.4f}, stratified bootstrap; "
        f"validation AUC {r['val']['auc']:.4f}) on {tuned['n']} test images. Brackets: 95% Wilson intervals."
    )
    out += ["", *_metric_rows(r["test"]), ""]
    out.append(
        f"Calibration: expected calibration error {tuned['ece']:.3f}, Brier score {tuned['brier']:.3f} "
        f"(equal error rate {tuned['eer']:.3f}, average precision {tuned['average_precision']:.3f})."
    )
    out += ["", "## Robustness", ""] + _robustness_lines(facts["robustness"], params)
    if facts["external"]:
        out += [
            "",
            "## Cross-dataset",
            "",
            "| set | AUC | average precision | accuracy | images |",
            "|---|---|---|---|---|",
        ]
        for s, f in facts["external"].items():
            out.append(f"| {s} | {f['auc']:.3f} | {f['ap']:.3f} | {f['accuracy']:.3f} | {f['n']} |")
    out += ["", "## Training recipe", "", *_recipe(facts, params)]
    out += ["", "## Lineage", "", *_lineage(facts, ref)]
    out += ["", "## How to load and call it", "", *_usage(ref)]
    out += ["", "## Limitations", "", *limitations(facts, params)]
    return "\n".join(out) + "\n"


def _data_lines(data: dict | None, params: Params, ref: ModelRef) -> list[str]:
    lines = [
        f"- Folder `{params.data.dir}` (train|valid|test/{{real,fake}}), DVC digest `{ref.data_digest}` (`data.dvc`).",
        f"- Face crops: {'yes (`ingest --faces`)' if ref.faces else 'no (whole images)'}.",
    ]
    if data:
        counts = data["counts"]
        per = "; ".join(
            f"{s}: {counts[s].get('real', 0)} real, {counts[s].get('fake', 0)} fake" for s in SPLITS if s in counts
        )
        lines.append(f"- Images per split: {per}.")
    return lines


def _robustness_lines(robustness: dict | None, params: Params) -> list[str]:
    if not robustness:
        return ["Not measured: run `dvc repro robustness-report` (the robustness stages)."]
    perturbations = {k: v.model_dump() for k, v in params.robustness.perturbations.items()}
    lines = ["| perturbation | what | test AUC | AUC drop | accuracy |", "|---|---|---|---|---|"]
    clean = robustness[CLEAN]
    lines.append(f"| clean | none | {clean['auc']:.3f} | 0 | {clean['accuracy']:.3f} |")
    for key, f in perturbation_rows(robustness):
        what = describe_perturbation(perturbations.get(key, {}))
        lines.append(f"| {key} | {what} | {f['auc']:.3f} | {f['auc_drop']:.3f} | {f['accuracy']:.3f} |")
    return lines


def limitations(facts: dict, params: Params) -> list[str]:
    """The known limitations, in words: robustness, cross-dataset, calibration, the test set."""
    r = facts["result"]
    lines = []
    if facts["robustness"]:
        perturbations = {k: v.model_dump() for k, v in params.robustness.perturbations.items()}
        lines += robustness_limits(facts["robustness"], perturbations)
    else:
        lines.append("- Robustness to re-compression, blur and re-scaling was not measured.")
    test_auc = r["test"]["tuned"]["auc"]
    for s, f in facts["external"].items():
        lines.append(
            f"- On `{s}` (other images than its training data) its AUC is {f['auc']:.3f} (in-domain {test_auc:.3f})."
        )
    if not facts["external"]:
        lines.append(
            "- Not tested on images from other sources (`evaluate.external` is empty): expect lower scores there."
        )
    ci = r["test_auc_ci95"]
    lines.append(
        f"- The test AUC is measured on {r['test']['tuned']['n']} images: its 95% interval spans "
        f"{ci['high'] - ci['low']:.3f}."
    )
    ece = r["test"]["tuned"]["ece"]
    if ece > 0.1:
        lines.append(
            f"- `probability_fake` is poorly calibrated (ECE {ece:.3f}): use the label, not the score as a probability."
        )
    return lines


DESCRIPTION_LIMIT = 5000
"""The longest model-version description MLflow's SQL stores hold (``varchar(5000)``; SQLite does
not enforce it, PostgreSQL and MySQL refuse longer ones)."""
_DROPPABLE = ("Training recipe", "Cross-dataset", "Training data", "Robustness", "Lineage")


def fit_description(card: str, limit: int = DESCRIPTION_LIMIT) -> str:
    """The card as a version's description: whole when it fits ``limit``, else without its
    longest-to-spare sections (in the order of ``_DROPPABLE``: recipe, cross-dataset figures, data,
    robustness table, lineage), with a note naming them and where the full card is; what to use it
    for, the decision rule, test metrics, how to load it and its limitations stay."""
    if len(card) <= limit:
        return card
    title, *sections = card.split("\n## ")
    dropped: list[str] = []

    def joined() -> str:
        note = (
            f"\n> This description leaves out {', '.join(dropped)} (MLflow keeps {limit:,} characters): the full "
            "card is `model_card.md` beside the model, or `deepfake-detect card <model URI>`.\n"
        )
        return "\n## ".join([title.rstrip("\n") + "\n" + note, *sections])

    for name in _DROPPABLE:
        if len(joined()) <= limit:
            break
        kept = [s for s in sections if not s.startswith(name + "\n")]
        if len(kept) < len(sections):
            sections, dropped = kept, [*dropped, name]
    text = joined()
    return text if len(text) <= limit else text[: limit - 3] + "..."
