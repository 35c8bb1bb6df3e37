"""`make screens`: regenerate the README's screenshots (docs/screens/) from this project's own
runs, in headless Chromium, with no network.

Run it after `make demo` (or any `dvc repro`) in the project folder. It renders `dvc plots show`
(the offline page), starts `mlflow ui` on a free local port on the project's store, and takes:

    mlflow_runs.png           the experiment's runs (model-training view)
    mlflow_model_version.png  the champion version: its model card as the description
    dvc_plots.png             the top of the plots page (its first chart: every model's test ROC)
    dvc_plots_models.png      further down the same page (each model's charts)

Chromium: `chromium` (Debian) or `google-chrome` on PATH, or CHROMIUM=/path/to/it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

WINDOW = "1400,1000"


def chromium() -> str:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    raise SystemExit("no Chromium found: install Debian's `chromium` or set CHROMIUM=/path/to/chrome")


def screenshot(url: str, out: Path, window: str = WINDOW, wait_ms: int = 15000) -> Path:
    """A PNG of ``url`` as headless Chromium draws it after ``wait_ms`` of page time."""
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                f"--user-data-dir={profile}",
                f"--window-size={window}",
                f"--virtual-time-budget={wait_ms}",
                f"--screenshot={out}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )
    if not out.is_file() or out.stat().st_size < 2000:
        raise SystemExit(f"Chromium wrote no picture of {url}")
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"mlflow ui did not answer {url} within {seconds:.0f} s")


def mlflow_screens(out: Path, experiment: str, model_name: str, version: str) -> list[Path]:
    from deepfake_detection import tracking

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    bin_dir = Path(sys.executable).parent
    server = subprocess.Popen(
        [str(bin_dir / "mlflow"), "ui", "--backend-store-uri", tracking.tracking_uri(), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(f"{base}/health")
        runs = tracking.experiment_url(base, experiment)
        version_page = f"{base}/#/models/{model_name}/versions/{version}"
        return [
            screenshot(runs, out / "mlflow_runs.png"),
            screenshot(version_page, out / "mlflow_model_version.png", window="1400,1600"),
        ]
    finally:
        server.terminate()
        server.wait(timeout=30)


def plots_screens(out: Path) -> list[Path]:
    """One tall picture of the plots page, cut in two: its top (the answer first) and the part
    below (each stage's charts)."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "dvc_plots"
        subprocess.run(["dvc", "plots", "show", "-o", str(page)], check=True, capture_output=True)
        tall = screenshot((page / "index.html").as_uri(), Path(tmp) / "tall.png", window="1400,2600")
        with Image.open(tall) as png:
            png.crop((0, 0, 1400, 1200)).save(out / "dvc_plots.png")
            png.crop((0, 1200, 1400, 2600)).save(out / "dvc_plots_models.png")
    return [out / "dvc_plots.png", out / "dvc_plots_models.png"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screens"), help="folder for the PNGs")
    args = parser.parse_args(argv)
    from deepfake_detection.config import load_params

    params = load_params()
    register = Path("metrics/register.json")
    if not register.is_file():
        raise SystemExit("metrics/register.json not found: run `make demo` (or `dvc repro`) first")
    version = str(json.loads(register.read_text())["version"])
    args.out.mkdir(parents=True, exist_ok=True)
    written = plots_screens(args.out)
    written += mlflow_screens(args.out, params.mlflow.experiment, params.register.model_name, version)
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
