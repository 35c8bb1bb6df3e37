"""How often `model.fit` traces the training step, and what it costs, with the optimizer built
by `training.compile_model` (as shipped) and left to Keras (built while tracing the first step).

Keras, with no distribution strategy, creates the optimizer's variables inside the first trace of
the training step; TensorFlow traces a function that creates variables a second time. On the
small fits of the tests and the demo, tracing is most of a fit. Each configuration runs in its own
process: a 2-epoch fit of 32 random images (batch 16, validation on the same images); the line
prints the traces of the training step, the fit's seconds and its final metrics (the same in both
modes: building the variables earlier changes no number).

    python benchmarks/fit_tracing.py                                   # light_se_cnn, efficientnet_b0 at 32 px
    python benchmarks/fit_tracing.py --models resnet50 --size 64
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

MODES = ("shipped", "keras-default")


def worker(model_name: str, size: int, mode: str) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from deepfake_detection.config import parse_params
    from deepfake_detection.models.zoo import build_model
    from deepfake_detection.training import compile_model

    params = parse_params({"data": {"image_size": size, "batch_size": 16}})
    model = build_model(model_name, size, params.models, seed=0, backbone_trainable=True)
    compile_model(model, 1e-4, params)
    if mode == "keras-default":  # the same, with a fresh optimizer: Keras builds it while tracing
        model.optimizer = keras.optimizers.Adam(1e-4)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (32, size, size, 3)).astype("float32")
    y = np.array([0, 1] * 16, dtype="float32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    traces = {"n": 0}
    step = model.train_step

    def counted(batch):  # called only while tracing: the step runs as a graph
        traces["n"] += 1
        return step(batch)

    model.train_step = counted
    start = time.perf_counter()
    history = model.fit(data, validation_data=data, epochs=2, verbose=0).history
    seconds = time.perf_counter() - start
    final = {k: round(v[-1], 5) for k, v in history.items() if k in ("loss", "val_loss")}
    return {"model": model_name, "size": size, "mode": mode, "traces": traces["n"], "fit_s": round(seconds, 1), **final}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="light_se_cnn,efficientnet_b0", help="comma-separated network names")
    parser.add_argument("--size", type=int, default=32, help="image size in pixels (32 at least)")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.size, args.worker[1])))
        return
    print(f"{'model':<32}{'mode':<15}{'traces':>7}{'fit s':>8}{'loss':>10}{'val_loss':>10}")
    for name in args.models.split(","):
        for mode in MODES:
            out = subprocess.run(
                [sys.executable, __file__, "--size", str(args.size), "--worker", name, mode],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.splitlines()[-1]
            r = json.loads(out)
            print(f"{name:<32}{mode:<15}{r['traces']:>7}{r['fit_s']:>8}{r['loss']:>10}{r['val_loss']:>10}")


if __name__ == "__main__":
    main()
