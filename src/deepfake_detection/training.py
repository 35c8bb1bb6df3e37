"""Training shared by the `train` and `finetune` stages: compile, fit, save, log.

``train.distribute`` picks the ``tf.distribute`` strategy (:func:`distribution_strategy`); the
stages build or load the model, compile and fit it inside :func:`distributed`'s scope.
``data.batch_size`` is the GLOBAL batch: the input pipeline batches it whole and the strategy
splits each batch evenly across its replicas (32 on 4 GPUs: 8 per GPU), so the loss, the
gradient step and the learning rate mean the same on one device and on several.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd

from . import LABELS, paths, signals, tracking
from .config import Params, flatten
from .data.manifest import class_weights, load_manifest

logger = logging.getLogger(__name__)

METRIC_NAMES = ("loss", "auc", "accuracy")  # the same for all four models, so MLflow compares them


def set_determinism(seed: int) -> None:
    """Same seed and params -> same metrics on CPU (see the README for the exceptions)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def distribution_strategy(params: Params):
    """The ``tf.distribute`` strategy of ``train.distribute``: ``none``, TensorFlow's default
    strategy (one device); ``mirrored``, ``MirroredStrategy`` over every local GPU (the CPU when
    there is none); ``multi_worker``, ``MultiWorkerMirroredStrategy``, which reads the cluster
    and this worker's task from the ``TF_CONFIG`` environment variable (without it: one local
    worker). Create it before any other TensorFlow op: the multi-worker strategy must configure
    the runtime first. One strategy per kind and process: a second MirroredStrategy in the same
    process would reuse the first one's collective-op keys (two stages in one session)."""
    import tensorflow as tf

    kind = params.train.distribute
    if kind == "none":
        return tf.distribute.get_strategy()
    return _strategy(kind)


@functools.cache
def _strategy(kind: str):
    import tensorflow as tf

    return tf.distribute.MirroredStrategy() if kind == "mirrored" else tf.distribute.MultiWorkerMirroredStrategy()


@contextlib.contextmanager
def distributed(params: Params) -> Iterator[object]:
    """``with distributed(params) as strategy:`` build or load, compile and fit the model inside."""
    strategy = distribution_strategy(params)
    with strategy.scope():
        yield strategy


def learning_rate(lr: float, params: Params, decay_steps: int | None = None):
    """``lr``, or with ``train.schedule: cosine`` a cosine decay from ``lr`` to 0 over ``decay_steps``."""
    import keras

    if params.train.schedule == "cosine":
        if not decay_steps:
            raise ValueError("train.schedule 'cosine' needs the number of training steps")
        return keras.optimizers.schedules.CosineDecay(initial_learning_rate=lr, decay_steps=decay_steps)
    return lr


def optimizer(lr, params: Params):
    """Adam, or AdamW when ``train.weight_decay`` > 0."""
    import keras

    if params.train.weight_decay > 0:
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=params.train.weight_decay)
    return keras.optimizers.Adam(learning_rate=lr)


def compile_model(model, lr, params: Params) -> None:
    """Compile with the project's optimizer, loss and metrics; ``lr`` is a float or a schedule.

    The optimizer's variables are built here, for the weights trainable now: Keras would create
    them while tracing the first training step, and TensorFlow traces a function that creates
    variables twice. Same weights and metrics, half the tracing (benchmarks/fit_tracing.py:
    EfficientNet-B0's 2-epoch fit at 32 px took 27 s, 13 s with it)."""
    import keras

    from .models.losses import BinaryFocalLoss

    model.compile(
        optimizer=optimizer(lr, params),
        loss=BinaryFocalLoss(gamma=params.loss.gamma, alpha=params.loss.alpha),
        metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
        jit_compile=params.train.jit_compile,
    )
    model.optimizer.build(model.trainable_variables)


def learning_rate_in_logs():
    """A callback that adds the epoch's learning rate (``learning_rate``: the scheduled value under
    a cosine schedule) to the epoch's logs, which the callbacks after it share: the history CSV
    and MLflow record it."""
    import keras

    class _LearningRate(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    return _LearningRate()


def plot_history(history: pd.DataFrame, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, name in zip(axes, (*METRIC_NAMES, "learning_rate")):
        for col, style in ((name, "-o"), (f"val_{name}", "--s")):
            if col in history:
                ax.plot(history["epoch"] + 1, history[col], style, label=col)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _best_epoch(history: pd.DataFrame, monitor: str) -> int:
    """1-based epoch whose weights early stopping restored (lowest loss, highest AUC)."""
    column = history[monitor]
    return int(column.idxmin() if monitor.endswith("loss") else column.idxmax()) + 1


def _datasets(params: Params):
    from .data.pipeline import labels_of, make_dataset

    manifest = load_manifest(paths.MANIFEST)
    d = params.data
    patch = d.patch_size if d.view == "patches" else None
    train_ds = make_dataset(
        manifest,
        "train",
        d.image_size,
        d.batch_size,
        augment=d.augment,
        shuffle=True,
        seed=params.seed,
        patch_size=patch,
    )
    val_ds = make_dataset(manifest, "valid", d.image_size, d.batch_size, patch_size=patch)
    train_labels = labels_of(manifest, "train")
    return train_ds, val_ds, train_labels


def fit(
    model, stage: str, model_name: str, params: Params, *, lr: float, epochs: int, patience: int, settings: dict
) -> dict:
    """Compile, fit with early stopping + LR reduction, save, and log one stage's run. Under
    :func:`distributed` the model must have been built or loaded in the same scope."""
    train_ds, val_ds, train_labels = _datasets(params)
    weights = class_weights(train_labels) if params.train.class_weighting else None
    steps = -(-len(train_labels) // params.data.batch_size) * epochs
    compile_model(model, learning_rate(lr, params, steps), params)
    out = paths.model_file(model_name, stage)
    history_csv = paths.history_csv(stage, model_name)
    for p in (out, history_csv):
        p.parent.mkdir(parents=True, exist_ok=True)
    settings = _run_settings(model, params, settings, lr=lr, epochs=epochs, patience=patience, weights=weights)
    with (  # outputs outermost: they are replaced only once the run has ended well too
        paths.replaced_on_success(out, history_csv, paths.stage_metrics(stage, model_name)),
        tracking.stage_run(stage, params, model=model_name, log=settings),
    ):
        start = time.perf_counter()
        with signals.deferred():  # SIGTERM ends the fit between two batches (_callbacks), not inside TensorFlow
            model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=epochs,
                class_weight=weights,
                shuffle=False,
                callbacks=_callbacks(params, patience, history_csv),
                verbose=2,
            )
        seconds = time.perf_counter() - start
        history = pd.read_csv(history_csv)
        if "learning_rate" not in history:
            history["learning_rate"] = np.nan
        metrics = _best_metrics(model, val_ds, history, params.train.monitor, seconds)
        _log_results(model, stage, model_name, metrics, history, val_ds)
    logger.info("%s %s: %s", stage, model_name, metrics)
    return metrics


def _run_settings(model, params: Params, settings: dict, *, lr: float, epochs: int, patience: int, weights) -> dict:
    """What the stage's run logs as params: the caller's ``settings``, the training recipe, the
    class weights and the model's parameter counts."""
    import tensorflow as tf  # TensorFlow: only when a model is trained

    t = params.train
    return {
        **settings,
        "lr": lr,
        "epochs": epochs,
        "patience": patience,
        "monitor": t.monitor,
        "schedule": t.schedule,
        "weight_decay": t.weight_decay,
        "reduce_lr_factor": t.reduce_lr_factor,
        "reduce_lr_patience": t.reduce_lr_patience,
        "class_weighting": params.train.class_weighting,
        "jit_compile": params.train.jit_compile,
        "distribute": t.distribute,
        "replicas": tf.distribute.get_strategy().num_replicas_in_sync,
        "global_batch_size": params.data.batch_size,
        **flatten(params.loss, "loss."),
        **{f"class_weight_{LABELS[k]}": v for k, v in (weights or {}).items()},
        "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "total_params": int(model.count_params()),
    }


def _callbacks(params: Params, patience: int, history_csv) -> list:
    """Early stopping (best weights restored), the learning rate in the logs, the history CSV,
    the per-epoch MLflow metrics and, for the ``plateau`` schedule, LR reduction."""
    import keras  # TensorFlow: only when a model is trained

    t = params.train
    callbacks = [
        keras.callbacks.LambdaCallback(  # the safe points where a SIGTERM held back by signals.deferred ends the fit
            on_train_batch_end=lambda batch, logs: signals.raise_if_received(),
            on_test_batch_end=lambda batch, logs: signals.raise_if_received(),
            on_epoch_end=lambda epoch, logs: signals.raise_if_received(),
        ),
        keras.callbacks.EarlyStopping(monitor=t.monitor, patience=patience, restore_best_weights=True),
        learning_rate_in_logs(),  # before the CSV logger: the history file gets its learning_rate column
        keras.callbacks.CSVLogger(str(history_csv)),
        tracking.epoch_logger(),
    ]
    if t.schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=t.monitor, factor=t.reduce_lr_factor, patience=t.reduce_lr_patience
            )
        )
    return callbacks


def _best_metrics(model, val_ds, history: pd.DataFrame, monitor: str, seconds: float) -> dict:
    """The restored (best) weights, measured once more on validation, with the epochs run, the
    best epoch and the training time; logged to the run as ``best_*``."""
    best = model.evaluate(val_ds, return_dict=True, verbose=0)
    metrics = {f"val_{k}": float(v) for k, v in best.items()}
    metrics.update(
        epochs_run=int(len(history)), best_epoch=_best_epoch(history, monitor), train_seconds=round(seconds, 2)
    )
    tracking.log_metrics({(k if k.startswith("best_") else f"best_{k}"): v for k, v in metrics.items()})
    metrics["run_id"] = tracking.active_run_id()  # lineage: the model card names this run
    return metrics


def _log_results(model, stage: str, model_name: str, metrics: dict, history: pd.DataFrame, val_ds) -> None:
    """The stage's metrics file, curves, history, ``.keras`` file and logged Keras model."""
    history_csv, out = paths.history_csv(stage, model_name), paths.model_file(model_name, stage)
    tracking.write_json(metrics, paths.stage_metrics(stage, model_name))
    tracking.log_figure(plot_history(history, f"{stage} {model_name}"), "training_curves.png")
    tracking.log_artifact(history_csv)
    model.save(out)
    tracking.log_artifact(out, "keras")
    example = next(iter(val_ds))[0].numpy()[:2]
    tracking.log_keras_model(model, name=model_name, example=example)  # named after its network
