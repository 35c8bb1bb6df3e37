"""Wall time of each stage of the tests' tiny pipeline (``tests/pipeline``: 32 px, one epoch, 60
sample images), as ``dvc repro`` runs them, and in all.

    python benchmarks/pipeline_stages.py [--networks tests|all] [--work DIR]

``--networks tests`` (the default) times the four networks the end-to-end tests run
(``test_end_to_end.MODELS``); ``all`` gives the copy every network of the shipped ``params.yaml``
back, as the tiny pipeline ran before it left two out. Run it on an idle machine: it is what
``make test``'s longest fixture spends. Prints a Markdown table, slowest stage first.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "pipeline")]
from project_commands import command_env  # noqa: E402  (the tests' helpers: the same tiny project)
from test_end_to_end import copy_project, sh  # noqa: E402


def every_network(dest: Path) -> None:
    """Give the tiny project's params every network of the shipped file (tiny settings kept)."""
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    p = yaml.safe_load((dest / "params.yaml").read_text())
    p["models"] = {name: {**section, "epochs": None} for name, section in shipped["models"].items()}
    p["finetune"]["models"], p["ensemble"]["members"] = shipped["finetune"]["models"], shipped["ensemble"]["members"]
    (dest / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "every network", cwd=dest)


def timed_repro(dest: Path) -> list[tuple[str, float]]:
    """(stage, seconds) in the order ``dvc repro`` ran them: from one stage's start to the next's."""
    proc = subprocess.Popen(
        ["dvc", "repro"], cwd=dest, env=command_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    times, name, last = [], None, time.perf_counter()
    for line in proc.stdout:
        started = re.match(r"Running stage '([^']+)'", line)
        if started:
            now = time.perf_counter()
            if name:
                times.append((name, now - last))
            name, last = started.group(1), now
    if proc.wait() != 0:
        raise SystemExit(f"dvc repro failed ({proc.returncode})")
    times.append((name, time.perf_counter() - last))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", choices=["tests", "all"], default="tests")
    ap.add_argument("--work", type=Path, help="folder for the copy (default: a temporary one)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="pipeline-stages-"))
    work.mkdir(parents=True, exist_ok=True)
    dest = copy_project(work)
    if args.networks == "all":
        every_network(dest)
    times = timed_repro(dest)
    print(f"| stage | seconds |  ({args.networks} networks, {len(times)} stages)\n|---|---|")
    for name, seconds in sorted(times, key=lambda t: -t[1]):
        print(f"| {name} | {seconds:.1f} |")
    print(f"| **all** | **{sum(s for _, s in times):.1f}** |")


if __name__ == "__main__":
    main()
