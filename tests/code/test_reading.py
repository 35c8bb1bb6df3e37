"""Reading image files for inference: confinement to one folder, special files, the byte cap,
and who may switch ``path`` rows on (:func:`serving_io.path_access`)."""

from __future__ import annotations

import os
import time

import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from deepfake_detection.serving import io as serving_io
from deepfake_detection.serving.io import OUTSIDE_ROOT, PATHS_DISABLED, RowError, read_image_file


@pytest.fixture
def tree(tmp_path):
    """root/ (the allowed folder) and outside/ next to it, with links and special files."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "a.jpg").write_bytes(b"inside")
    (root / "sub" / "b.jpg").write_bytes(b"nested")
    (outside / "secret.jpg").write_bytes(b"secret")
    (root / "escape.jpg").symlink_to(outside / "secret.jpg")
    (root / "zero.jpg").symlink_to("/dev/zero")
    (root / "inner.jpg").symlink_to(root / "a.jpg")
    (root / "dangling.jpg").symlink_to(root / "gone.jpg")
    (root / "dangling_out.jpg").symlink_to(outside / "gone.jpg")
    os.mkfifo(root / "fifo.jpg")
    with open(root / "big.jpg", "wb") as f:  # sparse: 1 GB declared, nothing written
        f.truncate(1 << 30)
    return root, outside


def message(path, **kw) -> str:
    with pytest.raises(RowError) as err:
        read_image_file(path, **kw)
    return str(err.value)


def test_files_inside_the_root_are_read(tree):
    root, _ = tree
    r = os.path.realpath(root)
    assert read_image_file("a.jpg", root=r) == b"inside"
    assert read_image_file(str(root / "a.jpg"), root=r) == b"inside"
    assert read_image_file("sub/../sub/b.jpg", root=r) == b"nested"
    assert read_image_file("inner.jpg", root=r) == b"inside"  # a link that stays inside


@pytest.mark.parametrize(
    "path",
    [
        "/dev/zero",
        "/etc/hostname",
        "/etc/passwd",
        "/no/such/file",
        "../outside/secret.jpg",
        "../outside/missing.jpg",
        "sub/../../outside/secret.jpg",
        "escape.jpg",
        "zero.jpg",
        "dangling_out.jpg",
        "/",
        "..",
        "a\0b",
    ],
)
def test_anything_resolving_outside_the_root_gets_one_message(tree, path):
    """Same words whether the target exists or not: nothing to learn about the server's files."""
    root, _ = tree
    assert message(path, root=os.path.realpath(root)) == OUTSIDE_ROOT


def test_a_sibling_folder_sharing_the_prefix_is_outside(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root2").mkdir()
    (tmp_path / "root2" / "x.jpg").write_bytes(b"x")
    assert message("../root2/x.jpg", root=str(tmp_path / "root")) == OUTSIDE_ROOT


def test_special_files_are_refused_without_reading_them(tree):
    root, _ = tree
    r = os.path.realpath(root)
    start = time.monotonic()
    assert message("/dev/zero").startswith("not a regular file")  # in-process too
    assert message("fifo.jpg", root=r).startswith("not a regular file")  # no writer: must not block
    assert message("sub", root=r).startswith("is a directory")
    assert message("missing.jpg", root=r) == "file not found: missing.jpg"
    assert message("dangling.jpg", root=r) == "dangling symbolic link: dangling.jpg"
    assert time.monotonic() - start < 5


def test_the_byte_cap_refuses_a_big_file_from_its_size(tree):
    root, _ = tree
    assert message("big.jpg", root=os.path.realpath(root)).startswith("file too large: 1,073,741,824 bytes")
    assert read_image_file("a.jpg", root=os.path.realpath(root), max_bytes=6) == b"inside"
    assert message("a.jpg", root=os.path.realpath(root), max_bytes=5).startswith(
        "file too large: 6 bytes > the limit of 5"
    )


def test_path_rows_are_off_unless_local_files_or_the_serving_root(tree, monkeypatch):
    root, outside = tree
    monkeypatch.delenv(serving_io.PATH_ROOT_ENV, raising=False)
    monkeypatch.delenv(serving_io.MAX_BYTES_ENV, raising=False)
    monkeypatch.delenv(serving_io.REQUEST_PIXELS_ENV, raising=False)
    frame = pd.DataFrame({"path": [str(root / "a.jpg"), str(outside / "secret.jpg")]})
    budget = serving_io.DEFAULT_REQUEST_PIXELS  # a REST call's pixel budget
    assert serving_io.path_access() == serving_io.PathAccess(False, None, serving_io.MAX_IMAGE_BYTES, budget)
    contents, errors = serving_io.read_inputs(frame, serving_io.path_access())
    assert contents == [None, None] and errors == [PATHS_DISABLED, PATHS_DISABLED]

    with serving_io.local_files():
        assert serving_io.path_access().request_pixels is None  # in process: no request budget
        contents, errors = serving_io.read_inputs(frame, serving_io.path_access())
    assert contents == [b"inside", b"secret"] and errors == [None, None]
    assert not serving_io.path_access().allowed  # the block ended

    monkeypatch.setenv(serving_io.PATH_ROOT_ENV, str(root))
    monkeypatch.setenv(serving_io.MAX_BYTES_ENV, "1000")
    access = serving_io.path_access()
    assert access == serving_io.PathAccess(True, os.path.realpath(root), 1000, budget)
    contents, errors = serving_io.read_inputs(frame, access)
    assert contents == [b"inside", None] and errors == [None, OUTSIDE_ROOT]

    monkeypatch.setenv(serving_io.PATH_ROOT_ENV, str(root / "a.jpg"))
    with pytest.raises(MlflowException, match="is not a folder"):
        serving_io.path_access()


def test_base64_and_bytes_are_capped_too(monkeypatch):
    access = serving_io.PathAccess(False, None, 10)
    frame = pd.DataFrame({"image": ["QUJD", "A" * 200, b"0123456789A", "A" * 2000]})
    contents, errors = serving_io.read_inputs(frame, access)
    assert contents[0] == b"ABC" and errors[0] is None
    assert errors[1] == "image too large: 150 bytes > the limit of 10"
    assert errors[3] == "image too large: 2,000 characters of base64 > the limit of 10 bytes"  # not even decoded
    assert errors[2] == "image too large: 11 bytes > the limit of 10"
    assert contents[1:] == [None, None, None]
