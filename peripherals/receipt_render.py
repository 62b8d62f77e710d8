"""What a receipt printer put on paper, as elements, and how to show it: as text and as a PNG.

Text keeps the printer's columns (aligned with spaces); the PNG draws text, images and codes in
dots, black or white, as a thermal head burns them (no grey, no smoothing).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from peripherals.png_writer import INK, PAPER, encode_png
from peripherals.wire.escpos import Align

#: Font A is 12 x 24 dots; a text line takes 24 dots of paper height plus spacing.
DOT_WIDTH = 12
LINE_DOTS = 24
MARGIN = 8
#: A PNG taller than this shows the receipt's first part only (a 2000-line roll is 48000 dots).
MAX_PNG_HEIGHT = 8000

BARCODE_NAMES = {
    0: "UPC-A",
    1: "UPC-E",
    2: "EAN13",
    3: "EAN8",
    4: "CODE39",
    5: "ITF",
    6: "CODABAR",
    65: "UPC-A",
    66: "UPC-E",
    67: "EAN13",
    68: "EAN8",
    69: "CODE39",
    70: "ITF",
    71: "CODABAR",
    72: "CODE93",
    73: "CODE128",
    74: "GS1-128",
    75: "GS1 DATABAR",
    76: "GS1 DATABAR",
    77: "GS1 DATABAR",
    78: "GS1 DATABAR",
}
SYMBOL_NAMES = {
    48: "PDF417",
    49: "QR",
    50: "MAXICODE",
    51: "GS1 DATABAR",
    52: "COMPOSITE",
    53: "AZTEC",
    54: "DATAMATRIX",
}


@dataclass(frozen=True)
class PrintedLine:
    text: str
    align: Align = Align.LEFT
    bold: bool = False
    underline: bool = False
    width: int = 1
    height: int = 1


@dataclass(frozen=True)
class PrintedImage:
    """A 1-bit raster image: rows of `width_bytes`, MSB leftmost; `data` None if not kept."""

    width_bytes: int
    height: int
    data: bytes | None
    align: Align = Align.LEFT
    scale_x: int = 1
    scale_y: int = 1


@dataclass(frozen=True)
class PrintedBarcode:
    system: int
    data: bytes
    height: int = 162
    hri: int = 0
    align: Align = Align.LEFT

    @property
    def name(self) -> str:
        return BARCODE_NAMES.get(self.system, f"TYPE {self.system}")


@dataclass(frozen=True)
class PrintedSymbol:
    symbol: int
    data: bytes
    module: int = 3
    align: Align = Align.LEFT

    @property
    def name(self) -> str:
        return SYMBOL_NAMES.get(self.symbol, f"SYMBOL {self.symbol}")


Element = PrintedLine | PrintedImage | PrintedBarcode | PrintedSymbol


def paper_lines(element: Element) -> int:
    """Text lines of paper an element uses (at least one)."""
    if isinstance(element, PrintedLine):
        return max(1, element.height)
    if isinstance(element, PrintedImage):
        dots = element.height * element.scale_y
    elif isinstance(element, PrintedBarcode):
        dots = element.height + (LINE_DOTS if element.hri else 0)
    else:
        dots = element.module * 29  # a small QR code is 21..29 modules with its quiet zone
    return max(1, -(-dots // LINE_DOTS))


def _placeholder(element: Element) -> str:
    if isinstance(element, PrintedImage):
        return f"[image {element.width_bytes * 8 * element.scale_x}x{element.height}]"
    if isinstance(element, PrintedBarcode):
        return f"[barcode {element.name} {element.data.decode('latin-1')}]"
    if isinstance(element, PrintedSymbol):
        return f"[{element.name} {element.data.decode('utf-8', 'replace')}]"
    return element.text


def _aligned(text: str, width: int, align: Align, columns: int) -> str:
    used = len(text) * width
    if align is Align.CENTER:
        pad = max(0, (columns - used) // 2)
    elif align is Align.RIGHT:
        pad = max(0, columns - used)
    else:
        pad = 0
    return (" " * pad + text).rstrip()


def render_text(elements: Sequence[Element], columns: int = 42) -> str:
    """The receipt as plain text: one line per printed line, aligned with spaces.

    Images, barcodes and 2D codes show as one bracketed line, e.g. `[QR https://x]`.
    """
    out: list[str] = []
    for element in elements:
        width = element.width if isinstance(element, PrintedLine) else 1
        out.append(_aligned(_placeholder(element), width, element.align, columns))
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n" if out else ""


# ----- PNG ------------------------------------------------------------------------------------

_PYGAME_LOCK = threading.Lock()  # SDL_ttf is not thread-safe; several printers may render at once
_BLACK = (0, 0, 0)
_WHITE = (255, 255, 255)
# The paper is drawn on 8-bit surfaces whose palette index is the dot: PAPER (0) or INK (1).
_PALETTE = [_WHITE, _BLACK]
# A raster byte's eight dots, leftmost first (its most significant bit).
_RASTER_DOTS = [
    bytes(INK if byte >> bit & 1 else PAPER for bit in range(7, -1, -1)) for byte in range(256)
]


def _pygame() -> Any:
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    if not pygame.font.get_init():
        # Fonts made before a pygame.quit() (a kiosk closing, say) are dangling: drop them.
        _fonts.clear()
        pygame.font.init()
    return pygame


_fonts: dict[bool, Any] = {}


def _font(bold: bool) -> Any:
    pygame = _pygame()
    font = _fonts.get(bold)
    if font is None:
        font = _fonts[bold] = pygame.font.Font(None, 30)
        font.set_bold(bold)
    return font


def _element_height(element: Element) -> int:
    if isinstance(element, PrintedLine):
        return LINE_DOTS * max(1, element.height)
    return paper_lines(element) * LINE_DOTS


def _x_for(width: int, align: Align, paper: int) -> int:
    if align is Align.CENTER:
        return MARGIN + max(0, (paper - width) // 2)
    if align is Align.RIGHT:
        return MARGIN + max(0, paper - width)
    return MARGIN


def _draw_line(pygame: Any, surface: Any, element: PrintedLine, y: int, paper: int) -> None:
    if not element.text.strip():
        return
    glyphs = _font(element.bold).render(element.text, False, _BLACK)
    width = glyphs.get_width() * element.width
    height = LINE_DOTS * element.height
    width = min(width, paper)  # a proportional font may run wider than the printer's columns
    glyphs = pygame.transform.scale(glyphs, (max(1, width), height))
    x = _x_for(width, element.align, paper)
    surface.blit(glyphs, (x, y))
    if element.underline:
        pygame.draw.line(surface, _BLACK, (x, y + height - 2), (x + width, y + height - 2), 2)


def _paper(pygame: Any, size: tuple[int, int], dots: bytes | None = None) -> Any:
    """A surface of dots: blank paper, or `dots` (one byte a dot, rows top to bottom)."""
    if dots is None:
        surface = pygame.Surface(size, depth=8)
    else:
        surface = pygame.image.frombuffer(dots, size, "P")
    surface.set_palette(_PALETTE)
    return surface


def _raster_surface(pygame: Any, width_bytes: int, height: int, data: bytes) -> Any:
    data = data[: width_bytes * height].ljust(width_bytes * height, b"\x00")
    dots = b"".join(_RASTER_DOTS[byte] for byte in data)
    return _paper(pygame, (width_bytes * 8, height), dots)


def _draw_image(pygame: Any, surface: Any, element: PrintedImage, y: int, paper: int) -> None:
    width = element.width_bytes * 8 * element.scale_x
    height = element.height * element.scale_y
    if element.data is None or not width or not height:
        pygame.draw.rect(
            surface,
            _BLACK,
            (_x_for(min(width, paper), element.align, paper), y, min(width, paper), height),
            1,
        )
        return
    image = _raster_surface(pygame, element.width_bytes, element.height, element.data)
    if (element.scale_x, element.scale_y) != (1, 1):
        image = pygame.transform.scale(image, (width, height))
    surface.blit(image, (_x_for(min(width, paper), element.align, paper), y))


def _draw_barcode(pygame: Any, surface: Any, element: PrintedBarcode, y: int, paper: int) -> None:
    # A stylised pattern from the data's bits: recognisable on screen, not meant to be scanned.
    bars = [1, 0, 1, 0]
    for byte in element.data:
        bars += [byte >> bit & 1 for bit in range(7, -1, -1)] + [0]
    bars += [1, 0, 1]
    width = min(len(bars) * 2, paper)
    x = _x_for(width, element.align, paper)
    for i, bar in enumerate(bars[: width // 2]):
        if bar:
            pygame.draw.rect(surface, _BLACK, (x + 2 * i, y, 2, element.height))
    if element.hri:
        text = _font(False).render(element.data.decode("latin-1"), False, _BLACK, _WHITE)
        surface.blit(text, (_x_for(text.get_width(), element.align, paper), y + element.height))


def _draw_symbol(pygame: Any, surface: Any, element: PrintedSymbol, y: int, paper: int) -> None:
    matrix: list[list[bool]] = []
    if element.symbol == 49 and element.data:
        import qrcode  # type: ignore[import-untyped]

        try:
            code = qrcode.QRCode(border=1)
            code.add_data(element.data)
            code.make(fit=True)
            matrix = code.get_matrix()
        except (ValueError, qrcode.exceptions.DataOverflowError):
            matrix = []
    module = max(1, min(element.module, 16))
    side = len(matrix) * module if matrix else module * 25
    side = min(side, paper)
    x = _x_for(side, element.align, paper)
    if not matrix:
        pygame.draw.rect(surface, _BLACK, (x, y, side, side), 2)
        return
    module = max(1, side // len(matrix))
    for row, cells in enumerate(matrix):
        for col, cell in enumerate(cells):
            if cell:
                pygame.draw.rect(
                    surface, _BLACK, (x + col * module, y + row * module, module, module)
                )


def render_png(elements: Sequence[Element], columns: int = 42, *, cut: bool = True) -> bytes:
    """The receipt drawn in printer dots (12 per column) as a 1-bit PNG; a dashed line marks a
    cut."""
    paper = columns * DOT_WIDTH
    heights: list[int] = []
    for element in elements:
        if sum(heights) + _element_height(element) > MAX_PNG_HEIGHT:
            break
        heights.append(_element_height(element))
    elements = elements[: len(heights)]
    total = MARGIN * 2 + sum(heights) + (8 if cut else 0)
    with _PYGAME_LOCK:
        pygame = _pygame()
        surface = _paper(pygame, (paper + 2 * MARGIN, max(total, 2 * MARGIN)))
        surface.fill(_WHITE)
        y = MARGIN
        for element, height in zip(elements, heights, strict=True):
            if isinstance(element, PrintedLine):
                _draw_line(pygame, surface, element, y, paper)
            elif isinstance(element, PrintedImage):
                _draw_image(pygame, surface, element, y, paper)
            elif isinstance(element, PrintedBarcode):
                _draw_barcode(pygame, surface, element, y, paper)
            else:
                _draw_symbol(pygame, surface, element, y, paper)
            y += height
        if cut:
            for x in range(0, surface.get_width(), 12):
                pygame.draw.line(surface, _BLACK, (x, total - 4), (x + 6, total - 4), 1)
        width, height = surface.get_size()
        dots = pygame.image.tobytes(surface, "P")
    return encode_png(width, height, dots)
