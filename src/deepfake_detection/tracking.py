"""The one module that talks to MLflow tracking.

Default store: ``sqlite:///mlflow.db`` in the project root, artifacts in ``mlartifacts/``
beside it; ``MLFLOW_TRACKING_URI`` overrides. The project root is DVC's ``DVC_ROOT`` when a
stage runs under DVC: a queued experiment (``dvc exp run --queue``, ``dvc queue start``) runs in
a temporary copy of the project, and ``DVC_ROOT`` names the project that queued it, so its runs
land in the same store as every other run. Every run carries the tags (computed in lineage.py) ``stage``,
``git_commit``, ``data_digest``, ``model`` (per-model stages) and, under ``dvc exp run``,
``dvc_exp`` (the experiment's name: one tag groups all the runs of one experiment) and
``dvc_baseline`` (the commit the experiment started from), and under DVC ``pipeline_run`` (one id
per ``dvc repro``: filter ``tags.pipeline_run = "..."``, lineage.py). Each run also records the splits
of the dataset it read as MLflow dataset inputs (:data:`STAGE_SPLITS`), named
``<data dir>@<data digest>``, with the split as context.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # it would call an outside host

import mlflow  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from . import signals  # noqa: E402
from .config import Params, flatten  # noqa: E402
from .lineage import (  # noqa: E402, F401  (run provenance: re-exported, tracking.run_tags etc.)
    DATA_DVC,
    PROCESS_TAG,
    STAGE_SPLITS,
    STAGES,
    data_digest,
    git_commit,
    process_ended,
    run_tags,
)

# The MLflow UI opens an experiment in its GenAI view unless told otherwise. MLflow 3.17's UI takes
# the view from the URL (``?workflowType=machine_learning``) or the user's last choice; UIs without
# workflow-based navigation read the experiment tag instead. Both are set: the tag here, the URL
# in :func:`experiment_url` (``make ui`` prints it).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def project_root(root: Path | None = None) -> Path:
    """``root`` if given, else DVC's ``DVC_ROOT`` (the project that queued an experiment), else cwd."""
    if root is None:
        root = Path(os.environ.get("DVC_ROOT") or Path.cwd())
    return Path(root).resolve()


def tracking_uri(root: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the SQLite store in :func:`project_root`."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{project_root(root) / 'mlflow.db'}"


def _init_sqlite_store(uri: str) -> None:
    """Create and migrate a SQLite store under a file lock, once per process.

    MLflow creates the tables of a new SQLite file on first use; two processes doing that at once
    race in its migrations (``table _alembic_tmp_metrics already exists``) and leave the store
    broken. The lock makes the first one create it while the others wait.
    """
    from filelock import FileLock

    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{db}.lock"):
        MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments(max_results=1)


_READY: set[str] = set()


def use_store(root: Path | None = None) -> str:
    """Point MLflow tracking and registry at the project's store (created if new); return its URI."""
    uri = tracking_uri(root)
    if uri.startswith("sqlite:///") and uri not in _READY:
        _init_sqlite_store(uri)
        _READY.add(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def setup(experiment: str, root: Path | None = None) -> str:
    """Point MLflow at the project's store and experiment; return the experiment id."""
    root = project_root(root)
    uri = use_store(root)
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        location = None  # a tracking server's default: artifacts through the server (mlflow-artifacts:/)
        if uri.startswith("sqlite:"):
            location = (root / "mlartifacts").as_uri()
        try:
            exp_id = client.create_experiment(experiment, artifact_location=location, tags=EXPERIMENT_KIND)
        except MlflowException as err:
            # A teammate's stage on a shared server created it a moment ago: use theirs.
            if err.error_code != "RESOURCE_ALREADY_EXISTS" or client.get_experiment_by_name(experiment) is None:
                raise
            return setup(experiment, root)
    else:
        exp_id = exp.experiment_id
        for key, value in EXPERIMENT_KIND.items():  # a store made before the tag existed
            if exp.tags.get(key) != value:
                client.set_experiment_tag(exp_id, key, value)
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def experiment_url(base_url: str, experiment: str, root: Path | None = None) -> str:
    """The UI page of the experiment's runs in the model-training view (not the GenAI view)."""
    exp_id = setup(experiment, root)
    return f"{base_url.rstrip('/')}/#/experiments/{exp_id}/runs?workflowType=machine_learning"


def close_stale_runs(experiment_id: str, by: str, where: str = "") -> list[str]:
    """Mark FAILED the runs of ``experiment_id`` left RUNNING by a process of this machine that
    has ended (SIGKILL, a crash, a power cut), with a ``failed_reason`` tag saying so and ``by``
    what; ``where``: an extra MLflow filter (``tags.model = 'x'``). Returns their run ids."""
    client = MlflowClient()
    query = "attributes.status = 'RUNNING'" + (f" and {where}" if where else "")
    closed = []
    for run in client.search_runs([experiment_id], query, max_results=1000):
        process = run.data.tags.get(PROCESS_TAG, "")
        if process_ended(process):
            reason = f"its process {process} ended without closing the run (killed outright?); marked FAILED by {by}"
            client.set_tag(run.info.run_id, "failed_reason", reason)
            client.set_terminated(run.info.run_id, "FAILED")
            closed.append(run.info.run_id)
    return closed


@contextlib.contextmanager
def stage_run(
    stage: str, params: Params, model: str | None = None, log: dict[str, object] | None = None
) -> Iterator[mlflow.ActiveRun]:
    """Start the MLflow run of one stage, named ``<stage>-<model>`` (or ``<stage>``).

    The run ends FINISHED, FAILED on an error, or KILLED when interrupted (``KeyboardInterrupt``:
    Ctrl-C, or SIGTERM, which the CLI turns into one). Runs of the same model (or stage) that a
    killed process left RUNNING are marked FAILED first (:func:`close_stale_runs`).

    ``log`` holds the effective settings to record as params (dotted keys); the seed and
    the data settings are always recorded.
    """
    exp_id = setup(params.mlflow.experiment)
    name = f"{stage}-{model}" if model else stage
    close_stale_runs(exp_id, f"the next {name} run", f"tags.model = '{model}'" if model else f"tags.stage = '{stage}'")
    with mlflow.start_run(run_name=name, tags=run_tags(stage, model)) as run:
        settings = {"seed": params.seed, **flatten(params.data, "data.")}
        settings.update(log or {})
        log_params(settings)
        log_datasets(params.data.dir, STAGE_SPLITS[stage])
        try:
            yield run
        except BaseException as err:  # Ctrl-C or SIGTERM (signals.py): KILLED, not FAILED
            if signals.interrupted(err):
                mlflow.end_run("KILLED")
            raise


def log_datasets(
    data_dir: str | Path, splits: tuple[str, ...], manifest: Path = Path("artifacts/manifest.csv")
) -> None:
    """Log each of ``splits`` of the manifest as a dataset input of the active run (the runs'
    *Dataset* column): its rows (path, label, md5, size, subgroup), named ``<data dir>@<data digest>``
    (the md5 in ``data.dvc``, 8 characters), source the data folder, context the split. Nothing is
    logged before ``prepare`` has written the manifest."""
    import warnings

    import mlflow.data
    import pandas as pd

    if not Path(manifest).is_file():
        return
    rows = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    name = f"{Path(data_dir).name or data_dir}@{data_digest().removesuffix('.dir')[:8]}"  # full md5: tag data_digest
    source = str(project_root() / data_dir)
    for split in splits:
        with warnings.catch_warnings():  # "source can be interpreted in multiple ways": it is a local folder
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(
                rows[rows.split == split].reset_index(drop=True), source=source, targets="label", name=name
            )
        mlflow.log_input(dataset, context=split)


def log_external_dataset(name: str, rows, source: str | Path, digest: str) -> None:
    """Log an outside evaluation set (``evaluate.external``: a DataFrame of its files, path and
    label) as a dataset input of the active run, named ``<name>@<digest, 8 characters>``, source
    its folder, context ``external``."""
    import warnings

    import mlflow.data

    with warnings.catch_warnings():  # "source can be interpreted in multiple ways": it is a local folder
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(
            rows.reset_index(drop=True), source=str(source), targets="label", name=f"{name}@{digest[:8]}"
        )
    mlflow.log_input(dataset, context="external")


def active_run_id() -> str | None:
    """The id of the active MLflow run (written beside a stage's results: its lineage), or None."""
    run = mlflow.active_run()
    return run.info.run_id if run else None


def log_params(settings: dict[str, object]) -> None:
    mlflow.log_params({k: ("none" if v is None else v) for k, v in settings.items()})


def log_metrics(metrics: dict[str, float], step: int | None = None, prefix: str = "") -> None:
    clean = {
        f"{prefix}{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    mlflow.log_metrics(clean, step=step)


def log_figure(fig, path: str) -> None:
    mlflow.log_figure(fig, path)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    mlflow.log_artifact(str(path), artifact_path)


def log_dict(data: dict, path: str) -> None:
    mlflow.log_dict(data, path)


def log_keras_model(model, name: str, example, registered_name: str | None = None):
    """Log a Keras 3 model (tensorflow flavour) with the signature of its outputs on ``example``.
    The example itself is not stored: with one, MLflow reloads the logged network and runs it
    again to validate the example (5-7 s per transfer network, in every train and finetune stage);
    the registered detector (``serving.pyfunc.log_detector``), the model people serve, keeps its
    input example."""
    import mlflow.tensorflow
    from mlflow.models import infer_signature

    signature = infer_signature(example, model.predict(example, verbose=0))
    return mlflow.tensorflow.log_model(
        model,
        name=name,
        signature=signature,
        pip_requirements=pip_requirements(),
        registered_model_name=registered_name,
    )


def pip_requirements() -> list[str]:
    """The pins a served model needs (passing them skips MLflow's slow inference)."""
    from importlib.metadata import version

    pkgs = ["tensorflow-cpu", "keras", "mlflow", "numpy", "pandas", "pillow", "scikit-learn"]
    return [f"{p}=={version(p)}" for p in pkgs]


def write_json(data: dict, path: str | Path) -> Path:
    """Write a metrics/params JSON file (for DVC) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


OPTIMIZER_PARAMS = ("beta_1", "beta_2", "epsilon", "weight_decay", "clipnorm", "global_clipnorm")


def epoch_logger():
    """MLflow's Keras callback (``mlflow.keras.MlflowCallback``: each epoch's ``logs``, the model
    summary as ``model_summary.txt``) logging to the active run; of the optimizer's settings only
    its kind (``optimizer.name``) and :data:`OPTIMIZER_PARAMS` as ``optimizer.<name>`` params (set
    ones; the learning rate is the run's ``lr`` param and its ``learning_rate`` metric), not
    MLflow's dump of its whole config;
    plus the learning rate of every epoch (``learning_rate``: the scheduled value under a cosine
    schedule, the value before ReduceLROnPlateau acts otherwise), so every model's curves overlay.
    Its per-evaluation ``validation_*`` metrics are left out: the epoch logs carry ``val_*`` already."""
    import keras
    from mlflow.keras import MlflowCallback

    class _EpochLogger(MlflowCallback):
        def on_train_begin(self, logs=None):
            optimizer = self.model.optimizer
            config = optimizer.get_config()
            # the kind (adam, adamw), not Keras's object name, which a process numbers (adam_3)
            settings = {"optimizer.name": type(optimizer).__name__.lower()}
            settings |= {f"optimizer.{k}": config[k] for k in OPTIMIZER_PARAMS if config.get(k) is not None}
            log_params(settings)
            summary: list[str] = []
            self.model.summary(print_fn=lambda line, *args, **kwargs: summary.append(line))
            mlflow.log_text("\n".join(summary), artifact_file="model_summary.txt")

        def on_epoch_end(self, epoch, logs=None):
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            super().on_epoch_end(epoch, {**(logs or {}), "learning_rate": lr})

        def on_test_end(self, logs=None):
            pass

    return _EpochLogger()


def log_pyfunc(
    name: str,
    python_model,
    *,
    artifacts: dict[str, str],
    model_config: dict | None = None,
    metadata: dict | None = None,
    code_paths: list[str] | None = None,
    signature=None,
    input_example=None,
    registered_model_name: str | None = None,
):
    """Log a custom ``mlflow.pyfunc.PythonModel`` to the active run with the project's pins."""
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=python_model,
        artifacts=artifacts,
        model_config=model_config,
        metadata=metadata,
        code_paths=code_paths,
        signature=signature,
        input_example=input_example,
        registered_model_name=registered_model_name,
        pip_requirements=pip_requirements(),
    )


def set_tags(tags: dict[str, object]) -> None:
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


def log_model_card(model_id: str, card: str, tags: dict[str, str]) -> None:
    """The model card (Markdown) as ``model_card.md`` beside the logged model's files and in the
    active run, and ``tags`` (which model it is: ``source_model``, ``kind``) on the logged model."""
    import tempfile

    client = MlflowClient()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model_card.md"
        path.write_text(card, encoding="utf-8")
        client.log_model_artifact(model_id, str(path))
    mlflow.log_text(card, "model_card.md")
    client.set_logged_model_tags(model_id, {k: str(v) for k, v in tags.items()})
