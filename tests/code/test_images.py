"""Image helpers: mode conversion to 8-bit RGB, strict decoding, size limits, encoding."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from deepfake_detection.data import decode, images
from deepfake_detection.data.images import (
    MAX_PIXELS,
    REASONS,
    SUPPORTED_MODES,
    ImageError,
    UnsupportedModeError,
    encode,
    inspect_image,
    load_rgb,
    to_rgb,
)


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims ``width x height`` (8-bit RGB) with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def rgb_of(img: Image.Image) -> np.ndarray:
    out = to_rgb(img)
    assert out.mode == "RGB" and out.size == img.size
    return np.asarray(out)


# --- to_rgb, mode by mode -------------------------------------------------------------------


def test_rgb_is_returned_unchanged():
    img = Image.new("RGB", (3, 2), (10, 20, 30))
    assert to_rgb(img) is img


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("L", 77, (77, 77, 77)),
        ("1", 1, (255, 255, 255)),
        ("1", 0, (0, 0, 0)),
        ("CMYK", (0, 255, 0, 0), (255, 0, 255)),  # full magenta ink
        ("CMYK", (0, 0, 0, 255), (0, 0, 0)),
        ("YCbCr", (255, 128, 128), (255, 255, 255)),
        ("HSV", (0, 255, 255), (255, 0, 0)),
        ("RGBX", (1, 2, 3, 0), (1, 2, 3)),
    ],
)
def test_direct_modes(mode, value, expected):
    assert tuple(rgb_of(Image.new(mode, (2, 2), value))[0, 0]) == expected


def test_lab_white_is_white():
    assert np.abs(rgb_of(Image.new("LAB", (1, 1), (255, 128, 128))).astype(int) - 255).max() <= 2


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L", "I"])
def test_sixteen_bit_is_scaled_not_clipped(mode):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    if mode == "I":
        img = Image.fromarray(values.astype(np.int32))
    else:
        dtype = ">u2" if mode == "I;16B" else "<u2"
        img = Image.frombytes(mode, (4, 1), values.astype(dtype).tobytes())
    assert img.mode == mode
    out = rgb_of(img)
    assert out.dtype == np.uint8
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_sixteen_bit_png_file_round_trip(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 5), 65535, np.uint16)).save(path)
    with Image.open(path) as img:
        assert img.mode in ("I;16", "I")
    arr = load_rgb(path)
    assert arr.shape == (4, 5, 3) and arr.dtype == np.uint8 and (arr == 255).all()


def test_mode_i_out_of_range_is_clipped():
    img = Image.fromarray(np.array([[-5, 70000]], dtype=np.int32))
    assert img.mode == "I"
    assert rgb_of(img)[0, :, 0].tolist() == [0, 255]


def test_rgba_is_composited_on_white():
    arr = np.array([[[255, 0, 0, 0], [255, 0, 0, 255], [0, 0, 0, 128]]], dtype=np.uint8)
    out = rgb_of(Image.fromarray(arr))
    assert out[0, 0].tolist() == [255, 255, 255]  # fully transparent -> white
    assert out[0, 1].tolist() == [255, 0, 0]  # opaque stays
    assert all(abs(v - 127) <= 1 for v in out[0, 2])  # half-transparent black -> mid grey


@pytest.mark.parametrize("mode", ["LA", "La", "PA", "RGBa"])
def test_other_alpha_modes_composite_on_white(mode):
    base = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    base.putpixel((1, 0), (0, 0, 0, 255))
    img = base.convert(mode) if mode not in ("La",) else base.convert("LA").convert("La")
    assert img.mode == mode
    out = rgb_of(img)
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [0, 0, 0]


def test_palette_with_and_without_transparency():
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    assert rgb_of(pal).tolist() == [[[0, 0, 0], [200, 10, 10]]]
    pal.info["transparency"] = 0
    assert rgb_of(pal).tolist() == [[[255, 255, 255], [200, 10, 10]]]


def test_palette_png_with_transparency_from_file(tmp_path):
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    pal.putpixel((1, 0), 1)
    path = tmp_path / "p.png"
    pal.save(path, transparency=0)
    assert load_rgb(path).tolist() == [[[255, 255, 255], [200, 10, 10]]]


def test_float_mode_is_unsupported():
    img = Image.fromarray(np.zeros((2, 2), np.float32))
    assert img.mode == "F" and "F" not in SUPPORTED_MODES
    with pytest.raises(UnsupportedModeError) as info:
        to_rgb(img)
    assert info.value.reason == "unsupported_mode" and isinstance(info.value, ValueError)


# --- inspect_image ----------------------------------------------------------------------------


def _noise_jpeg(path: Path, size=(64, 48)) -> bytes:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)
    return path.read_bytes()


def test_good_jpeg(tmp_path):
    _noise_jpeg(tmp_path / "a.jpg")
    info = inspect_image(tmp_path / "a.jpg")
    assert info.ok and info.reason is None
    assert (info.format, info.mode, info.width, info.height, info.orientation) == ("JPEG", "RGB", 64, 48, 1)


def test_bad_files_get_their_reason(tmp_path):
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not really a picture\n")
    data = _noise_jpeg(tmp_path / "full.jpg")
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    Image.fromarray(np.zeros((3, 3), np.float32)).save(tmp_path / "float.tif")
    expected = {
        "zero.jpg": "zero_bytes",
        "text.jpg": "not_an_image",
        "half.jpg": "truncated",
        "float.tif": "unsupported_mode",
    }
    for name, reason in expected.items():
        info = inspect_image(tmp_path / name)
        assert not info.ok and info.reason == reason, (name, info)
        assert info.reason in REASONS and info.detail
    assert inspect_image(tmp_path / "missing.png").reason == "unreadable"
    assert inspect_image(tmp_path / "float.tif").mode == "F"


def test_truncated_even_when_pillow_is_told_to_tolerate_it(tmp_path, monkeypatch):
    data = _noise_jpeg(tmp_path / "full.jpg")
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert inspect_image(tmp_path / "half.jpg").reason == "truncated"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored afterwards
    with pytest.raises(ImageError, match="truncated"):
        load_rgb(tmp_path / "half.jpg")


def test_truncated_png(tmp_path):
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
    assert inspect_image(tmp_path / "half.png").reason == "truncated"


def test_bytes_are_inspected_as_their_file(tmp_path):
    """One inspection for files and shard records: the encoded bytes get the file's verdict."""
    data = _noise_jpeg(tmp_path / "full.jpg")
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("not really a picture\n")
    Image.new("RGB", (5, 40)).save(tmp_path / "thin.png")
    Image.fromarray(np.zeros((3, 3), np.float32)).save(tmp_path / "float.tif")
    (tmp_path / "huge.png").write_bytes(png_declaring(9000, 9000))
    for name in ("full.jpg", "half.jpg", "text.jpg", "thin.png", "float.tif", "huge.png"):
        from_file, from_bytes = inspect_image(tmp_path / name), inspect_image((tmp_path / name).read_bytes())
        assert from_bytes == from_file, name
    assert inspect_image(tmp_path / "thin.png").reason == "too_small"
    assert inspect_image(b"").reason == "zero_bytes"


@pytest.mark.parametrize("side", [20000, 9000])  # above Pillow's own guard / only above ours
def test_declared_huge_image_is_refused_before_decoding(tmp_path, monkeypatch, side):
    assert side * side > MAX_PIXELS
    path = tmp_path / "huge.png"
    path.write_bytes(png_declaring(side, side))
    assert path.stat().st_size < 200
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self) or real_load(self))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # our limit holds even with Pillow's off
    info = inspect_image(path)
    assert not info.ok and info.reason == "too_large"
    assert (info.width, info.height) == (side, side)
    assert decoded == []
    with pytest.raises(ImageError) as err:
        load_rgb(path)
    assert err.value.reason == "too_large" and decoded == []


def test_pillow_bomb_guard_also_counts_as_too_large(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(png_declaring(20000, 20000))
    assert inspect_image(path).reason == "too_large"
    assert inspect_image(path, max_pixels=10**12).reason == "too_large"  # Pillow's guard, from the header


def test_max_pixels_is_a_parameter(tmp_path):
    Image.new("RGB", (20, 10)).save(tmp_path / "a.png")
    assert inspect_image(tmp_path / "a.png", max_pixels=200).ok
    assert inspect_image(tmp_path / "a.png", max_pixels=199).reason == "too_large"


# --- load_rgb and encode --------------------------------------------------------------------------


def test_load_rgb_of_modes(tmp_path):
    Image.new("L", (5, 4), 9).save(tmp_path / "g.png")
    Image.new("CMYK", (5, 4), (0, 0, 0, 0)).save(tmp_path / "c.jpg")
    for name in ("g.png", "c.jpg"):
        arr = load_rgb(tmp_path / name)
        assert arr.shape == (4, 5, 3) and arr.dtype == np.uint8
    assert (load_rgb(tmp_path / "g.png") == 9).all()
    assert (load_rgb(tmp_path / "c.jpg") >= 250).all()


def test_load_rgb_applies_exif_orientation(tmp_path):
    img = Image.new("RGB", (6, 2), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert inspect_image(tmp_path / "r.jpg").orientation == 6
    assert load_rgb(tmp_path / "r.jpg").shape == (6, 2, 3)
    assert load_rgb(tmp_path / "r.jpg", exif_transpose=False).shape == (2, 6, 3)


@pytest.mark.parametrize("fmt", ["jpeg", "JPG", "png"])
def test_encode_round_trip(fmt):
    arr = np.zeros((8, 8, 3), np.uint8)
    arr[:, 4:] = 200
    data = encode(arr, fmt, quality=95)
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == ("PNG" if fmt == "png" else "JPEG") and img.mode == "RGB"
        out = np.asarray(img)
    assert np.abs(out.astype(int) - arr).max() <= (0 if fmt == "png" else 12)


def test_encode_converts_modes_and_is_deterministic():
    img = Image.fromarray(np.full((3, 3), 65535, np.uint16))
    assert encode(img, "png") == encode(img, "png")
    with Image.open(io.BytesIO(encode(img, "png"))) as out:
        assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255)


def test_encode_rejects_bad_arguments():
    arr = np.zeros((2, 2, 3), np.uint8)
    with pytest.raises(ValueError, match="format"):
        encode(arr, "gif")
    with pytest.raises(ValueError, match="quality"):
        encode(arr, "jpeg", quality=0)
    with pytest.raises(ValueError, match="uint8"):
        encode(arr.astype(np.float32), "png")


def test_reasons_vocabulary_is_fixed():
    assert set(REASONS) == {
        "zero_bytes",
        "not_an_image",
        "truncated",
        "unsupported_mode",
        "too_large",
        "too_small",
        "unreadable",
    }
    assert images.MAX_PIXELS == 8192 * 8192


# --- check_encoded: the header checks inference makes before decoding -----------------------


def encoded(size: tuple[int, int], fmt: str = "PNG", mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 0).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("side", [20000, 9000])  # above Pillow's own guard / only above ours
def test_check_encoded_refuses_too_many_pixels_from_the_header(monkeypatch, side):
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self) or real_load(self))
    found = decode.check_encoded(png_declaring(side, side))
    assert found.error.startswith("image too large") and found.warning is None
    assert decoded == []
    found = decode.check_encoded(encoded((40, 30)), max_pixels=1199)
    assert found.error == "image too large: 40x30 = 1,200 pixels > the limit of 1,199"
    assert decode.check_encoded(encoded((40, 30)), max_pixels=1200).error is None


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "WEBP"])
def test_check_encoded_accepts_what_the_decoder_reads(fmt):
    found = decode.check_encoded(encoded((48, 40), fmt))
    assert found.error is None and found.warning is None and (found.width, found.height) == (48, 40)


def test_check_encoded_refuses_other_formats_and_non_images():
    assert decode.check_encoded(encoded((48, 40), "TIFF")).error.startswith("unsupported image format TIFF")
    assert decode.check_encoded(b"plain text").error == "not a decodable image: no image format recognises it"
    assert decode.check_encoded(b"").error == "not a decodable image: empty content"


def test_check_encoded_small_and_elongated_images():
    assert decode.check_encoded(encoded((1, 1))).error == "image too small: 1x1 pixels, at least 8 a side needed"
    assert decode.check_encoded(encoded((7, 100))).error.startswith("image too small: 7x100")
    small = decode.check_encoded(encoded((images.MIN_SIDE, images.MIN_SIDE)))
    assert small.error is None and small.warning.startswith("small image (8x8 pixels")
    long = decode.check_encoded(encoded((8000, 40)))
    assert long.error is None and long.warning.startswith("elongated image (8000x40 pixels, sides 200.0:1")
    both = decode.check_encoded(encoded((30, 8000)))
    assert both.error is None and "small image" in both.warning and "elongated image" in both.warning
    assert decode.check_encoded(encoded((32, 128))).warning is None  # 4:1 and 32 px: still fine
    assert decode.check_encoded(encoded((31, 124))).warning.startswith("small image")


def test_decode_rgb_reads_bytes_as_load_rgb_reads_the_file(tmp_path):
    """The face path decodes the photo from bytes exactly as ``ingest --faces`` decodes a file:
    EXIF orientation applied, alpha over white; bad bytes raise ImageError."""
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "turned.jpg", quality=95, exif=exif)
    Image.fromarray(rng.integers(0, 256, (12, 16, 4), dtype=np.uint8), "RGBA").save(tmp_path / "alpha.png")
    for name in ("turned.jpg", "alpha.png"):
        data = (tmp_path / name).read_bytes()
        np.testing.assert_array_equal(images.decode_rgb(data), images.load_rgb(tmp_path / name))
    assert images.decode_rgb((tmp_path / "turned.jpg").read_bytes()).shape == (30, 20, 3)  # upright
    with pytest.raises(images.ImageError) as err:
        images.decode_rgb(b"not an image")
    assert err.value.reason == "not_an_image" and err.value.path is None
    with pytest.raises(images.ImageError) as err:
        images.decode_rgb(png_declaring(9000, 9000))
    assert err.value.reason == "too_large"


# --- animated files: decoding costs frames x pixels ---------------------------------------------


def test_an_animated_image_is_budgeted_by_frames_times_pixels_from_its_header(tmp_path, monkeypatch):
    """An 80-frame 8192² GIF (4 MB) once passed the width x height check and took ~16 GB to
    decode: the model's decoder decodes every frame. The header now counts every frame."""
    from bombs import animated_gif

    gif = animated_gif(5, 64)  # 5 x 4,096 = 20,480 pixels to decode
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self) or real_load(self))
    found = decode.check_encoded(gif, max_pixels=20_479)
    assert found.error == (
        "image too large: 5 frames of 64x64 = 20,480 pixels to decode > the limit of 20,479 "
        "(an animated image is scored on its first frame, but every frame is decoded)"
    )
    assert decoded == [] and found.frames == 5 and found.pixels == 20_480
    assert decode.check_encoded(gif, max_pixels=20_480).error is None
    (tmp_path / "anim.gif").write_bytes(gif)
    info = inspect_image(tmp_path / "anim.gif", max_pixels=20_479)  # ingest refuses it too
    assert not info.ok and info.reason == "too_large" and "5 frames of 64x64" in info.detail
    assert inspect_image(tmp_path / "anim.gif", max_pixels=20_480).ok


def test_the_80_frame_8192_gif_is_refused_from_its_header_in_a_fraction_of_a_second():
    import time

    from bombs import animated_gif

    gif = animated_gif(80, 8192)
    assert len(gif) < 8 * 1024 * 1024
    start = time.monotonic()
    found = decode.check_encoded(gif)
    assert time.monotonic() - start < 2
    assert found.error.startswith("image too large: 80 frames of 8192x8192 = 5,368,709,120 pixels to decode")
