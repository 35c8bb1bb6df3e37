"""The networks, each declared once: its settings class and its builder, registered with
:func:`~deepfake_detection.models.registry.network`.

Adding a network takes this file (or a module imported from here) and params.yaml: a settings
class (a :class:`~deepfake_detection.models.registry.NetworkParams`), a builder decorated with
``@network(name, params=...)``, and a ``models.<name>`` section in params.yaml (plus its name in
``finetune.models`` for a transfer network). Builders import Keras when called, so this module
stays free of TensorFlow. What each builder computes is described in ``zoo.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .registry import NetworkParams, network

Weights = str  # "imagenet", "none" or a path to a weights file


def _check_weights(v: str | None) -> str:
    if v is None:
        return "none"
    if v in ("imagenet", "none"):
        return v
    if not Path(v).is_file():
        raise ValueError(f"must be 'imagenet', 'none' or an existing weights file; {v!r} is none of them")
    return v


class TransferParams(NetworkParams):
    weights: Weights = "none"
    dropout: float = Field(0.3, ge=0, lt=1)

    _weights = field_validator("weights", mode="before")(classmethod(lambda cls, v: _check_weights(v)))


class DualAttentionParams(TransferParams):
    attention_ratio: int = Field(8, ge=1)


class LightSECNNParams(NetworkParams):
    filters: list[int] = Field([32, 64, 128], min_length=1)
    convs_per_block: int = Field(1, ge=1, le=4)  # 3x3 conv-BN-ReLU layers before each pooling
    se_ratio: int = Field(8, ge=1)
    dropout: float = Field(0.3, ge=0, lt=1)
    # What the first convolution sees: rgb (the pixels), noise (the SRM noise stream of Zhou et
    # al. 2018: fixed high-pass residuals of every channel, truncated) or both, stacked.
    stream: Literal["rgb", "noise", "both"] = "rgb"


@network(
    "resnet50",
    params=TransferParams,
    transfer=True,
    application="ResNet50",
    preprocessing="caffe",
    backbone_output="conv5_block3_out",
    weights_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
)
def build_resnet50(image_size: int, params: TransferParams, *, backbone_trainable: bool = False):
    """ResNet50 (caffe preprocessing inside) -> GAP -> dropout -> sigmoid."""
    from .zoo import transfer_model  # Keras: only when built

    return transfer_model("resnet50", image_size, params.weights, params.dropout, backbone_trainable)


@network(
    "efficientnet_b0",
    params=TransferParams,
    transfer=True,
    application="EfficientNetB0",
    backbone_output="top_activation",
    weights_file="efficientnetb0_notop.h5",
)
def build_efficientnet_b0(image_size: int, params: TransferParams, *, backbone_trainable: bool = False):
    """EfficientNetB0 (ImageNet mean/std normalisation inside) -> GAP -> dropout -> sigmoid."""
    from .zoo import transfer_model  # Keras: only when built

    return transfer_model("efficientnet_b0", image_size, params.weights, params.dropout, backbone_trainable)


@network("light_se_cnn", params=LightSECNNParams)
def build_light_se_cnn(image_size: int, params: LightSECNNParams, *, backbone_trainable: bool = True):
    """Rescaling(1/255) (``stream: noise``: the SRM noise stream instead; ``both``: stacked) ->
    [conv-BN-ReLU (x convs_per_block) -> pool -> squeeze-excite] per filter count -> head.

    ``backbone_trainable`` is ignored: this network has no pretrained part and trains whole.
    """
    import keras
    from keras import layers

    from .blocks import classification_head, conv_block, noise_residual_block, squeeze_excite_block
    from .zoo import image_input  # Keras: only when built

    inputs = image_input(image_size)
    x = layers.Rescaling(1.0 / 255.0, name="preprocess_rescale")(inputs)
    if params.stream != "rgb":
        noise = noise_residual_block(inputs, name="noise")
        x = noise if params.stream == "noise" else layers.Concatenate(name="rgb_noise")([x, noise])
    for i, filters in enumerate(params.filters, start=1):
        for j in range(1, params.convs_per_block):  # extra convs at this resolution, before pooling
            x = conv_block(x, filters, name=f"block{i}_{j}", pool=False)
        x = conv_block(x, filters, name=f"block{i}")
        x = squeeze_excite_block(x, params.se_ratio, name=f"block{i}_se")
    outputs = classification_head(x, params.dropout, name="head")
    return keras.Model(inputs, outputs, name="light_se_cnn")


@network(
    "efficientnet_b0_dual_attention",
    params=DualAttentionParams,
    transfer=True,
    application="EfficientNetB0",
    backbone_output="top_activation",
    weights_file="efficientnetb0_notop.h5",
)
def build_efficientnet_b0_dual_attention(
    image_size: int, params: DualAttentionParams, *, backbone_trainable: bool = False
):
    """EfficientNetB0 features -> CBAM channel + spatial attention -> GAP -> dropout -> sigmoid."""
    from .zoo import transfer_model  # Keras: only when built

    return transfer_model(
        "efficientnet_b0_dual_attention",
        image_size,
        params.weights,
        params.dropout,
        backbone_trainable,
        attention_ratio=params.attention_ratio,
    )


class Degradation(BaseModel):
    """One degraded training copy of every training image (the operations of
    ``robustness.perturbations``: ``data/perturb.py``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    downscale: float | None = Field(None, gt=0, lt=1)
    blur: float | None = Field(None, gt=0)
    noise: float | None = Field(None, gt=0)
    # JPEG quality, or [low, high]: a quality drawn per image (seeded by the image's path)
    jpeg: int | list[int] | None = None

    @field_validator("jpeg")
    @classmethod
    def _quality(cls, v):
        qualities = v if isinstance(v, list) else [v] if v is not None else []
        if isinstance(v, list) and (len(v) != 2 or v[0] > v[1]):
            raise ValueError(f"jpeg must be a quality or [low, high], got {v}")
        if any(not 1 <= q <= 100 for q in qualities):
            raise ValueError(f"JPEG qualities must lie in 1..100, got {v}")
        return v

    def operations(self, image_seed: int) -> dict:
        """The ``perturb`` operations for one image (a ``[low, high]`` quality drawn from its seed)."""
        ops = self.model_dump(exclude_none=True)
        if isinstance(self.jpeg, list):
            low, high = self.jpeg
            ops["jpeg"] = low + image_seed % (high - low + 1)
        return ops


class ForensicParams(NetworkParams):
    """A forensic network: fixed features at native resolution, a standardised logistic regression."""

    # Inverse regularisation strengths tried; the one with the best cross-validated AUC on the
    # training images (and their degraded copies, grouped with their image) is kept.
    c_grid: list[float] = Field([0.1], min_length=1)
    cv_folds: int = Field(5, ge=2, le=20)
    # Degraded copies added to the training images (same label): what makes high-pass statistics
    # survive re-compression and resampling (benchmarks/README.md). [] trains on clean images.
    degrade: list[Degradation] = []
    # single: one logistic regression on clean + degraded copies. gated: a clean expert, an expert
    # with the degraded copies and a gate that routes each image by whether it looks degraded.
    head: Literal["single", "gated"] = "single"

    @model_validator(mode="after")
    def _gated_needs_copies(self):
        if self.head == "gated" and not self.degrade:
            raise ValueError(
                "head 'gated' needs degraded copies (degrade): its gate learns to tell them from clean images"
            )
        return self


class ResidualParams(ForensicParams):
    """``residual_cooc``: which residual statistics feed its head."""

    # Residual co-occurrences at each scale: 1 the image, 2 its 2x2 block average.
    scales: list[int] = Field([1], min_length=1)
    spam: bool = False  # also SPAM-686 of Y (second-order Markov features of pixel differences)
    hellinger: bool = False  # the square root of the histograms before the head

    @field_validator("scales")
    @classmethod
    def _scales(cls, v):
        if len(set(v)) != len(v) or any(s < 1 or s > 4 for s in v):
            raise ValueError(f"scales must be distinct whole numbers from 1 to 4, got {v}")
        return v


@network("residual_cooc", params=ResidualParams, view="native", fit="linear")
def build_residual_cooc(image_size: int, params: ResidualParams, *, backbone_trainable: bool = True):
    """YCbCr -> 11 fixed high-pass residuals -> co-occurrence histograms (1,375 per scale; with
    ``spam``, SPAM-686 of Y beside them; with ``hellinger``, square roots) -> logistic head(s).

    ``image_size`` is ignored: the network takes images of any size, at their own resolution."""
    from keras import layers

    from .forensic import forensic_model, multiscale_residual_block, spam_block  # Keras: only when built

    def extract(x):
        features = multiscale_residual_block(x, params.scales, sqrt=params.hellinger)
        if params.spam:
            features = layers.Concatenate(name="residual_spam")([features, spam_block(x, sqrt=params.hellinger)])
        return features

    return forensic_model("residual_cooc", extract, head=params.head)


class BlockDCTParams(ForensicParams):
    """``block_dct``: which YCbCr planes' block-DCT statistics feed its head."""

    # y: luma only (201 features); ycbcr: Y, Cb and Cr (603). The chroma planes carry much of the
    # signal on StyleGAN faces (cross-validated AUC 0.82 -> 0.89: benchmarks/README.md).
    planes: Literal["y", "ycbcr"] = "ycbcr"


@network("block_dct", params=BlockDCTParams, view="native", fit="linear")
def build_block_dct(image_size: int, params: BlockDCTParams, *, backbone_trainable: bool = True):
    """YCbCr -> 8x8 block DCT of Y (and Cb, Cr) -> coefficient statistics and first digits (201 per
    plane) -> logistic head.

    ``image_size`` is ignored: the network takes images of any size, at their own resolution."""
    from .forensic import CHANNELS, block_dct_block, forensic_model  # Keras: only when built

    planes = CHANNELS if params.planes == "ycbcr" else ("Y",)
    return forensic_model("block_dct", lambda x: block_dct_block(x, planes=planes), head=params.head)
