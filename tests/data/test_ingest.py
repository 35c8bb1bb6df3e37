"""deepfake_detection.data.ingest on a corpus of good and broken files built here."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepfake_detection.data.images import REASONS
from deepfake_detection.data.ingest import REPORT_NAME, ingest

SPLITS = ("train", "valid", "test")
LABELS = ("real", "fake")


def _noise(seed: int, size=(32, 24)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# source path -> None (good, copied), "converted" (good, rewritten as RGB PNG) or a skip reason
EXPECTED = {
    "Train/Real/good_a.jpg": None,
    "Train/Real/good_b.png": None,
    "Train/Real/gray.png": None,
    "Train/Real/easy_12_0101.jpg": None,
    "Train/Real/sub/nested.jpg": None,
    "Train/Real/rgba.png": "converted",
    "Train/Real/deep16.png": "converted",
    "Train/Real/zero.jpg": "zero_bytes",
    "Train/Real/half.jpg": "truncated",
    "Train/Real/notes.jpg": "not_an_image",
    "Train/Fake/face.jpg": None,
    "Train/Fake/FACE.JPG": None,
    "Train/Fake/face.png": None,
    "Train/Fake/cmyk.jpg": "converted",
    "Train/Fake/huge.png": "too_large",
    "Train/Fake/dot.png": "too_small",  # 1 x 1: inference refuses it, so ingest skips it
    "Train/Fake/float.tif": "unsupported_mode",
    "Validation/Real/good_v.jpg": None,
}
GOOD = {k for k, v in EXPECTED.items() if v in (None, "converted")}
BAD = {k: v for k, v in EXPECTED.items() if v not in (None, "converted")}


def _build_corpus(src: Path) -> None:
    for rel in EXPECTED:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
    for seed, rel in enumerate(k for k, v in EXPECTED.items() if v is None):
        _noise(seed).save(src / rel, format="PNG" if rel.endswith(".png") else "JPEG", quality=90)
    Image.new("L", (20, 10), 90).save(src / "Train/Real/gray.png")
    rgba = np.zeros((10, 20, 4), np.uint8)
    rgba[:, 10:] = (255, 0, 0, 255)  # left half fully transparent, right half opaque red
    Image.fromarray(rgba).save(src / "Train/Real/rgba.png")
    Image.fromarray(np.full((10, 20), 65535, np.uint16)).save(src / "Train/Real/deep16.png")
    (src / "Train/Real/zero.jpg").write_bytes(b"")
    _noise(99, (64, 64)).save(src / "Train/Real/half.jpg", quality=95)
    data = (src / "Train/Real/half.jpg").read_bytes()
    (src / "Train/Real/half.jpg").write_bytes(data[: len(data) // 2])
    (src / "Train/Real/notes.jpg").write_text("this is a text file with a .jpg name\n")
    Image.new("CMYK", (20, 10), (0, 255, 0, 0)).save(src / "Train/Fake/cmyk.jpg", quality=95)
    (src / "Train/Fake/huge.png").write_bytes(_png_declaring(20000, 20000))
    Image.new("RGB", (1, 1), (9, 9, 9)).save(src / "Train/Fake/dot.png")
    Image.fromarray(np.zeros((10, 20), np.float32)).save(src / "Train/Fake/float.tif")
    (src / "Validation/Fake").mkdir(parents=True)  # an empty class folder
    (src / "README.txt").write_text("downloaded from somewhere\n")  # no Test split at all


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("corpus") / "src"
    _build_corpus(src)
    return src


@pytest.fixture(scope="module")
def ingested(corpus, tmp_path_factory) -> tuple[Path, dict]:
    dest = tmp_path_factory.mktemp("out") / "data"
    return dest, ingest(corpus, dest, progress=False)


def _images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != REPORT_NAME)


def _flat_source(root: Path, names=("real", "fake"), n=(40, 60)) -> Path:
    for name, count in zip(names, n):
        (root / name).mkdir(parents=True)
        for i in range(count):
            _noise(zlib.crc32(f"{name}{i}".encode()), (8, 8)).save(root / name / f"{name}_{i:03d}.png")
    return root


def _assignment(report: dict) -> dict[str, str]:
    return {f["source"]: f["dest"].split("/")[0] for f in report["written_files"]}


# --- the broken-file corpus, already-split layout -----------------------------------------------


def test_every_bad_file_is_reported_with_its_reason(ingested):
    _, report = ingested
    got = {s["source"]: s["reason"] for s in report["skipped_files"]}
    assert got == BAD
    assert all(s["detail"] for s in report["skipped_files"])
    where = {s["source"]: (s["split"], s["label"]) for s in report["skipped_files"]}
    assert where["Train/Fake/huge.png"] == ("train", "fake")
    assert report["skipped_by_reason"] == {r: Counter(BAD.values()).get(r, 0) for r in REASONS}


def test_every_good_file_lands_in_dest_and_counts_add_up(ingested):
    dest, report = ingested
    sources = {f["source"] for f in report["written_files"]}
    assert sources == GOOD
    assert report["seen"] == len(EXPECTED)
    assert report["written"] == len(GOOD) == len(_images(dest))
    assert report["skipped"] == len(BAD)
    assert report["written"] + report["skipped"] == report["seen"]
    assert sum(n for split in report["counts"].values() for n in split.values()) == report["written"]
    for split in SPLITS:
        for label in LABELS:
            assert len(list((dest / split / label).iterdir())) == report["counts"][split][label]
    assert report["counts"]["train"] == {"real": 7, "fake": 4}
    assert report["counts"]["valid"] == {"real": 1, "fake": 0}
    assert report["counts"]["test"] == {"real": 0, "fake": 0}
    assert json.loads((dest / REPORT_NAME).read_text()) == report


def test_good_files_are_copied_byte_for_byte(ingested, corpus):
    dest, report = ingested
    copied = [f for f in report["written_files"] if f["method"] == "copied"]
    assert {f["source"] for f in copied} == {k for k, v in EXPECTED.items() if v is None}
    for f in copied:
        assert (dest / f["dest"]).read_bytes() == (corpus / f["source"]).read_bytes()


def test_modes_the_pipeline_cannot_read_are_converted_to_rgb_png(ingested):
    dest, report = ingested
    converted = {f["source"]: f for f in report["converted_files"]}
    assert set(converted) == {k for k, v in EXPECTED.items() if v == "converted"}
    assert report["written_by_method"] == {"copied": len(GOOD) - 3, "converted": 3, "reencoded": 0}
    assert "mode CMYK" in converted["Train/Fake/cmyk.jpg"]["why"]
    assert converted["Train/Real/deep16.png"]["mode"] in ("I;16", "I")
    for f in converted.values():
        assert f["dest"].endswith(".png")
        with Image.open(dest / f["dest"]) as img:
            assert (img.format, img.mode) == ("PNG", "RGB")
    with Image.open(dest / converted["Train/Real/deep16.png"]["dest"]) as img:
        assert img.getpixel((0, 0)) == (255, 255, 255)  # 65535 scaled to 255
    with Image.open(dest / converted["Train/Real/rgba.png"]["dest"]) as img:
        assert img.getpixel((0, 0)) == (255, 255, 255) and img.getpixel((15, 5)) == (255, 0, 0)
    with Image.open(dest / converted["Train/Fake/cmyk.jpg"]["dest"]) as img:
        r, g, b = img.getpixel((5, 5))
        assert r > 230 and g < 25 and b > 230  # magenta


def test_names_keep_stems_and_subfolders_and_never_clash(ingested):
    dest, report = ingested
    where = {f["source"]: f["dest"] for f in report["written_files"]}
    assert where["Train/Real/easy_12_0101.jpg"] == "train/real/easy_12_0101.jpg"
    assert where["Train/Real/sub/nested.jpg"] == "train/real/sub__nested.jpg"
    assert where["Validation/Real/good_v.jpg"] == "valid/real/good_v.jpg"
    fakes = {where[k].rsplit("/", 1)[1] for k in ("Train/Fake/face.jpg", "Train/Fake/FACE.JPG", "Train/Fake/face.png")}
    assert fakes == {"FACE.jpg", "face-2.jpg", "face.png"}  # files are taken in sorted order
    names = [p.name.lower() for p in _images(dest)]
    assert len(names) == len(set(names))


def test_missing_split_empty_class_folder_and_stray_files_are_reported(ingested):
    _, report = ingested
    warnings = "\n".join(report["warnings"])
    assert "'test'" in warnings  # no Test folder in the source
    assert "Validation/Fake" in warnings and "empty" in warnings
    assert {"path": "README.txt", "why": "file outside the class folders"} in report["ignored"]
    assert report["layout"] == "split" and report["split_from"] == "source"
    assert {(f["path"], f["split"], f["label"]) for f in report["folders"]} >= {
        ("Train/Real", "train", "real"),
        ("Validation/Fake", "valid", "fake"),
    }


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_reencode_gives_one_format_all_rgb(corpus, tmp_path, fmt):
    dest = tmp_path / "out"
    report = ingest(corpus, dest, reencode=fmt, quality=90, progress=False)
    files = _images(dest)
    assert len(files) == len(GOOD) == report["written"]
    assert report["written_by_method"] == {"copied": 0, "converted": 0, "reencoded": len(GOOD)}
    assert {p.suffix for p in files} == {".jpg" if fmt == "jpeg" else ".png"}
    for path in files:
        with Image.open(path) as img:
            img.load()
            assert img.format == fmt.upper() and img.mode == "RGB"
    assert {s["source"]: s["reason"] for s in report["skipped_files"]} == BAD
    fakes = sorted(p.name for p in (dest / "train" / "fake").iterdir())
    ext = ".jpg" if fmt == "jpeg" else ".png"
    assert fakes == sorted(["FACE" + ext, "cmyk" + ext, "face-2" + ext, "face-3" + ext])


# --- flat layouts ------------------------------------------------------------------------------


def test_flat_split_is_stratified_with_the_configured_fractions(tmp_path):
    src = _flat_source(tmp_path / "src", names=("training_real", "training_fake"))
    report = ingest(src, tmp_path / "out", valid_fraction=0.2, test_fraction=0.1, seed=7, progress=False)
    assert report["layout"] == "flat" and report["split_from"] == "seeded shuffle"
    assert report["counts"] == {
        "train": {"real": 28, "fake": 42},
        "valid": {"real": 8, "fake": 12},
        "test": {"real": 4, "fake": 6},
    }
    for f in report["written_files"]:  # labels come from the folder names
        assert f["dest"].split("/")[1] == ("real" if "training_real" in f["source"] else "fake")
    assert report["written"] == report["seen"] == 100


def test_flat_split_is_seeded(tmp_path):
    src = _flat_source(tmp_path / "src", names=("Real", "FAKE"))
    a = _assignment(ingest(src, tmp_path / "a", seed=3, progress=False))
    b = _assignment(ingest(src, tmp_path / "b", seed=3, progress=False))
    c = _assignment(ingest(src, tmp_path / "c", seed=4, progress=False))
    assert a == b
    assert a != c
    assert Counter(a.values()) == Counter(c.values())  # same sizes, different members
    assert sorted(p.relative_to(tmp_path / "a").as_posix() for p in _images(tmp_path / "a")) == sorted(
        p.relative_to(tmp_path / "b").as_posix() for p in _images(tmp_path / "b")
    )


def test_flat_split_counts_only_good_files_and_reports_bad_ones(tmp_path):
    src = _flat_source(tmp_path / "src", names=("real_images", "fake_images"), n=(20, 20))
    (src / "fake_images" / "broken.png").write_bytes(b"")
    report = ingest(src, tmp_path / "out", valid_fraction=0.25, test_fraction=0.25, progress=False)
    assert report["skipped_files"] == [
        {
            "source": "fake_images/broken.png",
            "split": None,
            "label": "fake",
            "reason": "zero_bytes",
            "detail": "the file is empty",
        }
    ]
    assert report["counts"]["test"] == {"real": 5, "fake": 5}
    assert report["seen"] == 41 and report["written"] == 40


def test_tiny_class_keeps_its_images_in_train_and_warns(tmp_path):
    src = _flat_source(tmp_path / "src", n=(1, 10))
    report = ingest(src, tmp_path / "out", progress=False)
    assert report["counts"]["train"]["real"] == 1
    assert any("none went to valid" in w for w in report["warnings"])


def test_upper_case_split_layout_and_val_alias(tmp_path):
    src = tmp_path / "src"
    for seed, rel in enumerate(("TRAIN/REAL", "TRAIN/FAKE", "Val/Real", "Val/Fake", "Test/real", "Test/fake")):
        (src / rel).mkdir(parents=True)
        _noise(seed, (40, 32)).save(src / rel / "x.jpg")
    report = ingest(src, tmp_path / "out", progress=False)
    assert report["counts"] == {s: {"real": 1, "fake": 1} for s in SPLITS}
    assert report["warnings"] == []


def test_split_words_in_class_folder_names(tmp_path):
    src = tmp_path / "src"
    for seed, name in enumerate(("train_real", "train_fake", "test_real", "test_fake")):
        (src / name).mkdir(parents=True)
        _noise(seed).save(src / name / "x.jpg")
    report = ingest(src, tmp_path / "out", progress=False)
    assert report["layout"] == "split"
    assert report["counts"]["train"] == {"real": 1, "fake": 1} and report["counts"]["test"] == {"real": 1, "fake": 1}
    assert any("valid/real" in w for w in report["warnings"])


def test_single_wrapper_folder_is_descended_into(tmp_path):
    src = tmp_path / "src"
    _flat_source(src / "archive" / "real_and_fake_face", names=("training_real", "training_fake"), n=(10, 10))
    report = ingest(src, tmp_path / "out", progress=False)
    assert report["written"] == 20
    assert report["folders"][0]["path"] == "archive/real_and_fake_face/training_real"
    assert report["notes"]


def test_duplicate_files_are_reported(tmp_path):
    src = _flat_source(tmp_path / "src", n=(10, 10))
    (src / "fake" / "copy_of_real.png").write_bytes((src / "real" / "real_003.png").read_bytes())
    report = ingest(src, tmp_path / "out", progress=False)
    assert len(report["duplicates"]) == 1
    assert {f["source"] for f in report["duplicates"][0]["files"]} == {"real/real_003.png", "fake/copy_of_real.png"}
    assert report["duplicates"][0]["md5"] == hashlib.md5((src / "real" / "real_003.png").read_bytes()).hexdigest()
    assert any("both labels" in w for w in report["warnings"])


def test_identical_files_in_a_flat_folder_land_in_one_split(tmp_path):
    src = _flat_source(tmp_path / "src", n=(20, 20))
    for k in range(4):  # one real image five times, one fake image three times
        (src / "real" / f"again_{k}.png").write_bytes((src / "real" / "real_005.png").read_bytes())
    for k in range(2):
        (src / "fake" / f"again_{k}.png").write_bytes((src / "fake" / "fake_007.png").read_bytes())
    held_out = set()
    for seed in range(6):
        report = ingest(
            src, tmp_path / f"out{seed}", valid_fraction=0.25, test_fraction=0.25, seed=seed, progress=False
        )
        where = _assignment(report)
        assert report["written"] == 46 and len(report["duplicates"]) == 2
        for group in report["duplicates"]:
            splits = {where[f["source"]] for f in group["files"]}
            assert len(splits) == 1, (seed, group)
            held_out |= splits - {"train"}
        assert not any("leakage" in w for w in report["warnings"])
        for label, n in (("real", 24), ("fake", 22)):  # no holdout over its share, train the rest
            assert report["counts"]["valid"][label] <= round(n * 0.25 + 0.01)
            assert report["counts"]["test"][label] <= round(n * 0.25 + 0.01)
    assert held_out == {"valid", "test"}  # duplicates are not simply parked in train


# --- refusals ------------------------------------------------------------------------------------


def test_non_empty_dest_is_refused(corpus, tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        ingest(corpus, dest, progress=False)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]


def test_empty_existing_dest_is_fine(corpus, tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    assert ingest(corpus, dest, progress=False)["written"] == len(GOOD)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftover work folder


def test_unrecognised_layout_says_what_is_accepted_and_what_was_found(tmp_path):
    src = tmp_path / "src"
    for name in ("cats", "dogs"):
        (src / name).mkdir(parents=True)
    (src / "x.jpg").write_bytes(b"")
    with pytest.raises(ValueError) as err:
        ingest(src, tmp_path / "out", progress=False)
    message = str(err.value)
    assert "accepted layouts" in message and "train" in message and "real" in message
    assert "cats/" in message and "dogs/" in message and "1 file" in message
    assert not (tmp_path / "out").exists()


def test_ambiguous_and_duplicate_folders_are_refused(tmp_path):
    src = tmp_path / "mixed"
    (src / "train" / "real").mkdir(parents=True)
    (src / "fake").mkdir()
    with pytest.raises(ValueError, match="ambiguous"):
        ingest(src, tmp_path / "a", progress=False)
    src = tmp_path / "twice"
    (src / "Real").mkdir(parents=True)
    (src / "real_images").mkdir()
    with pytest.raises(ValueError, match="several folders map to class 'real'"):
        ingest(src, tmp_path / "b", progress=False)
    src = tmp_path / "twosplits"
    (src / "val" / "real").mkdir(parents=True)
    (src / "validation" / "real").mkdir(parents=True)
    with pytest.raises(ValueError, match="split 'valid'"):
        ingest(src, tmp_path / "c", progress=False)


def test_bad_arguments_are_refused(corpus, tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        ingest(tmp_path / "nope", tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="sum below 1"):
        ingest(corpus, tmp_path / "out", valid_fraction=0.6, test_fraction=0.5, progress=False)
    with pytest.raises(ValueError, match="reencode"):
        ingest(corpus, tmp_path / "out", reencode="gif", progress=False)
    with pytest.raises(ValueError, match="inside the source"):
        ingest(corpus, corpus / "out", progress=False)


def test_images_inference_would_flag_are_kept_listed_and_warned_about(tmp_path):
    """The same size rules as inference's row warnings: small (upscaled) and elongated (squashed)."""
    src = tmp_path / "src"
    for label in ("real", "fake"):
        (src / label).mkdir(parents=True)
        for i in range(6):
            _noise(zlib.crc32(f"{label}{i}".encode()), (48, 40)).save(src / label / f"{i}.png")
    _noise(1, size=(20, 40)).save(src / "real" / "tiny.png")
    _noise(2, size=(200, 40)).save(src / "fake" / "banner.png")
    report = ingest(src, tmp_path / "out", progress=False)
    assert report["written"] == 14  # kept: the model should see what it will be asked about
    (small,) = report["odd_sizes"]["small"]
    (elongated,) = report["odd_sizes"]["elongated"]
    assert small.endswith("tiny.png") and elongated.endswith("banner.png")
    assert (tmp_path / "out" / small).is_file() and (tmp_path / "out" / elongated).is_file()
    warnings = "\n".join(report["warnings"])
    assert "1 written image(s) under 32 px a side" in warnings and "beyond 4:1" in warnings
    saved = json.loads((tmp_path / "out" / REPORT_NAME).read_text())
    assert saved["odd_sizes"] == report["odd_sizes"]


def test_an_os_error_while_writing_is_one_line_and_leaves_no_dest(corpus, tmp_path):
    """On a full disk ingest once printed a raw traceback. Here the file-size limit of the
    process (RLIMIT_FSIZE: writes past 1 KB fail with EFBIG, as ENOSPC would on a full disk)."""
    import resource
    import subprocess

    from project_commands import BIN, command_env

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    root = Path(__file__).resolve().parents[2]
    dest = tmp_path / "data"
    done = subprocess.run(
        [str(BIN / "deepfake-detect"), "ingest", str(corpus), str(dest), "--params", str(root / "params.yaml")],
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit_file_size,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"Error: ingest stopped, {dest} was not written: File too large: "), done.stderr
    assert "Traceback" not in done.stderr
    assert not dest.exists() and list(tmp_path.iterdir()) == []
