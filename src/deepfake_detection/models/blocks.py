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
