"""The PNG writer: what it writes loads back pixel for pixel, grey when it can be, else RGB."""

from __future__ import annotations

import io
import os
import random
import struct
import zlib

import pytest

from peripherals.png_writer import GREY, RGB, encode_png
from peripherals.receipt_render import PrintedLine, render_png

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
pygame = pytest.importorskip("pygame")


def colour_type(png: bytes) -> int:
    assert png[12:16] == b"IHDR"
    depth, kind = png[24], png[25]
    assert depth == 8
    return kind


def loaded_rgb(png: bytes) -> tuple[tuple[int, int], bytes]:
    surface = pygame.image.load(io.BytesIO(png), "image.png")
    return surface.get_size(), pygame.image.tobytes(surface, "RGB")


def test_grey_pixels_are_written_grey_and_load_back_unchanged() -> None:
    shades = random.Random(7)
    width, height = 37, 11  # odd sizes: rows are not padded
    rgb = b"".join(bytes([v, v, v]) for v in (shades.randrange(256) for _ in range(width * height)))
    png = encode_png(width, height, rgb)
    assert colour_type(png) == GREY
    assert loaded_rgb(png) == ((width, height), rgb)


def test_one_coloured_pixel_makes_the_image_rgb_and_it_loads_back_unchanged() -> None:
    width, height = 5, 4
    rgb = bytearray(b"\xff" * width * height * 3)
    rgb[3 * 7 : 3 * 7 + 3] = b"\xc0\x10\x20"
    png = encode_png(width, height, bytes(rgb))
    assert colour_type(png) == RGB
    assert loaded_rgb(png) == ((width, height), bytes(rgb))


def test_every_chunk_carries_its_crc() -> None:
    png = encode_png(2, 2, b"\x00" * 12)
    offset, kinds = 8, []
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind, data = png[offset + 4 : offset + 8], png[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", png[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + data), kind
        kinds.append(kind)
        offset += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]


@pytest.mark.parametrize(("width", "height", "size"), [(0, 1, 0), (2, 2, 11), (1, 1, 4)])
def test_pixels_that_do_not_fill_the_image_are_refused(width: int, height: int, size: int) -> None:
    with pytest.raises(ValueError, match="bytes of RGB"):
        encode_png(width, height, b"\x00" * size)


def test_a_drawn_receipt_is_a_grey_png_of_the_paper() -> None:
    png = render_png([PrintedLine("WITHDRAWAL EUR 50.00"), PrintedLine("THANK YOU")])
    assert colour_type(png) == GREY
    (width, height), rgb = loaded_rgb(png)
    assert width == 42 * 12 + 2 * 8 and height > 2 * 24
    assert 0 < rgb.count(0) < len(rgb)  # ink on white paper
