"""The model zoo: ``build_model(name, image_size, params)`` for the registered networks
(``networks.py`` declares them; this module holds the Keras machinery they share).

Every model takes raw RGB pixels, float32 in [0, 255], shape ``(image_size, image_size, 3)``,
through an input named ``image``, and returns ``P(fake)`` of shape ``(batch, 1)`` from a sigmoid
Dense layer named ``probability_fake``. The preprocessing each network expects is part of the
model, so a saved model is used on raw pixels:

* ``resnet50``: Keras's ``resnet50.preprocess_input`` ("caffe": RGB -> BGR, minus the ImageNet
  BGR means, no scaling), as ``keras.ops.flip`` plus a ``Normalization`` layer with a fixed mean
  (``preprocess_caffe``) - both weightless, neither trainable.
* ``efficientnet_b0`` and ``efficientnet_b0_dual_attention``: Keras's EfficientNetB0 carries its
  own ``Rescaling(1/255)`` and ``Normalization`` layers; we fix the latter at the ImageNet
  mean and standard deviation, so the model computes ``(x / 255 - mean) / std`` - exactly what
  ``keras.applications.EfficientNetB0(weights="imagenet")`` computes - whatever ``weights``
  says (Keras's notop file stores the std as the layer's variance, tensorflow#49930, and Keras
  adds a correcting Rescaling only for ``weights="imagenet"``; we never load those two
  numbers from files).
* ``light_se_cnn``: ``Rescaling(1/255)`` (``preprocess_rescale``).

The transfer models' backbone layers are inlined in the model (the application is built on the
model's own tensors with ``input_tensor=``), so ``model.get_layer("conv5_block3_out")`` and the
like work and Grad-CAM can read the last feature map. Layers we add use the prefixes
``preprocess_``, ``attention_`` and ``head_`` (plus ``probability_fake``); everything else
between the input and the backbone's output layer (its spec's ``backbone_output``) is the backbone.

Weights of a transfer model (``models.<name>.weights`` in params.yaml):

* ``"none"``: random initialisation.
* ``"imagenet"``: Keras downloads the notop file (needs the internet, or the file already in
  ``~/.keras/models/``).
* a path to a **backbone-only** weights file, either
  - Keras's ImageNet notop file itself, downloaded elsewhere and copied here
    (``resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`` from
    ``https://storage.googleapis.com/tensorflow/keras-applications/resnet/``, or
    ``efficientnetb0_notop.h5`` from ``https://storage.googleapis.com/keras-applications/``),
    i.e. any file ``keras.applications.ResNet50(include_top=False, weights=path)`` (or
    ``EfficientNetB0``) accepts; or
  - a ``.weights.h5`` file written by :func:`save_backbone_weights` from one of our models
    (for example to start the EfficientNet models from a backbone fine-tuned elsewhere).
  The file is loaded into a standalone application of the same kind and copied, layer by layer
  and by name, into the model's backbone; the input size does not have to match. Full-model
  weights (backbone + head) are not a ``weights`` option: use ``model.load_weights`` or
  ``keras.models.load_model`` for those.

The transfer models' backbones are frozen at build time (``backbone_trainable=False``): the
baseline training trains the head and the attention block only; :func:`unfreeze_top` then opens
the top of the backbone for fine-tuning. ``light_se_cnn`` is trained whole.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from deepfake_detection.models.blocks import classification_head, dual_attention_block
from deepfake_detection.models.registry import spec, transfer_models

# Keras's resnet50.preprocess_input ("caffe" mode): ImageNet means in BGR order.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# ImageNet mean / std of [0, 1] RGB pixels (what EfficientNetB0 with ImageNet weights expects).
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)

_PREPROCESSING = (layers.InputLayer, layers.Rescaling, layers.Normalization)
HEAD_POOL = "head_pool"


# --------------------------------------------------------------------------- builders


def _application(name: str):
    """The ``keras.applications`` constructor of a transfer network's backbone."""
    return getattr(keras.applications, spec(name).application)


def image_input(image_size: int) -> keras.KerasTensor:
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32 (the transfer backbones' minimum), got {image_size}")
    return keras.Input(shape=(image_size, image_size, 3), dtype="float32", name="image")


def _set_imagenet_normalization(layer: layers.Normalization) -> None:
    """Fix an (unadapted) Normalization layer at ImageNet mean / std**2."""
    mean = np.asarray(IMAGENET_MEAN_RGB, "float32")
    var = np.asarray(IMAGENET_STD_RGB, "float32") ** 2
    weights = layer.get_weights()  # [mean, variance, count]
    layer.set_weights([mean, var, *weights[2:]])
    layer.finalize_state()  # Normalization caches mean/variance as tensors: refresh them


def _backbone(name: str, inputs, image_size: int, weights: str) -> tuple[keras.Model, keras.KerasTensor]:
    """The application built on ``inputs`` (its layers become the model's), with its weights."""
    app = _application(name)
    if spec(name).preprocessing == "caffe":
        x = keras.ops.flip(inputs, axis=-1)  # RGB -> BGR
        x = layers.Normalization(mean=CAFFE_MEAN_BGR, variance=(1.0, 1.0, 1.0), name="preprocess_caffe")(x)
    else:
        x = inputs  # EfficientNetB0 has its own Rescaling + Normalization layers
    base = app(include_top=False, weights=None, input_tensor=x, input_shape=(image_size, image_size, 3))
    norms = [
        layer for layer in base.layers if isinstance(layer, layers.Normalization) and layer.name != "preprocess_caffe"
    ]
    for layer in norms:
        _set_imagenet_normalization(layer)
    if weights != "none":
        source = _load_application(name, weights, image_size)
        _copy_weights(source, base, skip_normalization=True)
    return base, base.output


def _load_application(name: str, weights: str, image_size: int) -> keras.Model:
    """A standalone application holding ``weights`` ("imagenet" or a backbone file)."""
    app = _application(name)
    weights_file = spec(name).weights_file
    try:
        return app(include_top=False, weights=weights, input_shape=(image_size, image_size, 3))
    except Exception as err:  # noqa: BLE001 - Keras raises several types here; say what was expected
        if weights == "imagenet":
            raise RuntimeError(
                f"{name}: could not get the ImageNet weights ({type(err).__name__}: {err}). Without internet, "
                f"download {weights_file} elsewhere and set models.{name}.weights to its path."
            ) from err
        raise ValueError(
            f"{name}: {weights!r} is not a backbone weights file for {app.__name__}(include_top=False) "
            f"({type(err).__name__}: {err}). Expected Keras's {weights_file} or a .weights.h5 file "
            f"written by save_backbone_weights()."
        ) from err


def _weighted_layers(model: keras.Model, skip_normalization: bool) -> dict[str, keras.layers.Layer]:
    out = {}
    for layer in model.layers:
        if not layer.weights or isinstance(layer, layers.InputLayer):
            continue
        if isinstance(layer, layers.Normalization):
            if skip_normalization:
                continue
            out["<normalization>"] = layer  # auto-named, one per EfficientNet
        else:
            out[layer.name] = layer
    return out


def _copy_weights(source: keras.Model, target: keras.Model, skip_normalization: bool) -> None:
    """Copy weights layer by layer, by name; both sides must hold the same weighted layers."""
    src = _weighted_layers(source, skip_normalization)
    dst = _weighted_layers(target, skip_normalization)
    if set(src) != set(dst):
        missing, extra = sorted(set(dst) - set(src)), sorted(set(src) - set(dst))
        raise ValueError(f"backbone layers differ: missing in source {missing[:5]}, unexpected {extra[:5]}")
    for key, layer in dst.items():
        layer.set_weights(src[key].get_weights())
        if isinstance(layer, layers.Normalization):
            layer.finalize_state()


def _freeze(base: keras.Model, trainable: bool) -> None:
    for layer in base.layers:
        if not isinstance(layer, _PREPROCESSING):
            layer.trainable = trainable


def transfer_model(
    name: str,
    image_size: int,
    weights: str,
    dropout: float,
    backbone_trainable: bool,
    attention_ratio: int | None = None,
) -> keras.Model:
    """A transfer network: ``name``'s backbone with ``weights`` (``"imagenet"``, ``"none"`` or a
    weights file; frozen unless ``backbone_trainable``), an optional dual-attention block, the
    classification head with ``dropout``."""
    inputs = image_input(image_size)
    base, features = _backbone(name, inputs, image_size, weights)
    _freeze(base, backbone_trainable)
    if attention_ratio is not None:
        features = dual_attention_block(features, attention_ratio, name="attention")
    outputs = classification_head(features, dropout, name="head")
    return keras.Model(inputs, outputs, name=name)


def build_model(
    name: str,
    image_size: int,
    params: object,
    seed: int | None = None,
    *,
    backbone_trainable: bool = False,
) -> keras.Model:
    """Build model ``name`` for square ``image_size`` RGB images in [0, 255].

    ``params`` is the whole ``models`` section (``config.ModelsParams``, or any object with one
    attribute per network, its settings): the builder gets ``params.<name>``. ``seed``
    (if given) goes to ``keras.utils.set_random_seed`` first, which seeds Python, NumPy and the
    backend globally: same seed, same initial weights. ``backbone_trainable`` applies to the
    transfer models (frozen by default); ``light_se_cnn`` is always fully trainable. The
    returned model is not compiled and is named ``name``.
    """
    builder = spec(name).builder  # ValueError naming the known networks
    if seed is not None:
        keras.utils.set_random_seed(seed)
    return builder(image_size, getattr(params, name), backbone_trainable=backbone_trainable)


# --------------------------------------------------------------------------- fine-tuning and Grad-CAM


def _check_transfer(model: keras.Model, what: str) -> None:
    if model.name not in transfer_models():
        raise ValueError(
            f"{what} needs a transfer model {transfer_models()}; {model.name!r} has no pretrained backbone "
            "(light_se_cnn is trained whole)"
        )


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The backbone's layers of a transfer model, bottom to top (preprocessing excluded).

    Works on a freshly built model and on one loaded from ``.keras`` (it goes by the model's
    name and its spec's ``backbone_output``).
    """
    _check_transfer(model, "backbone_layers")
    top = model.get_layer(spec(model.name).backbone_output)
    all_layers = model.layers
    end = next(i for i, layer in enumerate(all_layers) if layer is top)
    return [
        layer
        for layer in all_layers[: end + 1]
        if not isinstance(layer, _PREPROCESSING) and not layer.name.startswith("preprocess_")
    ]


def unfreeze_top(model: keras.Model, n: int) -> list[str]:
    """Make the top ``n`` layers of a transfer model's backbone trainable; return their names.

    Counting follows the original R code (``freeze_weights(base, from = ...)``) and Keras's
    fine-tuning guide: the ``n`` topmost backbone layers in the model's (topological) layer
    order, of every kind - convolutions, BatchNormalization, activations, adds, paddings.
    Every BatchNormalization layer stays frozen (so it keeps running in inference mode with
    its moving statistics), including the ones inside the window; they are not in the returned
    list, so it holds ``n`` minus the number of BatchNormalization layers in the window.
    Layers below the window keep their trainable flag (frozen after ``build_model``); head and
    attention layers are untouched (trainable). Recompile the model afterwards.

    Raises ``ValueError`` for ``light_se_cnn`` (nothing pretrained to unfreeze) or ``n < 1``.
    """
    _check_transfer(model, "unfreeze_top")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    window = backbone_layers(model)[-n:]
    unfrozen = []
    for layer in window:
        if isinstance(layer, layers.BatchNormalization):
            continue
        layer.trainable = True
        unfrozen.append(layer.name)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
    return unfrozen


def last_conv_layer_name(model: keras.Model) -> str:
    """The last layer with a 4-D output before the head's global pooling (for Grad-CAM).

    resnet50: ``conv5_block3_out``; efficientnet_b0: ``top_activation``;
    efficientnet_b0_dual_attention: ``attention_spatial_scale`` (the attended feature map);
    light_se_cnn: ``block<k>_se_scale`` of the last block.
    """
    all_layers = model.layers
    try:
        end = next(i for i, layer in enumerate(all_layers) if layer.name == HEAD_POOL)
    except StopIteration:
        raise ValueError(f"{model.name!r} has no {HEAD_POOL!r} layer: not a model from build_model") from None
    for layer in reversed(all_layers[:end]):
        if len(layer.output.shape) == 4:
            return layer.name
    raise ValueError(f"{model.name!r} has no 4-D layer before {HEAD_POOL!r}")


def save_backbone_weights(model: keras.Model, path) -> None:
    """Write a transfer model's backbone weights to ``path`` (must end in ``.weights.h5``).

    The file is a standalone ``keras.applications`` backbone's weights: ``weights=<path>`` in
    ``build_model`` reads it back, and so does ``keras.applications.ResNet50(include_top=False,
    weights=path)`` (or ``EfficientNetB0``) for any input size.
    """
    _check_transfer(model, "save_backbone_weights")
    path = str(path)
    if not path.endswith(".weights.h5"):
        raise ValueError(f"backbone weights file must end in .weights.h5, got {path!r}")
    image_size = model.input_shape[1]
    standalone = _application(model.name)(include_top=False, weights=None, input_shape=(image_size, image_size, 3))
    own = _weighted_layers(standalone, skip_normalization=False)
    source = {layer.name: layer for layer in backbone_layers(model) if layer.weights}
    for norm in (layer for layer in model.layers if isinstance(layer, layers.Normalization)):
        if norm.name != "preprocess_caffe" and norm.weights:
            source["<normalization>"] = norm
    if set(own) != set(source):
        raise ValueError(f"{model.name}: backbone layers differ from a fresh {spec(model.name).application}")
    for key, layer in own.items():
        layer.set_weights(source[key].get_weights())
        if isinstance(layer, layers.Normalization):
            layer.finalize_state()
    standalone.save_weights(path)
