"""``ingest --faces``: the largest face of each image cropped, faces.csv, and the manifest's crop boxes.

The source is a flat {real,fake} folder built here from package photos, no downloads:
scikit-image's astronaut (a portrait) pasted onto larger canvases at different positions,
scales and flips (one stored sideways with an EXIF rotation), and scikit-learn's china.jpg
(no face). MTCNN runs once over the ten images (module fixture); the other tests reuse it.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from project_commands import params_text
from skimage import data as skdata
from sklearn.datasets import load_sample_image

from deepfake_detection.cli import cli
from deepfake_detection.config import FacesParams
from deepfake_detection.data.faces import Face, cut
from deepfake_detection.data.images import REASONS, load_rgb
from deepfake_detection.data.ingest import FACES_COLUMNS, NO_FACE_REASON, REPORT_NAME, ingest
from deepfake_detection.data.manifest import (
    CROP_BOX_COLUMNS,
    FACES_CSV,
    MANIFEST_COLUMNS,
    build_manifest,
    face_cropped,
    load_manifest,
)

SIZE = 48  # data.image_size in the test's params (not the default 64: the crop size comes from params)
MARGIN = 0.1
CANVAS = (480, 640)  # height, width

# source path -> where the portrait was pasted in the upright image: (top, left, side, mirrored)
PORTRAITS = {
    "real/portrait_0.png": (40, 60, 300, False),
    "real/portrait_1.png": (150, 330, 260, True),
    "real/portrait_2.png": (10, 400, 230, False),
    "real/portrait_3.jpg": (220, 20, 250, True),
    "fake/portrait_4.jpg": (100, 200, 320, False),
    "fake/portrait_5.png": (0, 0, 280, True),
    "fake/portrait_6.png": (240, 390, 240, False),
    "fake/sideways.jpg": (90, 150, 300, False),  # stored rotated, with EXIF orientation 6
}
NO_FACE = {"real/landscape.jpg", "fake/landscape.png"}


def _canvas(top: int, left: int, side: int, mirrored: bool) -> np.ndarray:
    canvas = np.full((*CANVAS, 3), 90, np.uint8)
    canvas[:, :, 2] = np.linspace(60, 200, CANVAS[1]).astype(np.uint8)  # a gradient, not a flat wall
    portrait = Image.fromarray(skdata.astronaut()).resize((side, side))
    if mirrored:
        portrait = portrait.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    canvas[top : top + side, left : left + side] = np.asarray(portrait)
    return canvas


def _build_source(src: Path) -> None:
    for label in ("real", "fake"):
        (src / label).mkdir(parents=True)
    for rel, placement in PORTRAITS.items():
        img = Image.fromarray(_canvas(*placement))
        if rel == "fake/sideways.jpg":
            exif = Image.Exif()
            exif[0x0112] = 6  # "rotate 90 degrees clockwise to show": stored turned the other way
            img.transpose(Image.Transpose.ROTATE_90).save(src / rel, quality=95, exif=exif)
        else:
            img.save(src / rel, quality=95)
    china = load_sample_image("china.jpg")
    Image.fromarray(china).save(src / "real/landscape.jpg", quality=95)
    Image.fromarray(china[:, ::-1].copy()).save(src / "fake/landscape.png")


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("faces") / "src"
    _build_source(src)
    return src


@pytest.fixture(scope="module")
def cropped(source) -> tuple[Path, dict, str]:
    """``deepfake-detect ingest SRC DEST --faces`` with a params file (image_size, margin)."""
    root = source.parent
    params = root / "params.yaml"
    params.write_text(
        params_text({"data": {"image_size": SIZE, "split": {"valid": 0.25, "test": 0.25}, "faces": {"margin": MARGIN}}})
    )
    dest = root / "data"
    result = CliRunner().invoke(cli, ["ingest", str(source), str(dest), "--faces", "--params", str(params)])
    assert result.exit_code == 0, result.output
    return dest, json.loads((dest / REPORT_NAME).read_text()), result.stdout


def _faces_csv(dest: Path) -> pd.DataFrame:
    return pd.read_csv(dest / FACES_CSV, keep_default_na=False).set_index("source")


def _assert_around_the_portrait(row, placement) -> None:
    top, left, side, _ = placement
    x, y, w, h = row["face_x"], row["face_y"], row["face_w"], row["face_h"]
    slack = 4  # MTCNN's box may graze the portrait's edge
    assert left - slack <= x and x + w <= left + side + slack, (row, placement)
    assert top - slack <= y and y + h <= top + side + slack, (row, placement)
    assert w > side / 10 and h > side / 10  # the astronaut's face (about a sixth of the portrait), not a speck
    cl, ct, cr, cb = (row[c] for c in CROP_BOX_COLUMNS)
    assert cl <= x and ct <= y and cr >= x + w and cb >= y + h  # the crop holds the face
    assert left <= (cl + cr) / 2 <= left + side and top <= (ct + cb) / 2 <= top + side
    assert 0 <= cl < cr <= CANVAS[1] and 0 <= ct < cb <= CANVAS[0]


def test_every_face_is_written_as_a_png_crop_of_the_data_size(cropped):
    dest, report, _ = cropped
    written = {f["source"]: f for f in report["written_files"]}
    assert set(written) == set(PORTRAITS)
    assert {f["method"] for f in written.values()} == {"cropped"}
    assert report["written_by_method"] == {"copied": 0, "converted": 0, "reencoded": 0, "cropped": len(PORTRAITS)}
    images = sorted(p for p in dest.rglob("*") if p.is_file() and p.name not in (REPORT_NAME, FACES_CSV))
    assert len(images) == len(PORTRAITS)
    for f in written.values():
        assert f["dest"].endswith(".png") and f["dest"].split("/")[1] == f["source"].split("/")[0]
        with Image.open(dest / f["dest"]) as img:
            assert (img.format, img.mode, img.size) == ("PNG", "RGB", (SIZE, SIZE))


def test_no_face_images_are_skipped_with_their_reason_and_counted(cropped):
    _, report, stdout = cropped
    assert {s["source"]: s["reason"] for s in report["skipped_files"]} == dict.fromkeys(NO_FACE, NO_FACE_REASON)
    assert all(s["detail"] == "no face found" for s in report["skipped_files"])
    assert report["skipped_by_reason"] == {**dict.fromkeys(REASONS, 0), NO_FACE_REASON: len(NO_FACE)}
    assert report["seen"] == len(PORTRAITS) + len(NO_FACE)
    assert report["written"] + report["skipped"] == report["seen"]
    assert report["skipped"] == len(NO_FACE)
    shown = json.loads(stdout[stdout.index("{") : stdout.rindex("}") + 1])
    assert shown["skipped_by_reason"] == {NO_FACE_REASON: len(NO_FACE)}


def test_the_split_is_drawn_over_the_images_with_a_face(cropped):
    _, report, _ = cropped
    assert report["counts"] == {s: {"real": n, "fake": n} for s, n in (("train", 2), ("valid", 1), ("test", 1))}


def test_the_report_records_the_crop_settings_and_size(cropped):
    _, report, stdout = cropped
    faces = report["faces"]
    assert faces["cropped"] is True and faces["size"] == SIZE and faces["csv"] == FACES_CSV
    assert faces["settings"] == FacesParams(margin=MARGIN).model_dump()
    assert faces["found"] == len(PORTRAITS) and faces["no_face"] == len(NO_FACE) and faces["several_faces"] == 0
    assert "faces" in stdout


def test_faces_csv_holds_each_crop_box_around_the_pasted_portrait(cropped, source):
    dest, report, _ = cropped
    table = _faces_csv(dest)
    assert (dest / FACES_CSV).read_text().splitlines()[0] == ",".join(FACES_COLUMNS)
    assert list(FACES_COLUMNS[2:11]) == list(Face((0, 0, 0, 0), 0.0, (0, 0, 0, 0)).as_dict())
    assert set(table.index) == set(PORTRAITS)
    assert dict(zip(table.index, table.path)) == {f["source"]: f["dest"] for f in report["written_files"]}
    for rel, placement in PORTRAITS.items():
        row = table.loc[rel]
        assert (row.source_width, row.source_height) == (CANVAS[1], CANVAS[0])  # upright, also the sideways one
        assert row.faces_found == 1 and row.face_confidence >= 0.9
        _assert_around_the_portrait(row, placement)
        side = max(row.face_w, row.face_h) * (1 + 2 * MARGIN)  # the params' margin, not the default
        assert row.crop_right - row.crop_left == pytest.approx(side, abs=1)


def test_the_written_crop_is_the_crop_box_cut_from_the_upright_source(cropped, source):
    dest, _, _ = cropped
    for rel, row in _faces_csv(dest).iterrows():
        face = Face(
            (row.face_x, row.face_y, row.face_w, row.face_h),
            row.face_confidence,
            tuple(int(row[c]) for c in CROP_BOX_COLUMNS),
        )
        expected = cut(load_rgb(source / rel), face, SIZE)
        np.testing.assert_array_equal(load_rgb(dest / row.path), expected)  # lossless


def test_prepare_merges_the_crop_boxes_into_the_manifest(cropped, tmp_path):
    dest, _, _ = cropped
    manifest = build_manifest(dest, progress=False)  # faces.csv and the report are not stray files
    assert list(manifest.columns[: len(MANIFEST_COLUMNS)]) == MANIFEST_COLUMNS
    assert set(FACES_COLUMNS) - {"path"} <= set(manifest.columns)
    assert len(manifest) == len(PORTRAITS)
    assert (manifest.width == SIZE).all() and (manifest.height == SIZE).all()
    for _, row in manifest.iterrows():
        assert Path(row.path).relative_to(dest).as_posix() == _faces_csv(dest).loc[row.source, "path"]
        _assert_around_the_portrait(row, PORTRAITS[row.source])
    assert face_cropped(manifest)
    manifest.to_csv(tmp_path / "manifest.csv", index=False)  # what the prepare stage writes
    again = load_manifest(tmp_path / "manifest.csv")
    assert face_cropped(again)
    assert again.crop_left.tolist() == manifest.crop_left.tolist()


def test_an_image_added_after_ingest_is_no_face_crop(cropped, tmp_path, caplog):
    dest = tmp_path / "data"
    shutil.copytree(cropped[0], dest)
    Image.new("RGB", (SIZE, SIZE), (10, 20, 30)).save(dest / "train" / "real" / "added.png")
    with caplog.at_level(logging.WARNING):
        manifest = build_manifest(dest, progress=False)
    assert "1 of 9 images are not in" in caplog.text
    added = manifest[manifest.path.str.endswith("added.png")]
    assert added[CROP_BOX_COLUMNS].isna().all(axis=None)
    assert not face_cropped(manifest)
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    assert not face_cropped(load_manifest(tmp_path / "manifest.csv"))


def test_without_faces_nothing_changes(source, tmp_path):
    dest = tmp_path / "data"
    report = ingest(source, dest, valid_fraction=0.25, test_fraction=0.25, progress=False)
    assert report["written"] == report["seen"] == len(PORTRAITS) + len(NO_FACE)
    assert "faces" not in report and set(report["skipped_by_reason"]) == set(REASONS)
    assert set(report["written_by_method"]) == {"copied", "converted", "reencoded"}
    assert not (dest / FACES_CSV).exists()
    assert {f["source"] for f in report["converted_files"]} == {"fake/sideways.jpg"}  # EXIF-rotated: as before
    for f in report["written_files"]:
        if f["method"] == "copied":
            assert (dest / f["dest"]).read_bytes() == (source / f["source"]).read_bytes()
        with Image.open(dest / f["dest"]) as img:
            assert img.size == (CANVAS[1], CANVAS[0]) or f["source"] in NO_FACE  # whole images, not crops
    manifest = build_manifest(dest, progress=False)
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert not face_cropped(manifest)


def test_faces_refuses_jpeg_and_needs_a_size(source, tmp_path):
    with pytest.raises(ValueError, match="PNG"):
        ingest(source, tmp_path / "a", faces=FacesParams(), face_size=SIZE, reencode="jpeg", progress=False)
    with pytest.raises(ValueError, match="face_size"):
        ingest(source, tmp_path / "b", faces=FacesParams(), progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
