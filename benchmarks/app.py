"""Seconds from upload to verdict on `deepfake-detect app`'s page: the HTTP round trip of one
image to ``/api/score`` (the pyfunc detector's scores: what the page shows first) and then to
``/api/explain`` (the Grad-CAM overlay, shown next), for scikit-image's astronaut at 256 px
(faces off) and at 1024 px with faces on.

    python benchmarks/app.py [--model models:/deepfake-detector@champion] [--repeat 5]

Run it in the project's root after `make demo` (the app finds the champion in the project's
store). It starts the app on a free loopback port and stops it at the end. Printed per case
and endpoint: the first request (the first call of each code path: tracing, the face
detector's start) and the median and best of ``--repeat`` more.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

BIN = Path(sys.executable).parent
CASES = (("256 px image, faces off", 256, False), ("1024 px photo, faces on", 1024, True))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _photo(side: int) -> bytes:
    from PIL import Image
    from skimage import data as skdata

    buffer = io.BytesIO()
    Image.fromarray(skdata.astronaut()).resize((side, side), Image.LANCZOS).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def _upload(base: str, what: str, body: bytes, faces: bool) -> float:
    request = urllib.request.Request(
        f"{base}/api/{what}?name=photo.jpg&faces={str(faces).lower()}", data=body, method="POST"
    )
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=300) as response:
        response.read()
        assert response.status == 200
    return time.perf_counter() - start


def _wait(base: str, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the app exited ({proc.returncode})")
        try:
            with urllib.request.urlopen(f"{base}/ping", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"the app did not answer in {timeout_s} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="default: the app's (the project's champion)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    port = _free_port()
    cmd = [str(BIN / "deepfake-detect"), "app", "--port", str(port)] + (["--model", args.model] if args.model else [])
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait(base, proc)
            started = time.perf_counter() - start
            rows = []
            for label, side, faces in CASES:
                body = _photo(side)
                for what, shown in (("score", "verdict"), ("explain", "overlay")):
                    first = _upload(base, what, body, faces)
                    times = [_upload(base, what, body, faces) for _ in range(args.repeat)]
                    rows.append((f"{label}: {shown}", len(body), first, statistics.median(times), min(times)))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    machine = platform.processor() or platform.machine()
    print(f"{machine}, {os.cpu_count()} cores; the app answered {started:.1f} s after its start")
    print(f"| upload | bytes | first (s) | median of {args.repeat} (s) | best (s) |")
    print("|---|---|---|---|---|")
    for label, size, first, median, best in rows:
        print(f"| {label} | {size:,} | {first:.2f} | {median:.2f} | {best:.2f} |")


if __name__ == "__main__":
    main()
