"""Images/s of the forensic networks on CPU: the whole model (features and head) on batches of
same-size images, as training's feature extraction runs it, and one image at a time, as the
pyfunc scores it. Random pixels: the speed does not depend on the content.

Usage: python benchmarks/forensic_speed.py [--size 256] [--images 64] [--params benchmarks/params-benchmark.yaml]
"""

from __future__ import annotations

import time

import click
import numpy as np


@click.command()
@click.option("--size", default=256, show_default=True, help="image side in pixels")
@click.option("--images", default=64, show_default=True, help="images per measurement")
@click.option(
    "--params",
    "params_file",
    default="benchmarks/params-benchmark.yaml",
    show_default=True,
    help="settings of the networks (models.residual_cooc, models.block_dct)",
)
def main(size: int, images: int, params_file: str) -> None:
    import tensorflow as tf

    from deepfake_detection.config import load_params
    from deepfake_detection.models.zoo import build_model

    params = load_params(params_file)
    x = np.random.default_rng(0).integers(0, 256, size=(images, size, size, 3)).astype("float32")
    print(
        f"{images} random {size}x{size} images, TensorFlow threads: "
        f"{tf.config.threading.get_intra_op_parallelism_threads() or 'all'}"
    )
    for name in ("residual_cooc", "block_dct"):
        model = build_model(name, size, params.models)
        forward = tf.function(lambda v, m=model: m(v, training=False), reduce_retracing=True)
        forward(x[:32])
        forward(x[:1])  # traced for both shapes
        start = time.perf_counter()
        for i in range(0, images, 32):
            forward(x[i : i + 32])
        batched = images / (time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(images):
            forward(x[i : i + 1])
        single = images / (time.perf_counter() - start)
        features = model.get_layer("features").output.shape[-1]
        print(f"{name:14s} {features:5d} features  batch 32: {batched:6.1f} img/s  one at a time: {single:6.1f} img/s")


if __name__ == "__main__":
    main()
