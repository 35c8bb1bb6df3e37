"""Stage `finetune@<model>` (transfer models): continue from the baseline with exactly the top
``finetune.unfreeze_layers`` backbone layers trainable (BatchNormalization stays frozen, the
layers below the window are frozen), the head and attention blocks too, at ``finetune.lr``, with
its own early stopping."""

from __future__ import annotations

from .. import paths
from ..config import Params, flatten
from ..training import distributed, fit, set_determinism


def run(model_name: str, params: Params) -> dict:
    import keras

    from ..models.zoo import backbone_layers, unfreeze_top

    source = paths.model_file(model_name, "train")
    if not source.is_file():
        raise FileNotFoundError(f"{source} not found: run `dvc repro train@{model_name}` first")
    f = params.finetune
    with distributed(params):  # train.distribute: loaded, compiled and trained in the strategy's scope
        set_determinism(params.seed)
        model = keras.models.load_model(source, compile=False)
        for layer in backbone_layers(model):  # the baseline may have trained it whole (weights: none)
            layer.trainable = False
        unfrozen = unfreeze_top(model, params.finetune.unfreeze_layers)
        return fit(
            model,
            "finetune",
            model_name,
            params,
            lr=f.lr,
            epochs=f.epochs,
            patience=f.patience,
            settings={
                **flatten(params.models.settings(model_name), "model."),
                "unfreeze_layers": f.unfreeze_layers,
                "unfrozen_count": len(unfrozen),
            },
        )
