"""PNG bytes from raw RGB pixels, grey where every pixel is grey (a receipt always is).

pygame's own PNG save holds the interpreter lock for all of its 10-13 ms per receipt, stalling
every other thread of an ATM; zlib compresses without it, in a tenth of the time.
"""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
GREY = 0  # PNG colour types
RGB = 2
COMPRESSION_LEVEL = 6


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(width: int, height: int, rgb: bytes) -> bytes:
    """An 8-bit PNG of `rgb` (rows top to bottom, 3 bytes a pixel): grey if red, green and blue
    are equal in every pixel, RGB otherwise."""
    if width < 1 or height < 1 or len(rgb) != width * height * 3:
        raise ValueError(f"{len(rgb)} bytes of RGB for a {width} x {height} image")
    red = rgb[0::3]
    grey = red == rgb[1::3] == rgb[2::3]
    pixels, colour_type, row_bytes = (red, GREY, width) if grey else (rgb, RGB, width * 3)
    # Each row is preceded by its filter type; 0 (none) is cheapest here and compresses well on
    # paper that is mostly white.
    rows = bytearray()
    for start in range(0, len(pixels), row_bytes):
        rows += b"\x00"
        rows += pixels[start : start + row_bytes]
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"".join(
        (
            SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(bytes(rows), COMPRESSION_LEVEL)),
            _chunk(b"IEND", b""),
        )
    )
