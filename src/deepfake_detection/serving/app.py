"""The web page of a detector (``deepfake-detect app``): drop images, read the verdicts.

A small FastAPI app (FastAPI and uvicorn come with MLflow) that serves one self-contained page
(``static/app.html``: inline CSS and JS, no outside asset) and three JSON endpoints:

``GET /api/model``
    What the side panel shows (:func:`model_info`): the registered name, version and alias,
    the threshold and decision rule, the test AUC with its interval (the version's tags), the
    limitations (its model card's "Limitations" section, else its description), whether faces
    can be scored, the upload limit and the heat map's colours.
``POST /api/score?name=FILE&faces=true|false``
    The raw bytes of ONE image as the request body (no multipart form: nothing is spooled to
    disk by a parser, and the body is read with a hard cap). The answer is the detector's rows
    for that image (:meth:`PageModel.score`): the verdict, in a fraction of a second.
``POST /api/explain?name=FILE&faces=true|false``
    The same upload's explanation overlay (:meth:`PageModel.explain`), which takes seconds
    (Grad-CAM runs each network eagerly): the page shows the verdict first, then asks for this.

Scores come from the model loaded by ``mlflow.pyfunc.load_model`` and its ``predict`` on a
DataFrame with an ``image`` (base64) column: the code path of ``mlflow models serve`` and of
``deepfake-detect predict``. The overlay is :func:`deepfake_detection.explain.explain_files`'s
(Grad-CAM, the face boxes with their scores when faces are on). Scores are computed from the
uploaded bytes in memory; for its overlay an upload is written only to its own temporary
folder (``deepfake-app-*`` under the system's temporary folder), removed once it is explained.
The page makes no request to any other host (its Content-Security-Policy forbids it), and
FastAPI's documentation pages, which load their scripts from a CDN, are switched off.
"""

import base64
import io
import logging
import re
import tempfile
import threading
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from deepfake_detection.data.faces import NO_FACE
from deepfake_detection.serving.settings import DetectorSettings

_logger = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_MB = 20.0
UPLOAD_PREFIX = "deepfake-app-"
"""Each upload's temporary folder (for its overlay) starts with this; removed once explained."""
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The page may load nothing but itself, its inline code and data: images, and call only its server."""
MULTI_FRAME_OK = frozenset({"MPO"})
"""Formats whose extra frames are not an animation (a camera's MPO JPEG: its first picture is the photo)."""


# --------------------------------------------------------------------------- what the side panel shows


def limitations_of(description: str | None) -> tuple[str, str]:
    """The text of a model card's "Limitations" section (a Markdown heading) and where it came
    from; without one, the whole description (the card does not exist yet)."""
    text = (description or "").strip()
    heading = re.search(r"^(#+)[ \t]*(known[ \t]+)?limitations\b.*$", text, flags=re.IGNORECASE | re.MULTILINE)
    if heading:
        level = len(heading.group(1))
        rest = text[heading.end() :]
        end = re.search(rf"^#{{1,{level}}}[ \t]", rest, flags=re.MULTILINE)
        return rest[: end.start() if end else len(rest)].strip(), "the model card's Limitations section"
    if text:
        return text, "the version's description (it has no model card with a Limitations section)"
    return "none recorded", "nothing: the model carries no description"


def colour_bar_css(stops: int = 11) -> str:
    """A CSS gradient of the overlays' colour map (:data:`deepfake_detection.explain.COLORMAP`)."""
    from matplotlib import colormaps

    from deepfake_detection.explain import COLORMAP

    colours = colormaps[COLORMAP](np.linspace(0.0, 1.0, stops))[:, :3] * 255
    parts = [f"rgb({r:.0f},{g:.0f},{b:.0f}) {100 * k / (stops - 1):.0f}%" for k, (r, g, b) in enumerate(colours)]
    return f"linear-gradient(to right, {', '.join(parts)})"


def model_info(model_uri: str, version, alias: str | None, metadata: dict, max_upload_bytes: int) -> dict:
    """What the page shows about the model: from its registered ``version`` (an MLflow
    ``ModelVersion``, its tags and description; None when ``model_uri`` names none) and from
    the logged model's metadata (threshold, faces, view)."""

    settings = DetectorSettings.from_metadata(metadata)
    tags = dict(version.tags or {}) if version is not None else {}
    threshold = settings.threshold
    method = settings.threshold_method or tags.get("threshold_method")
    limitations, source = limitations_of(version.description if version is not None else None)
    test_auc = tags.get("test_auc")
    view = settings.view
    return {
        "uri": model_uri,
        "name": version.name if version is not None else None,
        "version": str(version.version) if version is not None else None,
        "alias": alias,
        "aliases": sorted(getattr(version, "aliases", None) or []) if version is not None else [],
        "network": tags.get("source_model"),
        "kind": tags.get("kind"),
        "threshold": threshold,
        "threshold_method": method,
        "decision_rule": f"label 1 = fake: fake when P(fake) >= {threshold:.4f}"
        + (f" (threshold chosen by {method} on the validation split)" if method else ""),
        "test_auc": float(test_auc) if test_auc is not None else None,
        "test_auc_ci95": tags.get("test_auc_ci95"),
        "limitations": limitations,
        "limitations_source": source,
        "faces": settings.faces and settings.faces_allowed,
        "faces_allowed": settings.faces_allowed,
        "view": view,
        "max_pixels": settings.max_pixels,
        "max_upload_bytes": int(max_upload_bytes),
        "colour_bar": colour_bar_css(),
    }


# --------------------------------------------------------------------------- scoring one upload


class UploadError(ValueError):
    """An upload the page refuses before scoring; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check_upload(data: bytes, max_upload_bytes: int) -> None:
    """Refuse an empty file, one over the upload limit, and an animated or multi-frame image
    (:class:`UploadError`). Whether it is an image at all, and its pixel count, are the
    detector's own checks (its rows' ``error``)."""
    from PIL import Image

    if not data:
        raise UploadError(400, "empty file (0 bytes): nothing to score; pick an image file (JPEG, PNG, WebP, ...)")
    if len(data) > max_upload_bytes:
        raise UploadError(
            413,
            f"file too large: {len(data):,} bytes > the upload limit of {max_upload_bytes:,} bytes; "
            "send a smaller file (or start the app with a larger --max-upload-mb)",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                frames = int(getattr(img, "n_frames", 1)) if img.format not in MULTI_FRAME_OK else 1
    except Exception:  # not an image, or a header Pillow refuses: the detector says why
        return
    if frames > 1:
        raise UploadError(
            422,
            f"animated or multi-frame image ({frames} frames): the detector scores one still picture; "
            "save the frame you want as PNG or JPEG and upload that",
        )


def _records(rows: pd.DataFrame) -> list[dict]:
    """The detector's rows as JSON-ready dicts (NaN and missing values as None)."""
    records = []
    for row in rows.to_dict(orient="records"):
        clean = {}
        for key, value in row.items():
            if isinstance(value, (float, np.floating)) and not np.isfinite(value):
                value = None
            elif isinstance(value, np.integer):
                value = int(value)
            elif isinstance(value, np.floating):
                value = float(value)
            elif value is pd.NA or value is pd.NaT:
                value = None
            clean[str(key)] = value
        records.append(clean)
    return records


def _safe_name(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name or "upload").name).strip("._")[:80]
    return stem or "upload"


class PageModel:
    """The detector behind the page: the pyfunc model (scores), its Keras members loaded once
    for Grad-CAM (overlays) and :func:`model_info`. One upload is scored at a time."""

    def __init__(self, model_uri: str, max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1e6)):
        import mlflow

        from deepfake_detection import champion
        from deepfake_detection.explain import load_explainer

        # an alias is resolved once: the scores, the overlays and the panel all come from one version
        version, alias = champion.resolve_version(model_uri)
        pinned = f"models:/{version.name}/{version.version}" if version is not None else model_uri
        local = mlflow.artifacts.download_artifacts(artifact_uri=pinned)  # downloaded once for both loads
        self.model = mlflow.pyfunc.load_model(local)
        metadata = dict(self.model.metadata.metadata or {})
        self.explainer = load_explainer(local)
        self.max_upload_bytes = int(max_upload_bytes)
        self.info = model_info(model_uri, version, alias, metadata, self.max_upload_bytes)
        self._lock = threading.Lock()

    def _faces(self, faces: bool | None) -> bool:
        faces = self.info["faces"] if faces is None else bool(faces)
        if faces and not self.info["faces_allowed"]:
            raise UploadError(400, "this detector scores whole images (data.view: patches): turn face detection off")
        return faces

    def score(self, data: bytes, name: str, faces: bool | None = None) -> dict:
        """The verdict on one uploaded image, scored from its bytes in memory: ``name``,
        ``faces`` (on or off for this image), ``rows`` (the detector's rows: one, or one per
        face) and ``no_face``. Raises :class:`UploadError` for an upload that cannot be scored
        (with the detector's own message when its row failed)."""

        check_upload(data, self.max_upload_bytes)
        faces = self._faces(faces)
        frame = pd.DataFrame({"image": [base64.b64encode(data).decode("ascii")]})
        with self._lock:
            rows = _records(self.model.predict(frame, params={"faces": faces}))
        scored = [r for r in rows if r["error"] is None]
        failed = [r["error"] for r in rows if r["error"] not in (None, NO_FACE)]
        if failed and not scored:
            raise UploadError(422, failed[0])
        no_face = faces and not scored and any(r["error"] == NO_FACE for r in rows)
        return {"name": name, "faces": faces, "rows": rows, "no_face": no_face}

    def explain(self, data: bytes, name: str, faces: bool | None = None) -> dict:
        """The explanation overlay of one uploaded image (``explain``'s PNG as a data URI, None
        when the image gives none, e.g. no face). The upload is written to its own temporary
        folder for :func:`~deepfake_detection.explain.explain_files`, removed right after."""
        from deepfake_detection.explain import explain_files

        check_upload(data, self.max_upload_bytes)
        faces = self._faces(faces)
        with self._lock, tempfile.TemporaryDirectory(prefix=UPLOAD_PREFIX) as tmp:
            upload = Path(tmp) / _safe_name(name)
            upload.write_bytes(data)
            written = explain_files(self.explainer, [upload], Path(tmp) / "explained", faces=faces)
            overlay = base64.b64encode(written[0].read_bytes()).decode("ascii") if written else None
        return {"name": name, "faces": faces, "overlay": overlay and f"data:image/png;base64,{overlay}"}


# --------------------------------------------------------------------------- the HTTP app


def page_html() -> str:
    return resources.files("deepfake_detection.serving").joinpath("static/app.html").read_text(encoding="utf-8")


async def _read_capped(request, limit: int) -> bytes | None:
    """The request body, or None as soon as it passes ``limit`` bytes (the rest is not read)."""
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(page: PageModel):
    """The FastAPI app of the page (no /docs, /redoc or /openapi.json: they load a CDN). FastAPI
    reads the endpoints' annotations at run time: this module has no ``from __future__ import
    annotations``."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
    from starlette.concurrency import run_in_threadpool

    from deepfake_detection.serving.pyfunc import faces_param

    app = FastAPI(title="deepfake detector", docs_url=None, redoc_url=None, openapi_url=None)
    html = page_html()
    limit = page.max_upload_bytes
    too_large = f"file too large: over the upload limit of {limit:,} bytes; send a smaller file"

    @app.middleware("http")
    async def _headers(request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/", response_class=HTMLResponse)
    def _page():
        return HTMLResponse(html)

    @app.get("/ping", response_class=PlainTextResponse)
    def _ping():
        return "ok"

    @app.get("/api/model")
    def _model():
        return page.info

    def upload_endpoint(path: str, method):
        @app.post(path)
        async def _endpoint(request: Request, name: str = "upload", faces: str | None = None):
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                return JSONResponse({"name": name, "error": too_large}, status_code=413)
            try:
                flag = None if faces in (None, "") else faces_param(faces)
            except ValueError as err:
                return JSONResponse({"name": name, "error": str(err)}, status_code=400)
            data = await _read_capped(request, limit)
            if data is None:
                return JSONResponse({"name": name, "error": too_large}, status_code=413)
            try:
                return await run_in_threadpool(method, data, name, flag)
            except UploadError as err:
                return JSONResponse({"name": name, "error": str(err)}, status_code=err.status)

    upload_endpoint("/api/score", page.score)
    upload_endpoint("/api/explain", page.explain)
    return app


def serve(model_uri: str, host: str = "127.0.0.1", port: int = 8000, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB):
    """Load the detector, then serve its page until Ctrl-C (uvicorn, one process)."""
    import uvicorn

    page = PageModel(model_uri, int(max_upload_mb * 1e6))
    shown = f"[{host}]" if ":" in host else host
    if host not in LOOPBACK_HOSTS:
        _logger.warning(
            "the page is bound to %s, beyond this machine, with no login and no TLS: put an "
            "authenticating HTTPS reverse proxy in front of it (README: The web page)",
            host,
        )
    _logger.info(
        "%s: threshold %.4f; open http://%s:%d/ (Ctrl-C stops it)", model_uri, page.info["threshold"], shown, port
    )
    uvicorn.run(create_app(page), host=host, port=port, log_level="warning", server_header=False)
