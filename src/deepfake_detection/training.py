"""Training shared by the `train` and `finetune` stages: compile, fit, save, log."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from . import LABELS, paths, tracking
from .config import Params, flatten
from .data.manifest import class_weights, load_manifest

METRIC_NAMES = ("loss", "auc", "accuracy")  # the same for all four models, so MLflow compares them


def set_determinism(seed: int) -> None:
    """Same seed and params -> same metrics on CPU (see the README for the exceptions)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def compile_model(model, lr: float, params: Params) -> None:
    import keras

    from .models.losses import BinaryFocalLoss

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss=BinaryFocalLoss(gamma=params.loss.gamma, alpha=params.loss.alpha),
        metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
        jit_compile=params.train.jit_compile,
    )


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


def _datasets(params: Params):
    from .data.pipeline import labels_of, make_dataset

    manifest = load_manifest(paths.MANIFEST)
    d = params.data
    train_ds = make_dataset(manifest, "train", d.image_size, d.batch_size, augment=d.augment,
                            shuffle=True, seed=params.seed)
    val_ds = make_dataset(manifest, "valid", d.image_size, d.batch_size)
    train_labels = labels_of(manifest, "train")
    return train_ds, val_ds, train_labels


def fit(model, stage: str, model_name: str, params: Params, *, lr: float, epochs: int,
        patience: int, settings: dict) -> dict:
    """Compile, fit with early stopping + LR reduction, save, and log one stage's run."""
    import keras

    train_ds, val_ds, train_labels = _datasets(params)
    weights = class_weights(train_labels) if params.train.class_weighting else None
    compile_model(model, lr, params)
    out = paths.model_file(model_name, stage)
    history_csv = paths.history_csv(stage, model_name)
    for p in (out, history_csv):
        p.parent.mkdir(parents=True, exist_ok=True)

    settings = {**settings, "lr": lr, "epochs": epochs, "patience": patience,
                "reduce_lr_factor": params.train.reduce_lr_factor,
                "reduce_lr_patience": params.train.reduce_lr_patience,
                "class_weighting": params.train.class_weighting, "jit_compile": params.train.jit_compile,
                **flatten(params.loss, "loss."),
                **{f"class_weight_{LABELS[k]}": v for k, v in (weights or {}).items()},
                "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
                "total_params": int(model.count_params())}
    with tracking.stage_run(stage, params, model=model_name, log=settings):
        callbacks = [
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=params.train.reduce_lr_factor,
                                              patience=params.train.reduce_lr_patience),
            keras.callbacks.CSVLogger(str(history_csv)),
            tracking.epoch_logger(),
        ]
        start = time.perf_counter()
        model.fit(train_ds, validation_data=val_ds, epochs=epochs, class_weight=weights, shuffle=False,
                  callbacks=callbacks, verbose=2)
        seconds = time.perf_counter() - start
        history = pd.read_csv(history_csv)
        if "learning_rate" not in history:
            history["learning_rate"] = np.nan
        # The restored (best) weights, measured once more on validation.
        best = model.evaluate(val_ds, return_dict=True, verbose=0)
        metrics = {f"val_{k}": float(v) for k, v in best.items()}
        metrics.update(epochs_run=int(len(history)), best_epoch=int(history.val_loss.idxmin()) + 1,
                       train_seconds=round(seconds, 2))
        tracking.write_json(metrics, paths.stage_metrics(stage, model_name))
        tracking.log_metrics({f"best_{k}": v for k, v in metrics.items()})
        tracking.log_figure(plot_history(history, f"{stage} {model_name}"), "training_curves.png")
        tracking.log_artifact(history_csv)
        model.save(out)
        tracking.log_artifact(out, "keras")
        example = next(iter(val_ds))[0].numpy()[:2]
        tracking.log_keras_model(model, name="model", input_example=example)
    print(f"{stage} {model_name}: {metrics}")
    return metrics
