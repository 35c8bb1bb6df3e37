"""Small named building blocks, composed with the Keras functional API by ``zoo.py``.

Every block takes a 4-D tensor ``(batch, height, width, channels)`` and a ``name`` that prefixes
the names of the layers it creates, so the layers of a built model read like the blocks that
made them (``block2_se_squeeze``, ``attention_spatial_conv``, ...).

Only built-in Keras layers are used: no custom layer and no ``Lambda``. A model built from these
blocks, saved as ``.keras``, loads with plain ``keras.models.load_model(path)`` (safe mode on)
in a process that never imports this package. Where CBAM needs a reduction over the channel
axis (the spatial attention's channel mean and max) we reshape the feature map to
``(height * width, channels)`` and use ``GlobalAveragePooling1D`` / ``GlobalMaxPooling1D`` with
``data_format="channels_first"``, which pool over the last axis; this needs static height and
width, which our models always have (their input size is fixed).
"""

from __future__ import annotations

import numpy as np
from keras import layers


def conv_block(x, filters: int, name: str, *, kernel_size: int = 3, pool: bool = True):
    """Conv2D (no bias) -> BatchNormalization -> ReLU (-> 2x2 max pooling)."""
    x = layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)  # settles within a short run
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    if pool:
        # "same" padding: a 1-pixel map stays 1 pixel instead of vanishing.
        x = layers.MaxPooling2D(2, padding="same", name=f"{name}_pool")(x)
    return x


# The three SRM kernels of Zhou et al. 2018's noise stream (Fridrich and Kodovsky's rich models):
# second-order 3x3 "KB", fourth-order 5x5 "KV" and a horizontal second-order difference.
SRM_KERNELS = (
    np.array([[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]]) / 4.0,
    np.array([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]])
    / 12.0,
    np.array([[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]) / 2.0,
)
SRM_TRUNCATION = 3.0  # residuals clipped to [-T, T] pixel levels, then scaled to [-1, 1]


def noise_residual_block(pixels, name: str = "noise"):
    """The SRM noise stream: RGB pixels in [0, 255] ``(b, h, w, 3)`` -> every SRM kernel on every
    colour channel (a frozen depthwise 5x5 convolution, 9 maps), truncated to [-T, T] and scaled to
    [-1, 1] (``clip(r, -T, T) / T`` as ``ReLU(max 2T)(r + T) / T - 1``: built-in layers only)."""
    kernel = np.zeros((5, 5, 3, len(SRM_KERNELS)), dtype="float32")
    for k, srm in enumerate(SRM_KERNELS):
        kernel[:, :, :, k] = srm[:, :, np.newaxis]
    conv = layers.DepthwiseConv2D(
        5, depth_multiplier=len(SRM_KERNELS), padding="same", use_bias=False, trainable=False, name=f"{name}_srm"
    )
    x = conv(pixels)
    conv.set_weights([kernel])
    x = layers.Rescaling(1.0, offset=SRM_TRUNCATION, name=f"{name}_shift")(x)
    x = layers.ReLU(max_value=2 * SRM_TRUNCATION, name=f"{name}_truncate")(x)
    return layers.Rescaling(1.0 / SRM_TRUNCATION, offset=-1.0, name=f"{name}_scale")(x)


def _hidden_units(channels: int, ratio: int) -> int:
    if ratio < 1:
        raise ValueError(f"ratio must be >= 1, got {ratio}")
    return max(1, channels // ratio)


def squeeze_excite_block(x, ratio: int, name: str):
    """Squeeze-and-excitation (Hu et al. 2018): rescale each channel by a learned gate.

    GAP -> Dense(C / ratio, relu) -> Dense(C, sigmoid) -> multiply the input channel-wise.
    """
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = layers.Dense(_hidden_units(channels, ratio), activation="relu", name=f"{name}_reduce")(s)
    s = layers.Dense(channels, activation="sigmoid", name=f"{name}_expand")(s)
    return layers.Multiply(name=f"{name}_scale")([x, s])


def channel_attention(x, ratio: int, name: str):
    """CBAM channel attention (Woo et al. 2018).

    Average- and max-pooled channel descriptors go through one shared two-layer MLP; their sum,
    through a sigmoid, gates the channels of the input.
    """
    channels = x.shape[-1]
    hidden = layers.Dense(_hidden_units(channels, ratio), activation="relu", name=f"{name}_mlp_hidden")
    out = layers.Dense(channels, name=f"{name}_mlp_out")
    avg = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_avg_pool")(x)
    mx = layers.GlobalMaxPooling2D(keepdims=True, name=f"{name}_max_pool")(x)
    gate = layers.Add(name=f"{name}_add")([out(hidden(avg)), out(hidden(mx))])
    gate = layers.Activation("sigmoid", name=f"{name}_gate")(gate)
    return layers.Multiply(name=f"{name}_scale")([x, gate])


def spatial_attention(x, kernel_size: int = 7, name: str = "spatial_attention"):
    """CBAM spatial attention: channel-wise mean and max -> conv (k x k, sigmoid) -> gate pixels.

    The channel-wise mean/max are built-in pooling layers over a ``(H*W, C)`` view of the map
    (see the module docstring), so the block needs a static spatial shape.
    """
    height, width, channels = x.shape[1:]
    if height is None or width is None or channels is None:
        raise ValueError(f"spatial_attention needs a static (height, width, channels), got {x.shape}")
    flat = layers.Reshape((height * width, channels), name=f"{name}_flatten")(x)
    avg = layers.GlobalAveragePooling1D(data_format="channels_first", keepdims=True, name=f"{name}_channel_avg")(flat)
    mx = layers.GlobalMaxPooling1D(data_format="channels_first", keepdims=True, name=f"{name}_channel_max")(flat)
    desc = layers.Concatenate(axis=-1, name=f"{name}_concat")([avg, mx])
    desc = layers.Reshape((height, width, 2), name=f"{name}_descriptor")(desc)
    gate = layers.Conv2D(1, kernel_size, padding="same", activation="sigmoid", use_bias=False, name=f"{name}_conv")(
        desc
    )
    return layers.Multiply(name=f"{name}_scale")([x, gate])


def dual_attention_block(x, ratio: int, name: str = "attention", *, kernel_size: int = 7):
    """Channel attention, then spatial attention (CBAM order)."""
    x = channel_attention(x, ratio, name=f"{name}_channel")
    return spatial_attention(x, kernel_size=kernel_size, name=f"{name}_spatial")


def classification_head(x, dropout: float, name: str = "head"):
    """GAP -> dropout -> Dense(1, sigmoid) named ``probability_fake`` (float32 even under mixed precision)."""
    x = layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return layers.Dense(1, activation="sigmoid", dtype="float32", name="probability_fake")(x)


__all__ = [
    "channel_attention",
    "classification_head",
    "conv_block",
    "dual_attention_block",
    "spatial_attention",
    "squeeze_excite_block",
]
