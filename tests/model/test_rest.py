"""``deepfake-detect serve`` (MLflow's scoring app with the project's limits) against a real
server on 127.0.0.1, and the decoding budgets of ``predict``: the hostile cases of issue 21."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from bombs import animated_gif
from test_serving import _b64, _png, _post, _server, registered  # noqa: F401 - the fixture is reused

from deepfake_detection.serving import io as serving_io
from deepfake_detection.serving import rest

MEMORY_CEILING = 1.5 * 1024**3
"""The issue's bound on what the 80-frame 8192² GIF may cost ``predict`` or the server."""
SERVER_CEILING = 3.0 * 1024**3
"""The README's ceiling for the server: ~0.8 GB idle + ~1.3 GB for the one image the decoding
gate lets decode at a time + request bodies."""


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def _peak_rss(proc: subprocess.Popen) -> int:
    """The server process's peak resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bombs") / "anim.gif"
    path.write_bytes(animated_gif(80, 8192))
    return path


@pytest.fixture(scope="module")
def guarded(registered):  # noqa: F811 - the fixture imported above
    """The registered detector served by ``deepfake-detect serve``."""
    with _server(registered["model_uri"], registered["uri"], registered["root"], cli="project") as (base, proc):
        yield {**registered, "base": base, "proc": proc}


def _ping(base: str) -> None:
    status, _ = _get(base, "/ping")
    assert status == 200


def _get(base: str, path: str) -> tuple[int, str]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def _invocations(base: str, payload: dict) -> tuple[int, str]:
    return _post(f"{base}/invocations", json.dumps(payload).encode())


def _rows(values: list[str], params: dict | None = None) -> dict:
    payload = {"dataframe_split": {"columns": ["image"], "data": [[v] for v in values]}}
    return {**payload, "params": params} if params else payload


def test_a_bad_base64_row_gets_a_strict_json_answer_with_null(guarded):
    """An error row once carried ``"probability_fake": NaN``, which strict parsers refuse."""
    good = _b64(guarded["image"].read_bytes())
    status, text = _invocations(guarded["base"], _rows([good, "%%% not base64 %%%"]))
    assert status == 200, text
    ok, bad = _strict(text)["predictions"]
    assert ok["error"] is None and 0.0 <= ok["probability_fake"] <= 1.0
    assert bad["probability_fake"] is None and bad["label"] is None
    assert bad["error"].startswith("not valid base64")


def test_a_100_mb_body_gets_413_without_the_body_echoed(guarded):
    host, port = guarded["base"].removeprefix("http://").split(":")
    body = b'{"dataframe_split": {"columns": ["image"], "data": [["' + b"A" * (100 * 1024 * 1024) + b'"]]}}'
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        status, text = response.status, response.read().decode()
    finally:
        conn.close()
    assert status == 413, text
    assert len(text) < 500 and "AAAA" not in text
    assert f"{rest.DEFAULT_MAX_BODY:,} bytes" in _strict(text)["message"]
    _ping(guarded["base"])


def test_a_malformed_body_gets_400_with_a_short_message(guarded):
    """A 50 MB malformed body was echoed back whole in MLflow's 400."""
    body = b'{"dataframe_split": ' + b"x" * (5 * 1024 * 1024)
    status, text = _post(f"{guarded['base']}/invocations", body)
    assert status == 400 and len(text) < 500, text[:500]
    assert _strict(text)["message"].startswith("the request body is not valid JSON at line 1, column 21")


def test_unknown_params_are_refused_with_400_naming_them(guarded):
    """``{"thresold": 0.1}`` was silently scored at the default threshold."""
    good = _b64(guarded["image"].read_bytes())
    status, text = _invocations(guarded["base"], _rows([good], {"thresold": 0.1}))
    assert status == 400, text
    message = _strict(text)["message"]
    assert "['thresold']" in message and "['batch_size', 'faces', 'threshold']" in message
    status, text = _invocations(guarded["base"], _rows([good], {"threshold": 0.0}))
    assert status == 200 and _strict(text)["predictions"][0]["label"] == "fake"


def test_out_of_range_params_still_get_a_short_400(guarded):
    good = _b64(guarded["image"].read_bytes())
    status, text = _invocations(guarded["base"], _rows([good] * 50, {"threshold": 5}))
    assert status == 400 and len(text) < 1000, text
    message = _strict(text)["message"]
    assert "'threshold' param must be a number from 0 to 1" in message and good[:40] not in message


def test_the_80_frame_8192_gif_gets_a_row_and_the_server_stays_small_and_up(guarded, bomb):
    good = _b64(guarded["image"].read_bytes())
    status, text = _invocations(guarded["base"], _rows([_b64(bomb.read_bytes()), good]))
    assert status == 200, text
    gif, ok = _strict(text)["predictions"]
    assert gif["error"].startswith("image too large: 80 frames of 8192x8192") and gif["probability_fake"] is None
    assert ok["error"] is None
    print(f"server peak after the GIF: {_peak_rss(guarded['proc']) / 1024**3:.2f} GiB")
    assert _peak_rss(guarded["proc"]) < MEMORY_CEILING
    _ping(guarded["base"])


def test_the_server_stays_under_its_ceiling_with_concurrent_largest_images(guarded):
    """Two clients each send three legal 8192² PNGs: the decoding gate decodes one at a time and
    the request budget (four such images) is not reached, so every row is scored."""
    big = _b64(_png((8192, 8192)))
    answers = []

    def client():
        answers.append(_invocations(guarded["base"], _rows([big, big])))

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [status for status, _ in answers] == [200, 200]
    for _, text in answers:
        assert [r["error"] for r in _strict(text)["predictions"]] == [None, None]
    print(f"server peak after 2 x 2 8192² PNGs: {_peak_rss(guarded['proc']) / 1024**3:.2f} GiB")
    assert _peak_rss(guarded["proc"]) < SERVER_CEILING
    _ping(guarded["base"])


def test_a_request_past_its_pixel_budget_gets_error_rows(registered, monkeypatch):  # noqa: F811
    """In process, as a REST call reaches it (no local_files): the images past the budget of
    the request, summed in order, get an error row; an in-process caller has no budget."""
    import pandas as pd

    image = _b64(registered["image"].read_bytes())  # 48 x 40 = 1,920 pixels
    monkeypatch.setenv(serving_io.REQUEST_PIXELS_ENV, "4000")
    rows = registered["model"].predict(pd.DataFrame({"image": [image, image, image]}))
    assert rows["error"].tolist()[:2] == [None, None]
    assert rows["error"][2].startswith("request pixel budget spent: this image (1,920 pixels to decode)")
    with serving_io.local_files():
        assert rows_ok(registered["model"].predict(pd.DataFrame({"image": [image] * 3})))


def rows_ok(rows) -> bool:
    return rows["error"].isna().all()


def test_predict_gives_the_80_frame_gif_a_row_in_little_memory(registered, bomb, tmp_path):  # noqa: F811
    """``predict`` was killed (137) decoding it; measured in a fresh process of its own."""
    out = tmp_path / "rows.json"
    bin_dir = Path(sys.executable).parent
    measure = (
        "import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, file=sys.stderr); sys.exit(rc)"
    )
    argv = [str(bin_dir / "deepfake-detect"), "predict", "--model", registered["model_uri"], "--output", str(out)]
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered["uri"], "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", measure, *argv, str(bomb), str(registered["image"])],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    peak = int(done.stderr.strip().splitlines()[-1])
    gif, ok = json.loads(out.read_text())
    assert gif["error"].startswith("image too large: 80 frames of 8192x8192 = 5,368,709,120 pixels to decode")
    assert ok["error"] is None
    print(f"predict peak with the GIF: {peak / 1024**3:.2f} GiB")
    assert peak < MEMORY_CEILING, f"{peak / 1024**3:.2f} GiB"
