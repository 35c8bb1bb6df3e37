"""Stage `train@<model>`: the baseline.

Transfer models with pretrained weights (``imagenet`` or a file) train their head and attention
blocks on a frozen backbone; with ``weights: none`` there is nothing to protect and a frozen
random backbone hardly learns, so the whole network trains. The light CNN trains whole.
Adam at ``train.lr`` (AdamW with ``train.weight_decay``), the ``loss`` section's loss, up to
``models.<model>.epochs`` (default ``train.epochs``) epochs, early stopping on ``train.monitor``
with the best weights restored, a plateau or cosine LR schedule, inverse-frequency class weights
when ``train.class_weighting``.
"""

from __future__ import annotations

from .. import paths
from ..config import Params, flatten
from ..data.views import model_input_size
from ..linear_fit import Folds, fit_linear
from ..models.registry import spec
from ..training import distributed, fit, set_determinism


def run(model_name: str, params: Params) -> dict:
    from ..models.zoo import build_model

    section = params.models.settings(model_name)
    if spec(model_name).fit == "linear":
        set_determinism(params.seed)
        model = build_model(model_name, model_input_size(params.data), params.models, seed=params.seed)
        return fit_linear(model, "train", model_name, params, settings=flatten(section, "model."))
    backbone_trainable = getattr(section, "weights", "none") == "none"
    t = params.train
    epochs = section.epochs or t.epochs
    with distributed(params):  # train.distribute: built, compiled and trained in the strategy's scope
        set_determinism(params.seed)
        model = build_model(
            model_name,
            model_input_size(params.data),
            params.models,
            seed=params.seed,
            backbone_trainable=backbone_trainable,
        )
        metrics = fit(
            model,
            "train",
            model_name,
            params,
            lr=t.lr,
            epochs=epochs,
            patience=t.patience,
            settings={**flatten(section, "model."), "backbone_trainable": backbone_trainable},
        )
    Folds.none().save(paths.folds(model_name))  # after a finished fit only: no k-fold heads (refit is for linear heads)
    return metrics
