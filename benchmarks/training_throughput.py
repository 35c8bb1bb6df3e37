"""Training throughput and peak memory of the model zoo, with and without XLA.

Each configuration (model x image size x XLA) runs in its own Python process: it builds the
model as the baseline training does (weights "none", transfer backbones frozen unless
``--backbone trainable``), compiles it with Adam + BinaryFocalLoss (``jit_compile`` on or off),
runs ``--warmup`` steps (the first one traces, and with XLA compiles, the train function: its
time is the "first step" column), then times ``--steps`` steps of ``train_on_batch`` on one
random batch. Peak memory is that process's maximum resident set size, read with ``os.wait4``
(per child; ``getrusage(RUSAGE_CHILDREN)`` would report the largest child so far, so every
configuration after a big one would show the big one's peak).

    python benchmarks/training_throughput.py                       # all models, 64 px, XLA off/on
    python benchmarks/training_throughput.py --sizes 224 --models light_se_cnn,efficientnet_b0 --steps 3

Figures move about 25% between runs on a shared 2-core machine; the first step is dominated by
tracing (and XLA compilation).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL_NAMES = ("resnet50", "efficientnet_b0", "light_se_cnn", "efficientnet_b0_dual_attention")


def worker(args: argparse.Namespace) -> None:
    """Build, compile, warm up, time; print one JSON line."""
    import keras
    import numpy as np

    from deepfake_detection.config import ModelsParams
    from deepfake_detection.models.losses import BinaryFocalLoss
    from deepfake_detection.models.zoo import build_model

    model = build_model(args.model, args.size, ModelsParams(), seed=0, backbone_trainable=args.backbone == "trainable")
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=BinaryFocalLoss(), jit_compile=args.xla == "on")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(args.batch, args.size, args.size, 3)).astype("float32")
    y = rng.integers(0, 2, size=(args.batch, 1)).astype("float32")

    t0 = time.perf_counter()
    model.train_on_batch(x, y)
    first = time.perf_counter() - t0
    for _ in range(args.warmup - 1):
        model.train_on_batch(x, y)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = model.train_on_batch(x, y)
    elapsed = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "first_step_s": first,
                "img_per_s": args.steps * args.batch / elapsed,
                "step_s": elapsed / args.steps,
                "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
                "loss": float(np.ravel(loss)[0]),
            }
        )
    )


def run_one(model: str, size: int, xla: bool, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable, __file__, "--worker", "--model", model, "--size", str(size), "--xla", "on" if xla else "off",
        "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch),
        "--backbone", args.backbone,
    ]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        deadline = time.monotonic() + args.timeout
        while True:  # os.wait4, not proc.wait(): it returns this child's own resource usage
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
        row = {"model": model, "px": size, "xla": xla, "peak_rss_gb": usage.ru_maxrss / 1024**2}  # KiB on Linux
        out.seek(0)
        lines = [line for line in out.read().splitlines() if line.startswith("{")]
        if proc.returncode == 0 and lines:
            row.update(json.loads(lines[-1]))
        else:
            err.seek(0)
            tail = err.read().strip().splitlines()[-1:] or ["?"]
            row["error"] = "timeout" if time.monotonic() > deadline else tail[0][:80]
    return row


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    print(
        f"\nbatch {args.batch}, {args.steps} timed steps after {args.warmup} warm-up, backbone {args.backbone}, "
        f"{os.cpu_count()} CPUs"
    )
    head = "| model | px | XLA | first step (s) | train img/s | step (s) | peak RSS (GB) |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['px']} | {'on' if r['xla'] else 'off'} | failed: {r['error']} | | | |")
            continue
        print(
            f"| {r['model']} | {r['px']} | {'on' if r['xla'] else 'off'} | {r['first_step_s']:.1f} | "
            f"{r['img_per_s']:.1f} | {r['step_s']:.2f} | {r['peak_rss_gb']:.2f} |"
        )
    by_key = {(r["model"], r["px"], r["xla"]): r for r in rows if "error" not in r}
    for (model, px, xla), r in by_key.items():
        off = by_key.get((model, px, False))
        if xla and off:
            print(f"XLA speed-up {model} @ {px}px: x{r['img_per_s'] / off['img_per_s']:.2f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODEL_NAMES), help="comma-separated (default: all four)")
    p.add_argument("--sizes", default="64", help="comma-separated pixel sizes (default: 64)")
    p.add_argument("--xla", choices=("both", "on", "off"), default="both")
    p.add_argument("--steps", type=int, default=5, help="timed steps (default: 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first, >= 1 (default: 2)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--backbone", choices=("frozen", "trainable"), default="frozen",
                   help="transfer backbones frozen (baseline training, default) or trained whole")  # fmt: skip
    p.add_argument("--timeout", type=float, default=900, help="seconds per configuration")
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        p.error("--warmup and --steps must be >= 1")
    if args.worker:
        worker(args)
        return

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODEL_NAMES))
    if unknown:
        p.error(f"unknown models {unknown}; known: {list(MODEL_NAMES)}")
    sizes = [int(s) for s in args.sizes.split(",")]
    xlas = {"both": (False, True), "on": (True,), "off": (False,)}[args.xla]
    rows = []
    for size in sizes:
        for model in models:
            for xla in xlas:
                row = run_one(model, size, xla, args)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    print_table(rows, args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
