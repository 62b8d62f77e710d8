"""Where every part of the fascia sits: a fixed design canvas scaled into the window.

The canvas keeps its aspect ratio at any window size; the operator panel widens the canvas.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pygame

FASCIA_SIZE = (1024, 768)
PANEL_WIDTH = 440
FUNCTION_KEYS_LEFT = ("F1", "F2", "F3", "F4")
FUNCTION_KEYS_RIGHT = ("F5", "F6", "F7", "F8")
# The PIN pad as a real one is laid out: three columns of digits and a column of command keys.
PIN_PAD_ROWS = (
    ("1", "2", "3", "cancel"),
    ("4", "5", "6", "clear"),
    ("7", "8", "9", "enter"),
    ("", "0", "", "backspace"),
)
SCREEN_LINES = 6


class LayoutError(ValueError):
    """A window size the fascia cannot be drawn in."""


@dataclass(frozen=True)
class Layout:
    """The fascia's rectangles in design units, and the mapping to window pixels."""

    window: tuple[int, int]
    panel: bool = False
    scale: float = field(init=False)
    offset: tuple[int, int] = field(init=False)

    # Design-space rectangles of the fascia (x, y, w, h on the 1024x768 canvas).
    screen = pygame.Rect(262, 86, 500, 330)
    card_slot = pygame.Rect(56, 470, 270, 110)
    card_chooser = pygame.Rect(56, 600, 270, 150)
    pin_pad = pygame.Rect(382, 452, 260, 296)
    cash_slot = pygame.Rect(690, 456, 290, 150)
    receipt_slot = pygame.Rect(690, 626, 290, 122)
    header = pygame.Rect(0, 0, 1024, 60)

    def __post_init__(self) -> None:
        width, height = self.window
        if width < 64 or height < 48:
            raise LayoutError(
                f"window {width}x{height} is too small for the fascia (64x48 at least)"
            )
        canvas_w, canvas_h = self.canvas
        scale = min(width / canvas_w, height / canvas_h)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(
            self,
            "offset",
            (round((width - canvas_w * scale) / 2), round((height - canvas_h * scale) / 2)),
        )

    @property
    def canvas(self) -> tuple[int, int]:
        """The design canvas: the fascia, and the operator panel to its right when shown."""
        return (FASCIA_SIZE[0] + (PANEL_WIDTH if self.panel else 0), FASCIA_SIZE[1])

    @property
    def panel_rect(self) -> pygame.Rect:
        return pygame.Rect(FASCIA_SIZE[0], 0, PANEL_WIDTH, FASCIA_SIZE[1])

    # ----- design <-> window --------------------------------------------------------------

    def to_window(self, rect: pygame.Rect) -> pygame.Rect:
        """A design rectangle in window pixels (edges rounded so neighbours stay adjacent)."""
        left = self.offset[0] + round(rect.left * self.scale)
        top = self.offset[1] + round(rect.top * self.scale)
        right = self.offset[0] + round(rect.right * self.scale)
        bottom = self.offset[1] + round(rect.bottom * self.scale)
        return pygame.Rect(left, top, max(right - left, 1), max(bottom - top, 1))

    def to_design(self, point: tuple[int, int]) -> tuple[float, float]:
        """A window pixel in design units (may fall outside the canvas, in the margins)."""
        return ((point[0] - self.offset[0]) / self.scale, (point[1] - self.offset[1]) / self.scale)

    def px(self, design_units: float) -> int:
        """A length (a font size, a border) in window pixels, at least one."""
        return max(1, round(design_units * self.scale))

    @property
    def canvas_rect(self) -> pygame.Rect:
        return self.to_window(pygame.Rect(0, 0, *self.canvas))

    # ----- the parts ----------------------------------------------------------------------

    def function_keys(self) -> dict[str, pygame.Rect]:
        """The eight keys beside the screen, F1-F4 left and F5-F8 right, level with its rows."""
        keys: dict[str, pygame.Rect] = {}
        for row, (left, right) in enumerate(
            zip(FUNCTION_KEYS_LEFT, FUNCTION_KEYS_RIGHT, strict=True)
        ):
            centre_y = self.function_key_row_y(row)
            keys[left] = pygame.Rect(self.screen.left - 96, centre_y - 20, 72, 40)
            keys[right] = pygame.Rect(self.screen.right + 24, centre_y - 20, 72, 40)
        return keys

    def function_key_row_y(self, row: int) -> int:
        """The design y of the centre of function key row 0..3 (labels in the screen use it)."""
        top = self.screen.top + 150
        step = (self.screen.bottom - 24 - top) // 3
        return top + row * step

    def screen_line_rects(self) -> list[pygame.Rect]:
        """The rows of screen text above the function-key labels."""
        inner = self.screen.inflate(-40, 0)
        return [
            pygame.Rect(inner.left, self.screen.top + 18 + i * 30, inner.width, 28)
            for i in range(4)
        ]

    def pin_pad_keys(self) -> dict[str, pygame.Rect]:
        keys: dict[str, pygame.Rect] = {}
        gap = 8
        width = (self.pin_pad.width - 24 - 3 * gap) // 4
        height = (self.pin_pad.height - 24 - 3 * gap) // 4
        for r, row in enumerate(PIN_PAD_ROWS):
            for c, key in enumerate(row):
                if key:
                    x = self.pin_pad.left + 12 + c * (width + gap)
                    y = self.pin_pad.top + 12 + r * (height + gap)
                    keys[key] = pygame.Rect(x, y, width, height)
        return keys

    def card_buttons(self, count: int) -> list[pygame.Rect]:
        """One button per wallet card in the chooser, two columns."""
        rows = max((count + 1) // 2, 1)
        height = min(34, (self.card_chooser.height - 26 - (rows - 1) * 6) // rows)
        width = (self.card_chooser.width - 6) // 2
        return [
            pygame.Rect(
                self.card_chooser.left + (i % 2) * (width + 6),
                self.card_chooser.top + 26 + (i // 2) * (height + 6),
                width,
                height,
            )
            for i in range(count)
        ]

    def card_mouth(self) -> pygame.Rect:
        """The slot opening itself; a card at the gate sticks out below it."""
        return pygame.Rect(self.card_slot.left + 40, self.card_slot.top + 28, 190, 14)

    def card_at_gate(self) -> pygame.Rect:
        mouth = self.card_mouth()
        return pygame.Rect(mouth.left + 20, mouth.centery, mouth.width - 40, 62)

    def cash_mouth(self) -> pygame.Rect:
        return pygame.Rect(
            self.cash_slot.left + 14, self.cash_slot.top + 30, self.cash_slot.width - 28, 104
        )

    def receipt_mouth(self) -> pygame.Rect:
        return pygame.Rect(self.receipt_slot.left + 50, self.receipt_slot.top + 30, 190, 10)

    def receipt_paper(self) -> pygame.Rect:
        mouth = self.receipt_mouth()
        return pygame.Rect(mouth.left + 15, mouth.centery, mouth.width - 30, 72)

    def receipt_view(self) -> pygame.Rect:
        """The torn-off receipt held up to read, over the fascia."""
        return pygame.Rect(312, 70, 400, 640)
