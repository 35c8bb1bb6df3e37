"""Reading the images a detector is asked about: files and base64, under the security rules.

A REST client of ``mlflow models serve`` reaches the detector's ``predict`` exactly like an
in-process caller, so ``path`` rows are read only when allowed (:func:`path_access`): in-process
code opts in with ``with local_files(): model.predict(...)``; a server opts in by setting
``DEEPFAKE_SERVE_PATH_ROOT`` to one folder, and then reads only regular files whose resolved
path lies inside it (no ``..`` or symlink escape), of at most ``MAX_IMAGE_BYTES``
(``DEEPFAKE_SERVE_MAX_BYTES`` overrides; it also bounds base64 images). Request ``params`` are
never trusted for this: REST clients can send them too. Otherwise a ``path`` row gets the
error :data:`PATHS_DISABLED`.

Decoding the bytes read here is :mod:`deepfake_detection.data.decode`'s job.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
import math
import os
import stat
from pathlib import Path
from typing import NamedTuple

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from deepfake_detection.data.images import MAX_IMAGE_BYTES, MAX_PIXELS

INPUT_COLUMNS = ("path", "image")
PATH_ROOT_ENV = "DEEPFAKE_SERVE_PATH_ROOT"
"""Set for a serving process: ``path`` rows may name files inside this one folder."""
MAX_BYTES_ENV = "DEEPFAKE_SERVE_MAX_BYTES"
"""Optional: the byte cap on one image (file or base64), default ``MAX_IMAGE_BYTES``."""
REQUEST_PIXELS_ENV = "DEEPFAKE_SERVE_REQUEST_PIXELS"
"""Optional: the pixels (frames x width x height, summed over its images) one REST request may
have decoded, default :data:`DEFAULT_REQUEST_PIXELS`; images past it get an error row."""
DEFAULT_REQUEST_PIXELS = 4 * MAX_PIXELS
"""268 M pixels: four 8192 x 8192 images, or about twenty 12-megapixel photos, per request."""
PATHS_DISABLED = (
    "'path' input is disabled: send the image base64-encoded in an 'image' column "
    f"(a server can allow files of one folder with {PATH_ROOT_ENV})"
)
OUTSIDE_ROOT = "path not allowed: only files inside the serving folder can be read"


class InvalidInputError(MlflowException, ValueError):
    """The request as a whole is unusable (no ``path``/``image`` column, ...): a ``ValueError``
    that MLflow's scoring server answers with HTTP 400 and this message."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


class PathAccess(NamedTuple):
    """Whether ``path`` rows are read, confined to which folder (``None``: anywhere), the byte
    cap on one image and the pixels one call may decode (``None``: no budget, in process)."""

    allowed: bool
    root: str | None = None
    max_bytes: int = MAX_IMAGE_BYTES
    request_pixels: int | None = None


LOCAL_ACCESS = PathAccess(True)
"""In-process callers that name their own files (predict_files, explain, the ONNX detector)."""

_LOCAL_FILES: contextvars.ContextVar[bool] = contextvars.ContextVar("deepfake_local_files", default=False)


@contextlib.contextmanager
def local_files():
    """Let a :class:`DeepfakeDetector` called inside this block read ``path`` rows anywhere
    (in-process use only: nothing a REST client sends can switch this on)."""
    token = _LOCAL_FILES.set(True)
    try:
        yield
    finally:
        _LOCAL_FILES.reset(token)


def _positive_setting(name: str, default: int, what: str) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        cap = int(value)
    except ValueError:
        raise MlflowException(f"{name} must be a number of {what}, got {value!r}") from None
    if cap < 1:
        raise MlflowException(f"{name} must be >= 1, got {cap}")
    return cap


def max_bytes_setting() -> int:
    """The byte cap on one image: ``$DEEPFAKE_SERVE_MAX_BYTES``, else ``MAX_IMAGE_BYTES``."""
    return _positive_setting(MAX_BYTES_ENV, MAX_IMAGE_BYTES, "bytes")


def request_pixels_setting() -> int:
    """The pixel budget of one REST request: ``$DEEPFAKE_SERVE_REQUEST_PIXELS``, else
    :data:`DEFAULT_REQUEST_PIXELS`."""
    return _positive_setting(REQUEST_PIXELS_ENV, DEFAULT_REQUEST_PIXELS, "pixels")


def path_access() -> PathAccess:
    """What the detector may read for ``path`` rows in this call: anywhere inside
    :func:`local_files` (and no pixel budget: the caller's own files), inside
    ``$DEEPFAKE_SERVE_PATH_ROOT`` when set, else nothing; a REST call gets the request pixel
    budget :func:`request_pixels_setting`."""
    max_bytes = max_bytes_setting()
    if _LOCAL_FILES.get():
        return PathAccess(True, None, max_bytes)
    budget = request_pixels_setting()
    root = os.environ.get(PATH_ROOT_ENV, "").strip()
    if root:
        resolved = os.path.realpath(root)
        if not os.path.isdir(resolved):
            raise MlflowException(f"{PATH_ROOT_ENV}={root!r} is not a folder")
        return PathAccess(True, resolved, max_bytes, budget)
    return PathAccess(False, None, max_bytes, budget)


class RowError(ValueError):
    """One input row is unusable; the message goes into that row's ``error``."""


def _inside(root: str, resolved: str) -> bool:
    return resolved == root or resolved.startswith(root.rstrip(os.sep) + os.sep)


def read_image_file(path: str | os.PathLike, *, root: str | None = None, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of one image file, read safely; :class:`RowError` says why not.

    With ``root`` (a resolved folder), a relative ``path`` is taken inside it and the resolved
    path (``os.path.realpath``: ``..`` and symlinks followed) must lie inside it, else the same
    message whether or not the file exists. Anything but a regular file (a folder, ``/dev/zero``,
    a FIFO) is refused without reading it, and so is a file over ``max_bytes``; at most
    ``max_bytes`` are ever read."""
    given = os.fspath(path)
    try:
        candidate = os.path.join(root, given) if root is not None else given
        resolved = os.path.realpath(candidate)
    except (ValueError, OSError) as err:  # a NUL byte, a symlink loop, ...
        raise RowError(OUTSIDE_ROOT if root is not None else f"not a valid path: {err}") from None
    if root is not None and not _inside(root, resolved):
        raise RowError(OUTSIDE_ROOT)
    try:
        info = os.stat(resolved)
    except FileNotFoundError:
        dangling = os.path.islink(candidate)
        raise RowError(f"dangling symbolic link: {given}" if dangling else f"file not found: {given}") from None
    except OSError as err:
        raise RowError(f"cannot read {given}: {err.strerror or err}") from None
    _check_file_stat(info, given, max_bytes)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(resolved, flags)
    except OSError as err:  # e.g. permission denied, or the file was swapped for a symlink
        raise RowError(f"cannot read {given}: {err.strerror or err}") from None
    try:
        _check_file_stat(os.fstat(fd), given, max_bytes)  # what was opened, not what was checked
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as err:
        raise RowError(f"cannot read {given}: {err.strerror or err}") from None
    finally:
        os.close(fd)
    if total > max_bytes:  # grew while being read
        raise RowError(f"file too large: over {max_bytes:,} bytes: {given}")
    return b"".join(chunks)


def _check_file_stat(info: os.stat_result, given: str, max_bytes: int) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise RowError(f"is a directory, not an image file: {given}")
    if not stat.S_ISREG(info.st_mode):
        raise RowError(f"not a regular file (a device, FIFO or socket): {given}")
    if info.st_size > max_bytes:
        raise RowError(f"file too large: {info.st_size:,} bytes > the limit of {max_bytes:,}: {given}")


def _b64decode(value: str) -> bytes:
    value = value.strip()
    if value.startswith("data:") and "," in value:  # data URI: data:image/png;base64,....
        value = value.split(",", 1)[1]
    return base64.b64decode(value, validate=True)


def _is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def read_inputs(
    model_input: pd.DataFrame, access: PathAccess = LOCAL_ACCESS
) -> tuple[list[bytes | None], list[str | None]]:
    """The encoded bytes of every row (``image`` base64 if present, else the ``path`` file) and
    a per-row error (``None`` where the bytes were read).

    ``access``: whether and where ``path`` rows are read (:func:`read_image_file`); the default
    reads any regular file, for in-process callers naming their own files. The detector passes
    :func:`path_access` instead. No image over ``access.max_bytes`` is accepted."""
    if not isinstance(model_input, pd.DataFrame):
        raise InvalidInputError(
            f"expected a DataFrame with a 'path' or an 'image' column, got {type(model_input).__name__}"
        )
    present = [c for c in INPUT_COLUMNS if c in model_input.columns]
    if not present:
        raise InvalidInputError(
            "the input needs a 'path' column (image files) or an 'image' column (base64-encoded "
            f"JPEG/PNG bytes); got {[str(c) for c in model_input.columns] or 'no known column'}"
        )
    paths = model_input["path"].tolist() if "path" in present else [None] * len(model_input)
    images = model_input["image"].tolist() if "image" in present else [None] * len(model_input)
    contents: list[bytes | None] = []
    errors: list[str | None] = []
    for path, image in zip(paths, images):
        data, error = None, None
        if not _is_missing(image):
            if isinstance(image, (bytes, bytearray)):
                data = bytes(image)  # raw bytes in process (a REST request sends base64 text)
            elif isinstance(image, str):
                if len(image) > access.max_bytes * 4 // 3 + 1024:  # before decoding it
                    error = (
                        f"image too large: {len(image):,} characters of base64 > "
                        f"the limit of {access.max_bytes:,} bytes"
                    )
                else:
                    try:
                        data = _b64decode(image)
                    except (binascii.Error, ValueError) as err:
                        error = f"not valid base64: {err}"
            else:
                error = f"'image' must be a base64 string, got {type(image).__name__}"
            if data is not None and len(data) > access.max_bytes:
                data, error = None, f"image too large: {len(data):,} bytes > the limit of {access.max_bytes:,}"
        elif not _is_missing(path):
            if not access.allowed:
                error = PATHS_DISABLED
            else:
                try:
                    data = read_image_file(str(path), root=access.root, max_bytes=access.max_bytes)
                except RowError as err:
                    error = str(err)
        else:
            error = "empty row: give a 'path' or an 'image'"
        contents.append(data)
        errors.append(error)
    return contents, errors


def encode_image_file(path: Path | str) -> str:
    """The base64 text of an image file (what the REST endpoint's ``image`` column takes)."""
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")
