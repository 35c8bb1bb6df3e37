"""Decompression bombs built cheaply for tests: an animated GIF whose every frame covers a huge
canvas, written in a second or two as a small file (the frames share one LZW-compressed block)."""

from __future__ import annotations

import io

from PIL import Image


def animated_gif(frames: int, side: int) -> bytes:
    """A ``frames``-frame GIF of ``side`` x ``side`` uniform frames. Pillow encodes one frame;
    its image block is repeated, so 80 frames of 8192 x 8192 take ~4 MB and ~3 s to build, and
    decoding every frame (what ``tf.io.decode_image`` does) would take frames x side² x 3 bytes."""
    buffer = io.BytesIO()
    Image.new("L", (side, side), 0).save(buffer, "GIF")
    data = buffer.getvalue()
    flags = data[10]
    pos = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)  # header + global colour table
    head = b"GIF89a" + data[6:pos]
    while data[pos] == 0x21:  # extension blocks: introducer, label, sub-blocks
        pos = _skip_blocks(data, pos + 2)
    assert data[pos] == 0x2C, "expected an image descriptor"
    start = pos
    pos = _skip_blocks(data, pos + 11)  # descriptor (10 bytes) + LZW minimum code size
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # an animation that loops
    return head + loop + data[start:pos] * frames + b"\x3b"


def _skip_blocks(data: bytes, pos: int) -> int:
    while data[pos]:
        pos += data[pos] + 1
    return pos + 1
