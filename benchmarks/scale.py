"""Time and peak memory of the pipeline's steps at 2,000 and at 20,000 images, as files and as
TFRecord shards (``ingest --shards``), and ``dvc add``/``push``/``pull`` of the data folder to a
local remote.

    nice -n 19 python benchmarks/scale.py [--counts 2000 20000] [--size 32] [--shards 8] [--work DIR]

For each count it writes that many noise JPEGs (``--size`` px, half ``real``, half ``fake``, in a
flat folder that ``ingest`` splits 70/15/15), then, once with files and once with shards, runs
each step in its own Python process inside a project folder (``params.yaml`` is the repository's
with ``data.image_size`` = ``--size``, one epoch of the light CNN, one Grad-CAM example):
``ingest``, ``prepare``, ``train`` (one epoch of ``light_se_cnn``, validation included),
``threshold`` (validation predictions), ``evaluate`` (test predictions and report) and
``ensemble`` (the four combiners fit on validation, scored on test; its members are the light CNN
twice, as only one network is trained: the stage's cost is reading and combining the members'
predictions, which is what grows with the images). Each
process reports its wall time and its peak resident memory (``ru_maxrss``): the memory a step
needs should not grow with the number of images beyond O(n) bookkeeping (paths, scores), i.e. no
step may hold the images of a split at once. For the largest count, the data folder of each
layout is then ``dvc add``-ed, ``dvc push``-ed to a local folder remote, deleted with the cache and
``dvc pull``-ed back (``dvc`` as its own process, its peak memory too). Prints one table per
count and the DVC table, Markdown.

The images are noise: the AUCs mean nothing, the timings and memory do.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("ingest", "prepare", "train", "threshold", "evaluate", "ensemble")
MODEL = "light_se_cnn"


def noise_images(out: Path, count: int, size: int, seed: int = 0) -> None:
    """``count`` noise JPEGs in ``out/{real,fake}/`` (fakes a little smoother), quality 90."""
    import numpy as np
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    for label in ("real", "fake"):
        (out / label).mkdir(parents=True)
    for i in range(count):
        label = ("real", "fake")[i % 2]
        image = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        if label == "fake":
            image = image.filter(ImageFilter.GaussianBlur(0.6))
        image.save(out / label / f"{i:06d}.jpg", quality=90)


def write_params(project: Path, size: int) -> None:
    import yaml

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"]["image_size"] = size
    raw["data"]["patch_size"] = size
    raw["data"]["batch_size"] = 64
    raw["train"]["epochs"] = 1
    raw["models"][MODEL]["epochs"] = 1
    raw["evaluate"]["gradcam_examples"] = 1
    raw["ensemble"]["members"] = [MODEL, MODEL]  # one trained network: the light CNN as both members
    raw["mlflow"]["experiment"] = "scale-benchmark"
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def step(name: str, project: Path, source: Path, shards: int) -> None:
    """Run one step in this process (cwd = the project) and print its seconds and peak RSS."""
    os.chdir(project)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    start = time.perf_counter()
    if name == "ingest":
        from deepfake_detection.data.ingest import ingest

        ingest(source, project / "data", shards=shards or None, progress=False)
    else:
        from deepfake_detection.config import load_params

        params = load_params("params.yaml")
        if name == "prepare":
            from deepfake_detection.stages import prepare

            prepare.run(params, progress=False)
        elif name == "ensemble":
            from deepfake_detection.stages import ensemble

            ensemble.run(params)
        else:
            from deepfake_detection.stages import evaluate, threshold, train

            {"train": train, "threshold": threshold, "evaluate": evaluate}[name].run(MODEL, params)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
    print("STEP " + json.dumps({"seconds": round(seconds, 1), "peak_rss_mib": round(peak)}))


def run_step(name: str, project: Path, source: Path, shards: int) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "_step", name, str(project), str(source), str(shards)],
        capture_output=True,
        text=True,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("STEP ")]
    if done.returncode or not lines:
        raise SystemExit(f"step {name} failed in {project}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(lines[-1][5:])


def timed_command(args: list[str], cwd: Path) -> dict:
    """Wall seconds and peak RSS of one external command, run as the only child of a fresh
    Python process (``RUSAGE_CHILDREN`` then covers that command alone)."""
    code = (
        "import json, resource, subprocess, sys, time; t = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
        "print(json.dumps({'seconds': round(time.perf_counter() - t, 1), "
        "'peak_rss_mib': round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}))"
    )
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def dvc_round_trip(project: Path, remote: Path) -> dict:
    dvc = str(Path(sys.executable).with_name("dvc"))
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=project, check=True)
    subprocess.run([dvc, "remote", "add", "-d", "bench", str(remote)], cwd=project, check=True)
    out = {"files": sum(1 for p in (project / "data").rglob("*") if p.is_file())}
    out["add"] = timed_command([dvc, "add", "-q", "data"], project)
    out["push"] = timed_command([dvc, "push", "-q"], project)
    shutil.rmtree(project / "data")
    shutil.rmtree(project / ".dvc" / "cache")
    out["pull"] = timed_command([dvc, "pull", "-q"], project)
    out["remote_files"] = sum(1 for p in remote.rglob("*") if p.is_file())
    out["remote_mib"] = round(sum(p.stat().st_size for p in remote.rglob("*") if p.is_file()) / 2**20, 1)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (also data.image_size)")
    parser.add_argument("--shards", type=int, default=8, help="shards per split for the sharded layout")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--no-dvc", action="store_true", help="skip the dvc add/push/pull round trip")
    args = parser.parse_args(argv)

    import tempfile

    work = args.work or Path(tempfile.mkdtemp(prefix="scale-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[int, dict[str, dict]] = {}
    dvc: dict[str, dict] = {}
    for count in args.counts:
        source = work / f"source-{count}"
        if not source.exists():
            start = time.perf_counter()
            noise_images(source, count, args.size)
            print(f"{count} noise images of {args.size} px in {time.perf_counter() - start:.0f} s", flush=True)
        results[count] = {}
        for layout, shards in (("files", 0), ("shards", args.shards)):
            project = work / f"{layout}-{count}"
            shutil.rmtree(project, ignore_errors=True)
            project.mkdir()
            write_params(project, args.size)
            for name in STEPS:
                results[count][(layout, name)] = run_step(name, project, source, shards)
                print(f"{count} {layout} {name}: {results[count][(layout, name)]}", flush=True)
            if count == max(args.counts) and not args.no_dvc:
                remote = work / f"remote-{layout}-{count}"
                shutil.rmtree(remote, ignore_errors=True)
                dvc[layout] = dvc_round_trip(project, remote)
                print(f"{count} {layout} dvc: {dvc[layout]}", flush=True)

    print(f"\n{args.size} px JPEGs, light CNN one epoch at {args.size} px, batch 64, {args.shards} shards per split")
    print("seconds / peak RSS MiB per step (each step its own process)\n")
    header = "| step | " + " | ".join(f"{c:,} files | {c:,} shards" for c in args.counts) + " |"
    print(header)
    print("|---" * (1 + 2 * len(args.counts)) + "|")
    for name in STEPS:
        cells = []
        for count in args.counts:
            for layout in ("files", "shards"):
                r = results[count][(layout, name)]
                cells.append(f"{r['seconds']} s / {r['peak_rss_mib']} MiB")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if dvc:
        count = max(args.counts)
        print(f"\nDVC, {count:,} images, local folder remote: seconds / peak RSS MiB\n")
        print(
            "| layout | files in data/ | dvc add | dvc push | dvc pull (no cache or data) | remote files | remote MiB |"
        )
        print("|---|---|---|---|---|---|---|")
        for layout, r in dvc.items():
            cells = [f"{r[k]['seconds']} s / {r[k]['peak_rss_mib']} MiB" for k in ("add", "push", "pull")]
            print(
                f"| {layout} | {r['files']:,} | "
                + " | ".join(cells)
                + f" | {r['remote_files']:,} | {r['remote_mib']} |"
            )
    print(f"\nwork folder: {work}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_step":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        step(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
