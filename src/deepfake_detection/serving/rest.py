"""``deepfake-detect serve``: MLflow's own scoring app (``mlflow.pyfunc.scoring_server``, the
FastAPI app behind ``mlflow models serve``) with the limits a public endpoint needs.

:class:`RequestGuard` wraps the app (an ASGI middleware) and, on ``POST /invocations``:

* refuses a body over ``DEEPFAKE_SERVE_MAX_BODY`` bytes (default :data:`DEFAULT_MAX_BODY`) with
  HTTP 413 and a short message, from its ``Content-Length`` or while it arrives, never echoing it;
* refuses a JSON body that does not parse with HTTP 400 and the parser's position, not the body;
* refuses ``params`` the model's signature does not declare with HTTP 400 naming them (MLflow
  would ignore them: ``{"thresold": 0.1}`` was scored at the default threshold);
* makes every response strict JSON: ``NaN`` / ``Infinity`` (a row that failed has no
  probability) become ``null``, and an error message is cut to :data:`MAX_MESSAGE` characters.

Everything else (``/ping``, ``/health``, ``/version``, the request formats, the 504 after
``MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT``) is MLflow's. The app runs in this process under
uvicorn (one worker), so its memory is one process's: see the README's serving limits.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

DEFAULT_MAX_BODY = 32 * 1024 * 1024
"""32 MiB: a request of about 24 MB of images once base64-encoded."""
MAX_BODY_ENV = "DEEPFAKE_SERVE_MAX_BODY"
MAX_MESSAGE = 1000
"""The longest error message a response carries (MLflow's may quote the request)."""
DRAIN_LIMIT = 512 * 1024 * 1024
"""Of a body over the limit, at most this much is read (and dropped, never kept) before the 413,
so that a client still sending reads the answer; past it the connection is closed."""
MAX_CONNECTIONS = 16
"""Connections uvicorn serves at once (more get HTTP 503): bounds the request bodies in memory."""


def max_body_setting() -> int:
    """The body-size limit: ``$DEEPFAKE_SERVE_MAX_BODY`` bytes, else :data:`DEFAULT_MAX_BODY`."""
    value = os.environ.get(MAX_BODY_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_BODY
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{MAX_BODY_ENV} must be a whole number of bytes >= 1, got {value!r}")
    return int(value)


def strict_json(value: Any) -> Any:
    """``value`` (parsed JSON) with every non-finite float replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [strict_json(v) for v in value]
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    return value


def _error_body(message: str, code: str = "BAD_REQUEST") -> bytes:
    return json.dumps({"error_code": code, "message": message}).encode()


class RequestGuard:
    """ASGI middleware around MLflow's scoring app: the body limit, strict request JSON, known
    params only, strict response JSON (see the module docstring). ``known_params``: the names the
    model's signature declares (``None``: no check)."""

    def __init__(self, app, max_body: int, known_params: set[str] | None):
        self.app = app
        self.max_body = int(max_body)
        self.known_params = known_params

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/invocations" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        declared = headers.get("content-length", "")
        too_large = declared.isdigit() and int(declared) > self.max_body
        body, seen, more = bytearray(), 0, True
        while more and seen <= DRAIN_LIMIT:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk, more = message.get("body", b""), message.get("more_body", False)
            seen += len(chunk)
            if not too_large:
                body += chunk
                too_large = len(body) > self.max_body
                if too_large:
                    body = bytearray()
        if too_large:  # what arrived was read and dropped, so the client reads the answer
            return await self._refuse(send, 413, self._too_large(), "RESOURCE_LIMIT_EXCEEDED")
        refusal = self._check_json(bytes(body), headers.get("content-type", ""))
        if refusal:
            return await self._refuse(send, 400, refusal)
        sent = False

        async def replay():
            nonlocal sent
            if sent:  # after the body: what the client does next (a disconnect, when it comes)
                return await receive()
            sent = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        return await self.app(scope, replay, _StrictJsonSender(send))

    def _too_large(self) -> str:
        return (
            f"request body too large: the limit is {self.max_body:,} bytes ({MAX_BODY_ENV}); "
            "send fewer or smaller images per request"
        )

    def _check_json(self, body: bytes, content_type: str) -> str | None:
        """Why a JSON body is refused (``None``: pass it on); other content types go to MLflow."""
        if content_type.split(";")[0].strip().lower() != "application/json":
            return None
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            where = f" at line {err.lineno}, column {err.colno}" if isinstance(err, json.JSONDecodeError) else ""
            return f"the request body is not valid JSON{where}: {getattr(err, 'msg', None) or type(err).__name__}"
        params = payload.get("params") if isinstance(payload, dict) else None
        if params is None or self.known_params is None:
            return None
        if not isinstance(params, dict):
            return f"'params' must be a JSON object, got {type(params).__name__}"
        unknown = sorted(set(params) - self.known_params)
        if unknown:
            return (
                f"unknown request params {unknown}: this model takes {sorted(self.known_params)}"
                if self.known_params
                else f"unknown request params {unknown}: this model takes none"
            )
        return None

    @staticmethod
    async def _refuse(send, status: int, message: str, code: str = "BAD_REQUEST") -> None:
        body = _error_body(message, code)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status == 413:
            headers.append((b"connection", b"close"))  # the rest of the body is not read
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _StrictJsonSender:
    """Buffers one response and sends it back as strict JSON (see :func:`strict_json`), with
    error messages cut to :data:`MAX_MESSAGE` characters."""

    def __init__(self, send):
        self.send = send
        self.start: dict | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message):
        if message["type"] == "http.response.start":
            self.start = dict(message)
            return None
        if message["type"] != "http.response.body":
            return await self.send(message)
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return None
        body = self._rewrite(b"".join(self.chunks))
        headers = [(k, v) for k, v in self.start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.send({**self.start, "headers": headers})
        return await self.send({"type": "http.response.body", "body": body})

    def _rewrite(self, body: bytes) -> bytes:
        status = self.start["status"]
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            if status >= 400:  # plain text from MLflow (415, 504): short and not the body
                return body[:MAX_MESSAGE]
            return body
        if status >= 400 and isinstance(payload, dict):
            message = str(payload.get("message", ""))
            if message.startswith("Failed to predict data '") and "\nError: " in message:
                message = message.split("\nError: ", 1)[1]  # MLflow quotes the whole input first
            payload = {k: v for k, v in payload.items() if k != "stack_trace"}
            payload["message"] = message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"
        elif b"NaN" not in body and b"Infinity" not in body:
            return body
        return json.dumps(strict_json(payload), allow_nan=False).encode()


def build_app(model_uri: str, max_body: int | None = None):
    """MLflow's scoring app for the pyfunc model at ``model_uri``, wrapped in :class:`RequestGuard`."""
    import mlflow
    from mlflow.pyfunc import scoring_server

    model = mlflow.pyfunc.load_model(model_uri)
    schema = model.metadata.get_params_schema()
    known = {p.name for p in schema.params} if schema is not None else None
    return RequestGuard(scoring_server.init(model), max_body or max_body_setting(), known)


def serve(model_uri: str, host: str = "127.0.0.1", port: int = 5001) -> None:  # pragma: no cover - blocks
    """Load ``model_uri`` and answer on ``host:port`` until stopped (Ctrl-C, SIGTERM)."""
    import uvicorn

    app = build_app(model_uri)
    uvicorn.run(app, host=host, port=port, limit_concurrency=MAX_CONNECTIONS, log_level="info")
