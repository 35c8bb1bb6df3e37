"""`deepfake-detect app`: the web page of a tiny registered detector, started as a real process on a
loopback port; driven over HTTP and in a real headless chromium (Debian's chromium and
chromium-driver through Selenium). With both installed, a browser that cannot start fails the
test; without them it skips, unless DEEPFAKE_REQUIRE_BROWSER=1 (.ci/run) makes that a failure."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import re
import struct
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

import mlflow
import numpy as np
import pytest
from loopback import free_port, register_tiny_detector, stop, wait_for
from PIL import Image
from project_commands import BIN, command_env

ROOT = Path(__file__).resolve().parents[2]
THRESHOLD = 0.535  # between the tiny model's P(fake) of the astronaut (~0.54) and of the cat (~0.53)
UPLOAD_MB = 0.3
TAGS = {"test_auc": 0.8123, "test_auc_ci95": "0.7001-0.9002", "source_model": "light_se_cnn", "kind": "single"}
CARD = "A tiny test detector.\n\n## Limitations\n\nRandom weights: its scores mean nothing.\n\n## Lineage\n\nnone\n"
REQUIRE_BROWSER = os.environ.get("DEEPFAKE_REQUIRE_BROWSER") == "1"


def _tool():
    spec = importlib.util.spec_from_file_location("app_screenshot", ROOT / "tools" / "app_screenshot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _encoded(array: np.ndarray, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **kw)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app of a registered light CNN (threshold 0.535, test AUC tags, a card with limitations)
    on a free loopback port, its temporary folder (TMPDIR) in the test's folder, a 0.3 MB limit;
    and what `predict` says of the two images."""
    from skimage import data as skdata

    from deepfake_detection.serving.predict import predict_files

    root = tmp_path_factory.mktemp("app")
    previous = mlflow.get_tracking_uri()
    uri, model_uri = register_tiny_detector(root, THRESHOLD, tags=TAGS, description=CARD)
    files = root / "files"
    files.mkdir()
    (files / "astronaut.jpg").write_bytes(_encoded(skdata.astronaut(), "JPEG", quality=90))
    (files / "cat.jpg").write_bytes(_encoded(skdata.chelsea(), "JPEG", quality=90))
    (files / "notes.txt").write_text("these are notes, not an image\n")
    predicted = predict_files(model_uri, [files / "astronaut.jpg", files / "cat.jpg"], progress=False)
    tmp = root / "tmp"
    tmp.mkdir()
    port, log_path = free_port(), root / "app.log"
    env = command_env(uri, TMPDIR=str(tmp), MLFLOW_REGISTRY_URI=uri)
    cmd = [BIN / "deepfake-detect", "app", "--model", model_uri, "--port", port, "--max-upload-mb", UPLOAD_MB]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(c) for c in cmd], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/ping", proc, log_path, 120)
        yield {"base": base, "files": files, "tmp": tmp, "predicted": predicted}
    finally:
        stop(proc)
        mlflow.set_tracking_uri(previous)


def _post(base: str, body: bytes, name: str, faces: str | None = None, what: str = "score") -> tuple[int, dict]:
    query = {"name": name, **({"faces": faces} if faces is not None else {})}
    request = urllib.request.Request(f"{base}/api/{what}?{urllib.parse.urlencode(query)}", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_bad_uploads_get_a_clear_message_and_the_upload_limit_holds(app):
    base = app["base"]
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)) for _ in range(3)]
    animated = io.BytesIO()
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:])
    cases = [
        (b"", "empty.png", 400, "empty file (0 bytes)"),
        ((app["files"] / "notes.txt").read_bytes(), "notes.txt", 422, "not a decodable image"),
        (animated.getvalue(), "anim.gif", 422, "animated or multi-frame image (3 frames)"),
        (_png_declaring(9000, 9000), "huge.png", 422, "image too large: 9000x9000"),
        (b"\xff" * 400_000, "big.jpg", 413, "file too large: over the upload limit of 300,000 bytes"),
    ]
    for body, name, status, message in cases:
        got, answer = _post(base, body, name)
        assert (got, answer["name"]) == (status, name) and answer["error"].startswith(message), (name, answer)
    for body, name, status, message in cases[0], cases[2], cases[4]:  # the overlay's endpoint checks alike
        got, answer = _post(base, body, name, what="explain")
        assert got == status and answer["error"].startswith(message), (name, answer)
    got, answer = _post(base, (app["files"] / "cat.jpg").read_bytes(), "cat.jpg", faces="maybe")
    assert got == 400 and "'faces' param must be true or false" in answer["error"]
    # still serving, and no upload left behind in the temporary folder
    got, answer = _post(base, (app["files"] / "cat.jpg").read_bytes(), "cat.jpg")
    assert got == 200 and answer["rows"][0]["label"] in ("real", "fake")
    got, answer = _post(base, (app["files"] / "cat.jpg").read_bytes(), "cat.jpg", what="explain")
    assert got == 200 and answer["overlay"].startswith("data:image/png;base64,")
    assert not [p.name for p in app["tmp"].iterdir() if p.name.startswith("deepfake-app-")]


def test_faces_on_gives_each_face_its_box_and_score_and_says_no_face_found(app):
    from skimage import data as skdata

    photo = _encoded(np.asarray(Image.fromarray(skdata.astronaut()).resize((256, 256))), "JPEG", quality=90)
    got, answer = _post(app["base"], photo, "astronaut.jpg", faces="true")
    assert got == 200 and answer["faces"] and not answer["no_face"], answer
    (face,) = answer["rows"]
    assert face["face"] == 0 and face["face_w"] > 20 and face["label"] in ("real", "fake")
    got, answer = _post(app["base"], photo, "astronaut.jpg", faces="true", what="explain")
    assert got == 200 and answer["overlay"].startswith("data:image/png;base64,")
    overlay = Image.open(io.BytesIO(base64.b64decode(answer["overlay"].split(",", 1)[1])))
    assert overlay.size == (256, 256)  # the whole photo, the face's box drawn on it
    flat = _encoded(np.full((120, 120, 3), 128, np.uint8), "PNG")
    got, answer = _post(app["base"], flat, "wall.png", faces="true")
    assert got == 200 and answer["no_face"] and answer["rows"][0]["error"] == "no face found"
    assert _post(app["base"], flat, "wall.png", faces="true", what="explain") == (
        200,
        {"name": "wall.png", "faces": True, "overlay": None},
    )


def test_the_page_is_self_contained_and_the_model_panel_reads_the_version(app):
    with urllib.request.urlopen(app["base"] + "/", timeout=30) as response:
        html = response.read().decode()
        policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?(https?:)?//""", html), "an outside asset"
    for path in ("/docs", "/redoc", "/openapi.json"):  # FastAPI's docs load their scripts from a CDN
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(app["base"] + path, timeout=30)
    with urllib.request.urlopen(app["base"] + "/api/model", timeout=30) as response:
        info = json.loads(response.read())
    assert (info["name"], info["version"], info["alias"]) == ("deepfake-detector", "1", "champion")
    assert info["threshold"] == pytest.approx(THRESHOLD) and info["test_auc"] == pytest.approx(0.8123)
    assert info["limitations"] == "Random weights: its scores mean nothing."


def _browser():
    tool = _tool()
    browser, driver = tool.browser_binaries()
    if browser is None or driver is None:
        reason = "chromium and chromium-driver are not installed (Debian: apt-get install chromium chromium-driver)"
        if REQUIRE_BROWSER:
            pytest.fail(f"{reason} (DEEPFAKE_REQUIRE_BROWSER=1)")
        pytest.skip(reason)
    return tool, tool.headless_chromium()  # installed: a browser that cannot start fails the test


def test_in_a_real_browser_the_page_shows_predicts_scores_labels_errors_and_overlays(app, tmp_path):
    files = [app["files"] / "astronaut.jpg", app["files"] / "cat.jpg", app["files"] / "notes.txt"]
    expected = app["predicted"]  # what `predict` says of the two images
    tool, driver = _browser()
    try:
        cards = tool.upload(driver, app["base"] + "/", files, timeout_s=90)
        panel = {key: driver.find_element("id", key).text for key in ("model-threshold", "test-auc", "limitations")}
        assert panel["model-threshold"] == f"{THRESHOLD:.4f}"
        assert panel["test-auc"] == "0.812 (95% CI 0.7001 to 0.9002)"
        assert panel["limitations"] == "Random weights: its scores mean nothing."
        by_name = {card.get_attribute("data-name"): card for card in cards}
        labels = []
        for path, (_, row) in zip(files, expected.iterrows()):
            card = by_name[path.name]
            shown = float(card.find_element("css selector", ".prob").text)
            assert shown == pytest.approx(row["probability_fake"], abs=0.0005 + 1e-9), path.name  # 3 decimals
            label = card.find_element("css selector", ".label").text.lower()
            assert label == row["label"] == ("fake" if row["probability_fake"] >= THRESHOLD else "real")
            labels.append(label)
            image = card.find_element("css selector", "img.overlay")
            assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 0
        assert sorted(labels) == ["fake", "real"], "the two images fall on either side of the threshold"
        error = by_name["notes.txt"].find_element("css selector", ".error").text
        assert error == "not a decodable image: no image format recognises it"
        assert not by_name["notes.txt"].find_elements("css selector", "img.overlay")

        # every request the page made went to the app's loopback address (or was inline data)
        sent = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
        urls = [m["params"]["request"]["url"] for m in sent if m["method"] == "Network.requestWillBeSent"]
        urls += driver.execute_script("return performance.getEntries().map(e => e.name).filter(n => n.includes(':'))")
        assert any("/api/score" in u for u in urls) and any("/api/model" in u for u in urls)
        outside = {u for u in urls if urllib.parse.urlsplit(u).scheme not in ("data", "blob", "about")}
        outside = {u for u in outside if urllib.parse.urlsplit(u).hostname != "127.0.0.1"}
        assert not outside, f"requests beyond this machine: {sorted(outside)}"
        shot = tool.full_page_screenshot(driver, tmp_path / "app.png")
        assert Image.open(shot).size[0] >= 1280
    finally:
        driver.quit()
    assert not [p.name for p in app["tmp"].iterdir() if p.name.startswith("deepfake-app-")]
