"""PNG bytes of a thermal printer's paper: one bit a dot, black where it burnt a dot, else white.

One bit a dot instead of three bytes of RGB: a receipt's image is built and compressed in a
fraction of a millisecond, a short hold of the interpreter lock beside the ATM's other threads.
"""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
GREY = 0  # PNG colour type; at one bit a pixel 0 is black and 1 white
BIT_DEPTH = 1
PAPER, INK = 0, 1  # what each byte of `dots` says of its dot
# Dots as the binary digits of one integer, ink 0 and paper 1: int(text, 2) packs them eight a
# byte in C, where a Python loop over 160,000 dots would take milliseconds.
_AS_BINARY_DIGITS = bytes.maketrans(bytes([PAPER, INK]), b"10")
COMPRESSION_LEVEL = 6


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _packed_rows(width: int, dots: bytes) -> list[bytes]:
    """Each row of dots as whole bytes of eight dots, padded on the right with paper."""
    padding = -width % 8
    if padding:
        pad = bytes([PAPER]) * padding
        dots = b"".join(dots[i : i + width] + pad for i in range(0, len(dots), width))
    digits = dots.translate(_AS_BINARY_DIGITS)
    row_bytes = (width + padding) // 8
    packed = int(digits, 2).to_bytes(len(digits) // 8, "big")
    return [packed[i : i + row_bytes] for i in range(0, len(packed), row_bytes)]


def encode_png(width: int, height: int, dots: bytes) -> bytes:
    """A 1-bit grey PNG of `dots` (rows top to bottom, one byte a dot: PAPER or INK)."""
    if width < 1 or height < 1 or len(dots) != width * height:
        raise ValueError(f"{len(dots)} dots for a {width} x {height} image")
    if dots.translate(None, bytes([PAPER, INK])):
        raise ValueError("dots must each be PAPER (0) or INK (1)")
    # Each row is preceded by its filter type; 0 (none) is cheapest, and paper that is mostly
    # white compresses well without one.
    rows = b"\x00" + b"\x00".join(_packed_rows(width, dots))
    header = struct.pack(">IIBBBBB", width, height, BIT_DEPTH, GREY, 0, 0, 0)
    return b"".join(
        (
            SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(rows, COMPRESSION_LEVEL)),
            _chunk(b"IEND", b""),
        )
    )
