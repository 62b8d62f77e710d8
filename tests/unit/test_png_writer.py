"""The PNG writer: a thermal printer's dots, one bit each, load back dot for dot."""

from __future__ import annotations

import io
import os
import random
import struct
import zlib

import pytest

from peripherals.png_writer import GREY, INK, PAPER, encode_png
from peripherals.receipt_render import MARGIN, PrintedImage, PrintedLine, render_png

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
pygame = pytest.importorskip("pygame")

BLACK, WHITE = b"\x00\x00\x00", b"\xff\xff\xff"


def depth_and_colour_type(png: bytes) -> tuple[int, int]:
    assert png[12:16] == b"IHDR"
    return png[24], png[25]


def loaded_rgb(png: bytes) -> tuple[tuple[int, int], bytes]:
    surface = pygame.image.load(io.BytesIO(png), "image.png")
    return surface.get_size(), pygame.image.tobytes(surface, "RGB")


# 40 dots fill five bytes a row; 37 leave three bits of each row's last byte to pad.
@pytest.mark.parametrize("width", [40, 37, 1])
def test_dots_are_written_one_bit_each_and_load_back_black_and_white(width: int) -> None:
    coin = random.Random(width)
    height = 11
    dots = bytes(coin.choice((PAPER, INK)) for _ in range(width * height))
    png = encode_png(width, height, dots)
    assert depth_and_colour_type(png) == (1, GREY)
    expected = b"".join(BLACK if dot == INK else WHITE for dot in dots)
    assert loaded_rgb(png) == ((width, height), expected)


def test_a_dot_that_is_neither_paper_nor_ink_is_refused() -> None:
    with pytest.raises(ValueError, match="PAPER"):
        encode_png(2, 1, bytes([PAPER, 2]))


def test_every_chunk_carries_its_crc() -> None:
    png = encode_png(2, 2, b"\x00" * 4)
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
    with pytest.raises(ValueError, match="dots for a"):
        encode_png(width, height, b"\x00" * size)


def test_a_drawn_receipt_is_black_dots_on_white_paper() -> None:
    png = render_png([PrintedLine("WITHDRAWAL EUR 50.00", bold=True), PrintedLine("THANK YOU")])
    assert depth_and_colour_type(png) == (1, GREY)
    (width, height), rgb = loaded_rgb(png)
    assert width == 42 * 12 + 2 * 8 and height > 2 * 24
    pixels = {rgb[i : i + 3] for i in range(0, len(rgb), 3)}
    assert pixels == {BLACK, WHITE}  # ink on paper, and no grey a thermal head cannot burn


def test_a_raster_image_keeps_its_leftmost_dot_in_the_high_bit() -> None:
    image = PrintedImage(width_bytes=1, height=2, data=b"\x81\x40")  # 10000001, 01000000
    (width, _), rgb = loaded_rgb(render_png([image], cut=False))

    def dot(x: int, y: int) -> bytes:
        at = ((MARGIN + y) * width + MARGIN + x) * 3
        return rgb[at : at + 3]

    assert [dot(x, 0) for x in range(8)] == [BLACK] + [WHITE] * 6 + [BLACK]
    assert [dot(x, 1) for x in range(8)] == [WHITE, BLACK] + [WHITE] * 6
