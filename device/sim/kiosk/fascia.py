"""Drawing the ATM fascia: the screen with its function keys, the PIN pad, the card, cash and
receipt slots, from a snapshot of device state; returns the clickable hotspots it drew.
"""

from __future__ import annotations

import pygame

from device.sim.kiosk.input_map import Hotspot, InsertCard, Press, Take
from device.sim.kiosk.layout import FUNCTION_KEYS_LEFT, Layout
from device.sim.kiosk.view_model import (
    FasciaState,
    card_light,
    card_slot_status,
    cash_light,
    cash_slot_text,
    header_status,
    note_caption,
    wallet_button_text,
)

Color = tuple[int, int, int]

BODY: Color = (178, 184, 192)
BODY_DARK: Color = (120, 126, 136)
BODY_LIGHT: Color = (214, 219, 225)
HEADER: Color = (0, 70, 140)
HEADER_TEXT: Color = (255, 255, 255)
BEZEL: Color = (40, 42, 48)
SCREEN_BG: Color = (6, 52, 120)
SCREEN_TEXT: Color = (255, 255, 255)
SCREEN_LABEL: Color = (255, 214, 64)
KEY_FACE: Color = (222, 224, 228)
KEY_EDGE: Color = (90, 94, 100)
KEY_TEXT: Color = (20, 20, 24)
SLOT_BLACK: Color = (18, 18, 20)
LED_GREEN: Color = (40, 220, 90)
LED_OFF: Color = (50, 70, 55)
LED_RED: Color = (230, 40, 40)
CARD_BLUE: Color = (18, 92, 170)
CHIP: Color = (212, 180, 90)
PAPER: Color = (250, 250, 244)
LABEL_TEXT: Color = (30, 34, 40)
COMMAND_KEYS: dict[str, tuple[str, Color]] = {
    "cancel": ("CANCEL", (200, 30, 36)),
    "clear": ("CLEAR", (236, 196, 30)),
    "enter": ("ENTER", (30, 150, 60)),
    "backspace": ("<", (150, 154, 160)),
}
NOTE_COLOURS: dict[int, Color] = {
    500: (150, 150, 150),
    1000: (206, 70, 70),
    2000: (70, 110, 200),
    5000: (236, 140, 50),
    10000: (60, 160, 90),
    20000: (200, 170, 70),
    50000: (150, 90, 170),
}
NOTE_DEFAULT: Color = (120, 160, 120)


class Fascia:
    """Draws a FasciaState. Rendered text is cached, so an unchanged frame costs only blits."""

    def __init__(self) -> None:
        self._fonts: dict[tuple[int, bool], pygame.font.Font] = {}
        self._texts: dict[tuple[str, int, Color, Color | None, bool], pygame.Surface] = {}
        self.screen_text: list[tuple[str, pygame.Rect]] = []  # screen lines and labels as drawn

    def forget(self) -> None:
        """Drop fonts and rendered text: call before pygame.quit() (a Font freed after the
        font module has quit crashes SDL_ttf)."""
        self._fonts.clear()
        self._texts.clear()

    # ----- text ---------------------------------------------------------------------------

    def font(self, size: int, bold: bool = False) -> pygame.font.Font:
        font = self._fonts.get((size, bold))
        if font is None:
            font = pygame.font.Font(None, size)
            font.set_bold(bold)
            self._fonts[(size, bold)] = font
        return font

    def text(
        self,
        text: str,
        size: int,
        color: Color,
        background: Color | None = None,
        bold: bool = False,
    ) -> pygame.Surface:
        """`text` rendered at pixel size `size` (cached; the cache is dropped when it grows)."""
        key = (text, size, color, background, bold)
        surface = self._texts.get(key)
        if surface is None:
            if len(self._texts) > 600:
                self._texts.clear()
            surface = self.font(size, bold).render(text, True, color, background)
            self._texts[key] = surface
        return surface

    def fitted(
        self,
        text: str,
        size: int,
        width: int,
        color: Color,
        background: Color | None = None,
        bold: bool = False,
    ) -> pygame.Surface:
        """`text` at `size` pixels, or smaller until it fits `width`."""
        surface = self.text(text, size, color, background, bold)
        while surface.get_width() > width and size > 8:
            size = max(8, int(size * 0.9))
            surface = self.text(text, size, color, background, bold)
        return surface

    def _label(
        self,
        target: pygame.Surface,
        layout: Layout,
        text: str,
        design_size: int,
        rect: pygame.Rect,
        color: Color,
        *,
        align: str = "center",
        background: Color | None = None,
        bold: bool = False,
    ) -> pygame.Rect:
        area = layout.to_window(rect)
        surface = self.fitted(text, layout.px(design_size), area.width, color, background, bold)
        placed = surface.get_rect(centery=area.centery)
        if align == "left":
            placed.left = area.left
        elif align == "right":
            placed.right = area.right
        else:
            placed.centerx = area.centerx
        target.blit(surface, placed)
        return placed

    # ----- the whole fascia ---------------------------------------------------------------

    def draw(self, target: pygame.Surface, layout: Layout, state: FasciaState) -> list[Hotspot]:
        hotspots: list[Hotspot] = []
        target.fill((24, 26, 30))
        canvas = layout.to_window(pygame.Rect(0, 0, 1024, 768))
        pygame.draw.rect(target, BODY, canvas)
        self._body_shading(target, layout)
        self._header(target, layout, state)
        self._screen(target, layout, state)
        hotspots += self._function_keys(target, layout, state)
        hotspots += self._pin_pad(target, layout, state)
        hotspots += self._card_slot(target, layout, state)
        hotspots += self._cash_slot(target, layout, state)
        hotspots += self._receipt_slot(target, layout, state)
        return hotspots

    def _body_shading(self, target: pygame.Surface, layout: Layout) -> None:
        # A lower shelf and a raised surround around the screen, as a real fascia has.
        shelf = layout.to_window(pygame.Rect(0, 436, 1024, 332))
        pygame.draw.rect(target, BODY_LIGHT, shelf)
        pygame.draw.line(target, BODY_DARK, shelf.topleft, shelf.topright, layout.px(4))
        surround = layout.to_window(Layout.screen.inflate(230, 40))
        pygame.draw.rect(target, BODY_DARK, surround, border_radius=layout.px(14))
        pygame.draw.rect(
            target,
            BODY,
            surround.inflate(-layout.px(6), -layout.px(6)),
            border_radius=layout.px(12),
        )

    def _header(self, target: pygame.Surface, layout: Layout, state: FasciaState) -> None:
        header = layout.to_window(Layout.header)
        pygame.draw.rect(target, HEADER, header)
        self._label(
            target,
            layout,
            "SIM BANK",
            38,
            pygame.Rect(40, 0, 300, 60),
            HEADER_TEXT,
            align="left",
            bold=True,
        )
        self._label(
            target,
            layout,
            header_status(state.in_service),
            22,
            pygame.Rect(624, 0, 360, 60),
            HEADER_TEXT if state.in_service else (255, 160, 150),
            align="right",
        )

    def _screen(self, target: pygame.Surface, layout: Layout, state: FasciaState) -> None:
        self.screen_text = []
        bezel = layout.to_window(Layout.screen.inflate(24, 24))
        pygame.draw.rect(target, BEZEL, bezel, border_radius=layout.px(10))
        screen = layout.to_window(Layout.screen)
        pygame.draw.rect(target, SCREEN_BG, screen)
        lines = [line for line in state.screen_lines if line]
        for index, (line, rect) in enumerate(zip(lines, layout.screen_line_rects(), strict=False)):
            size = 30 if index == 0 else 25
            placed = self._label(
                target,
                layout,
                line,
                size,
                rect,
                SCREEN_TEXT,
                background=SCREEN_BG,
                bold=index == 0,
            )
            self.screen_text.append((line, placed))
        labels = dict(state.function_labels)
        for key, rect in layout.function_keys().items():
            label = labels.get(key)
            if not label:
                continue
            left = key in FUNCTION_KEYS_LEFT
            row_rect = pygame.Rect(0, rect.top, Layout.screen.width // 2 - 20, rect.height)
            if left:
                row_rect.left = Layout.screen.left + 12
            else:
                row_rect.right = Layout.screen.right - 12
            placed = self._label(
                target,
                layout,
                label,
                24,
                row_rect,
                SCREEN_LABEL,
                align="left" if left else "right",
                background=SCREEN_BG,
            )
            self.screen_text.append((label, placed))
            # A short bar from the label to the edge points at the key it belongs to.
            edge = screen.left if left else screen.right
            y = placed.centery
            tip = placed.left - layout.px(6) if left else placed.right + layout.px(6)
            if abs(tip - edge) > layout.px(4):
                pygame.draw.line(target, SCREEN_LABEL, (edge, y), (tip, y), layout.px(2))

    def _key(
        self,
        target: pygame.Surface,
        layout: Layout,
        rect: pygame.Rect,
        text: str,
        face: Color,
        text_color: Color,
        pressed: bool,
        size: int = 26,
    ) -> None:
        area = layout.to_window(rect)
        depth = layout.px(2 if pressed else 5)
        pygame.draw.rect(target, KEY_EDGE, area, border_radius=layout.px(7))
        top = pygame.Rect(area.left, area.top, area.width, area.height - depth)
        if pressed:
            top = top.move(0, depth)
        shade = tuple(max(0, c - 40) for c in face) if pressed else face
        pygame.draw.rect(target, shade, top, border_radius=layout.px(7))
        label = self.fitted(text, layout.px(size), top.width - layout.px(6), text_color, bold=True)
        target.blit(label, label.get_rect(center=top.center))

    def _function_keys(
        self, target: pygame.Surface, layout: Layout, state: FasciaState
    ) -> list[Hotspot]:
        spots = []
        labels = dict(state.function_labels)
        for key, rect in layout.function_keys().items():
            face = KEY_FACE if labels.get(key) else (196, 198, 202)
            arrow = "<" if key not in FUNCTION_KEYS_LEFT else ">"
            self._key(
                target,
                layout,
                rect,
                arrow if labels.get(key) else "",
                face,
                KEY_TEXT,
                state.pressed == key,
            )
            hint = layout.to_window(pygame.Rect(rect.left, rect.bottom + 1, rect.width, 12))
            small = self.text(key, layout.px(14), BODY_DARK)
            target.blit(small, small.get_rect(center=hint.center))
            spots.append(Hotspot(rect, Press(key)))
        return spots

    def _pin_pad(self, target: pygame.Surface, layout: Layout, state: FasciaState) -> list[Hotspot]:
        housing = layout.to_window(Layout.pin_pad)
        pygame.draw.rect(target, (60, 64, 72), housing, border_radius=layout.px(12))
        inner = housing.inflate(-layout.px(6), -layout.px(6))
        pygame.draw.rect(target, (88, 92, 100), inner, border_radius=layout.px(10))
        spots = []
        for key, rect in layout.pin_pad_keys().items():
            if key in COMMAND_KEYS:
                text, face = COMMAND_KEYS[key]
                color: Color = (255, 255, 255) if key != "clear" else KEY_TEXT
                self._key(target, layout, rect, text, face, color, state.pressed == key, 17)
            else:
                self._key(target, layout, rect, key, KEY_FACE, KEY_TEXT, state.pressed == key, 34)
            spots.append(Hotspot(rect, Press(key)))
        # The privacy hood's shadow over the top of the pad.
        hood = layout.to_window(
            pygame.Rect(
                Layout.pin_pad.left - 10, Layout.pin_pad.top - 14, Layout.pin_pad.width + 20, 10
            )
        )
        pygame.draw.rect(target, (70, 74, 80), hood, border_radius=layout.px(4))
        return spots

    def _slot_plate(
        self, target: pygame.Surface, layout: Layout, rect: pygame.Rect, title: str
    ) -> None:
        plate = layout.to_window(rect)
        pygame.draw.rect(target, BODY_DARK, plate, border_radius=layout.px(10))
        pygame.draw.rect(
            target, BODY, plate.inflate(-layout.px(4), -layout.px(4)), border_radius=layout.px(9)
        )
        self._label(
            target,
            layout,
            title,
            17,
            pygame.Rect(rect.left + 10, rect.top + 4, rect.width - 20, 20),
            LABEL_TEXT,
            align="left",
            bold=True,
        )

    def _led(
        self, target: pygame.Surface, layout: Layout, centre: tuple[int, int], color: Color
    ) -> None:
        point = layout.to_window(pygame.Rect(centre[0], centre[1], 1, 1)).topleft
        pygame.draw.circle(target, color, point, layout.px(6))
        pygame.draw.circle(target, BEZEL, point, layout.px(6), layout.px(1))

    def _card_slot(
        self, target: pygame.Surface, layout: Layout, state: FasciaState
    ) -> list[Hotspot]:
        slot = Layout.card_slot
        self._slot_plate(target, layout, slot, "CARD")
        mouth = layout.card_mouth()
        led = {"red": LED_RED, "green": LED_GREEN, "off": LED_OFF}[card_light(state)]
        self._led(target, layout, (mouth.right + 22, mouth.centery), led)
        # The lead-through bezel, then the slot opening.
        pygame.draw.rect(
            target, BEZEL, layout.to_window(mouth.inflate(24, 16)), border_radius=layout.px(8)
        )
        pygame.draw.rect(target, SLOT_BLACK, layout.to_window(mouth), border_radius=layout.px(3))
        spots = [Hotspot(slot.copy(), Take("card"))]
        status = card_slot_status(state.card_media, state.entry_enabled)
        if state.card_media == "gate":
            self._card(target, layout, layout.card_at_gate(), state.card_label)
        if status:
            self._label(
                target,
                layout,
                status,
                18,
                pygame.Rect(slot.left + 10, slot.bottom - 36, slot.width - 20, 26),
                LED_RED if state.card_media == "jammed" else LABEL_TEXT,
            )
        # The wallet: the cards a customer can insert.
        self._label(
            target,
            layout,
            "YOUR WALLET (Ctrl+1..9)",
            16,
            pygame.Rect(Layout.card_chooser.left, Layout.card_chooser.top, 270, 22),
            LABEL_TEXT,
            align="left",
            bold=True,
        )
        for index, (entry, rect) in enumerate(
            zip(state.wallet, layout.card_buttons(len(state.wallet)), strict=True)
        ):
            area = layout.to_window(rect)
            pygame.draw.rect(target, CARD_BLUE, area, border_radius=layout.px(5))
            chip = layout.to_window(pygame.Rect(rect.left + 6, rect.centery - 6, 14, 12))
            pygame.draw.rect(target, CHIP, chip, border_radius=layout.px(2))
            self._label(
                target,
                layout,
                wallet_button_text(index, entry),
                15,
                pygame.Rect(rect.left + 24, rect.top, rect.width - 28, rect.height),
                (255, 255, 255),
                align="left",
            )
            spots.append(Hotspot(rect, InsertCard(entry.card_id)))
        return spots

    def _card(self, target: pygame.Surface, layout: Layout, rect: pygame.Rect, label: str) -> None:
        area = layout.to_window(rect)
        pygame.draw.rect(target, CARD_BLUE, area, border_radius=layout.px(6))
        pygame.draw.rect(target, (255, 255, 255), area, layout.px(1), border_radius=layout.px(6))
        chip = layout.to_window(pygame.Rect(rect.left + 12, rect.top + 18, 22, 17))
        pygame.draw.rect(target, CHIP, chip, border_radius=layout.px(3))
        self._label(
            target,
            layout,
            label,
            14,
            pygame.Rect(rect.left + 8, rect.bottom - 22, rect.width - 16, 18),
            (255, 255, 255),
            align="left",
        )
        # The slot's lip covers the top of the card: it is half out, not lying on the shelf.
        lip = layout.to_window(layout.card_mouth())
        pygame.draw.rect(target, SLOT_BLACK, lip, border_radius=layout.px(3))

    def _cash_slot(
        self, target: pygame.Surface, layout: Layout, state: FasciaState
    ) -> list[Hotspot]:
        slot = Layout.cash_slot
        self._slot_plate(target, layout, slot, "CASH")
        mouth = layout.cash_mouth()
        window_mouth = layout.to_window(mouth)
        presented = sum(p.count for p in state.notes)
        pygame.draw.rect(
            target,
            BEZEL,
            window_mouth.inflate(layout.px(12), layout.px(12)),
            border_radius=layout.px(8),
        )
        if presented:
            pygame.draw.rect(target, SLOT_BLACK, window_mouth, border_radius=layout.px(4))
            self._notes(target, layout, mouth, state)
        else:
            # A closed shutter: horizontal slats.
            pygame.draw.rect(target, (98, 102, 110), window_mouth, border_radius=layout.px(4))
            for i in range(1, 8):
                y = mouth.top + i * mouth.height // 8
                pygame.draw.line(
                    target,
                    (70, 74, 80),
                    layout.to_window(pygame.Rect(mouth.left + 4, y, 1, 1)).topleft,
                    layout.to_window(pygame.Rect(mouth.right - 4, y, 1, 1)).topleft,
                    layout.px(2),
                )
            text = cash_slot_text(state)
            if text:
                self._label(target, layout, text, 20, mouth, (255, 255, 255), background=None)
        led = LED_GREEN if cash_light(state) else LED_OFF
        self._led(target, layout, (slot.right - 24, slot.top + 15), led)
        return [Hotspot(slot.copy(), Take("cash"))]

    def _notes(
        self, target: pygame.Surface, layout: Layout, mouth: pygame.Rect, state: FasciaState
    ) -> None:
        piles = [p for p in state.notes if p.count]
        width = min((mouth.width - 12) // max(len(piles), 1), 130)
        start = mouth.centerx - width * len(piles) // 2
        for index, pile in enumerate(piles):
            colour = NOTE_COLOURS.get(pile.denomination, NOTE_DEFAULT)
            left = start + index * width
            shown = min(pile.count, 6)
            for n in range(shown):
                note = pygame.Rect(left + 4 + n * 3, mouth.top + 8 + n * 3, width - 26, 50)
                area = layout.to_window(note)
                pygame.draw.rect(target, colour, area, border_radius=layout.px(3))
                pygame.draw.rect(
                    target, (30, 30, 30), area, layout.px(1), border_radius=layout.px(3)
                )
            face = pygame.Rect(
                left + 4 + (shown - 1) * 3, mouth.top + 8 + (shown - 1) * 3, width - 26, 50
            )
            self._label(
                target, layout, str(pile.denomination // 100), 28, face, (255, 255, 255), bold=True
            )
            caption = pygame.Rect(left, mouth.bottom - 28, width, 24)
            self._label(
                target,
                layout,
                note_caption(pile, state.currency),
                18,
                caption,
                (255, 255, 255),
            )

    def _receipt_slot(
        self, target: pygame.Surface, layout: Layout, state: FasciaState
    ) -> list[Hotspot]:
        slot = Layout.receipt_slot
        self._slot_plate(target, layout, slot, "RECEIPT")
        mouth = layout.receipt_mouth()
        pygame.draw.rect(
            target, BEZEL, layout.to_window(mouth.inflate(20, 14)), border_radius=layout.px(6)
        )
        pygame.draw.rect(target, SLOT_BLACK, layout.to_window(mouth))
        if state.receipts_waiting:
            paper = layout.receipt_paper()
            area = layout.to_window(paper)
            pygame.draw.rect(target, PAPER, area)
            for i in range(5):
                y = paper.top + 14 + i * 11
                width = paper.width - 30 - (i * 23) % 60
                pygame.draw.line(
                    target,
                    (150, 150, 150),
                    layout.to_window(pygame.Rect(paper.left + 10, y, 1, 1)).topleft,
                    layout.to_window(pygame.Rect(paper.left + 10 + width, y, 1, 1)).topleft,
                    layout.px(2),
                )
            pygame.draw.rect(target, SLOT_BLACK, layout.to_window(mouth))
            if state.receipts_waiting > 1:
                self._label(
                    target,
                    layout,
                    f"x{state.receipts_waiting}",
                    18,
                    pygame.Rect(paper.right + 6, paper.top + 10, 40, 20),
                    LABEL_TEXT,
                )
        return [Hotspot(slot.copy(), Take("receipt"))]

    # ----- the torn-off receipt ---------------------------------------------------------------

    def draw_receipt(
        self, target: pygame.Surface, layout: Layout, image: pygame.Surface | None, text: str
    ) -> list[Hotspot]:
        """The receipt held up to read: the printer's own rendering, scaled to fit."""
        veil = pygame.Surface(target.get_size(), pygame.SRCALPHA)
        veil.fill((0, 0, 0, 150))
        target.blit(veil, (0, 0))
        view = layout.to_window(layout.receipt_view())
        if image is not None:
            scale = min(view.width / image.get_width(), view.height / image.get_height())
            size = (max(1, int(image.get_width() * scale)), max(1, int(image.get_height() * scale)))
            shown = pygame.transform.smoothscale(image.convert(), size) if scale != 1 else image
            placed = shown.get_rect(midtop=view.midtop)
            pygame.draw.rect(target, PAPER, placed.inflate(layout.px(16), layout.px(16)))
            target.blit(shown, placed)
        else:
            pygame.draw.rect(target, PAPER, view)
            for i, line in enumerate(text.splitlines()[:40]):
                surface = self.text(line, layout.px(16), (0, 0, 0))
                target.blit(surface, (view.left + layout.px(10), view.top + layout.px(10 + i * 15)))
        hint = pygame.Rect(312, 716, 400, 30)
        self._label(
            target, layout, "Click or press R to put the receipt away", 18, hint, (255, 255, 255)
        )
        return [Hotspot(pygame.Rect(0, 0, *layout.canvas), Take("receipt"))]
