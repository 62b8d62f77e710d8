"""The operator panel beside the fascia: live device status and counters, the host link, the
journal's tail, fault switches, host down, power failure, and supervisor work.
"""

from __future__ import annotations

import pygame

from device.sim.kiosk.fascia import Color, Fascia
from device.sim.kiosk.input_map import Hotspot, Operator
from device.sim.kiosk.layout import Layout
from device.sim.kiosk.view_model import PanelState, host_button_text, supervisor_buttons

TABS = ("status", "faults", "supervisor")
PANEL_BG: Color = (28, 32, 40)
PANEL_TEXT: Color = (225, 230, 236)
PANEL_DIM: Color = (150, 160, 172)
PANEL_TITLE: Color = (120, 200, 255)
BUTTON: Color = (64, 72, 88)
BUTTON_ON: Color = (200, 60, 50)
BUTTON_GOOD: Color = (40, 130, 70)
WARN: Color = (255, 170, 90)


FAULT_MODES = (("persistent", "New faults stay until cleared"), ("once", "New faults fire once"))
# Per-cassette exchange buttons in supervisor mode: (label, the kiosk's change argument).
CASSETTE_CHANGES = (("-10", "-10"), ("+10", "+10"), ("Empty", "empty"), ("Full", "full"))


class OperatorPanel:
    """Draws a PanelState in the layout's panel rectangle; returns its buttons as hotspots."""

    def __init__(self, fascia: Fascia) -> None:
        self.fascia = fascia

    def draw(self, target: pygame.Surface, layout: Layout, state: PanelState) -> list[Hotspot]:
        panel = layout.panel_rect
        pygame.draw.rect(target, PANEL_BG, layout.to_window(panel))
        spots: list[Hotspot] = []
        tab_width = (panel.width - 16) // len(TABS)
        for index, tab in enumerate(TABS):
            rect = pygame.Rect(panel.left + 8 + index * tab_width, 8, tab_width - 4, 28)
            spots.append(
                self._button(
                    target,
                    layout,
                    rect,
                    tab.upper(),
                    BUTTON_GOOD if tab == state.tab else BUTTON,
                    Operator("tab", tab),
                )
            )
        top = 46
        if state.message:
            self._text(target, layout, state.message, top, WARN, 15)
            top += 20
        if state.tab == "status":
            self._status(target, layout, state, top)
        elif state.tab == "faults":
            spots += self._faults(target, layout, state, top)
        else:
            spots += self._supervisor(target, layout, state, top)
        return spots

    # ----- pieces ----------------------------------------------------------------------------

    def _text(
        self,
        target: pygame.Surface,
        layout: Layout,
        text: str,
        top: int,
        color: Color,
        size: int = 15,
        indent: int = 0,
        bold: bool = False,
    ) -> None:
        panel = layout.panel_rect
        rect = pygame.Rect(panel.left + 12 + indent, top, panel.width - 24 - indent, size + 2)
        area = layout.to_window(rect)
        surface = self.fascia.fitted(text, layout.px(size), area.width, color, bold=bold)
        target.blit(surface, surface.get_rect(midleft=area.midleft))

    def _button(
        self,
        target: pygame.Surface,
        layout: Layout,
        rect: pygame.Rect,
        text: str,
        colour: Color,
        action: Operator,
        enabled: bool = True,
    ) -> Hotspot:
        area = layout.to_window(rect)
        pygame.draw.rect(
            target, colour if enabled else (48, 52, 60), area, border_radius=layout.px(5)
        )
        surface = self.fascia.fitted(
            text, layout.px(14), area.width - layout.px(6), PANEL_TEXT if enabled else PANEL_DIM
        )
        target.blit(surface, surface.get_rect(center=area.center))
        return Hotspot(rect, action if enabled else Operator("disabled", text))

    def _status(self, target: pygame.Surface, layout: Layout, state: PanelState, top: int) -> None:
        colours = {"title": PANEL_TITLE, "warn": WARN, "dim": PANEL_DIM, "text": PANEL_TEXT}
        for kind, line in state.status_lines:
            if top > 560:
                break
            self._text(
                target,
                layout,
                line,
                top,
                colours.get(kind, PANEL_TEXT),
                15,
                0 if kind == "title" else 8,
                bold=kind == "title",
            )
            top += 17
        self._text(
            target,
            layout,
            "Electronic journal (latest last)",
            max(top + 4, 572),
            PANEL_TITLE,
            15,
            bold=True,
        )
        top = max(top + 4, 572) + 18
        for line in state.journal[-9:]:
            self._text(target, layout, line, top, PANEL_DIM, 13, 8)
            top += 15

    def _faults(
        self, target: pygame.Surface, layout: Layout, state: PanelState, top: int
    ) -> list[Hotspot]:
        panel = layout.panel_rect
        spots = []
        width = (panel.width - 24) // 3
        for target_name, faults in state.catalogue:
            self._text(target, layout, target_name, top, PANEL_TITLE, 14, bold=True)
            top += 17
            for index, fault in enumerate(faults):
                rect = pygame.Rect(
                    panel.left + 12 + (index % 3) * width, top + (index // 3) * 24, width - 4, 21
                )
                armed = f"{target_name}:{fault}" in state.armed
                spots.append(
                    self._button(
                        target,
                        layout,
                        rect,
                        fault,
                        BUTTON_ON if armed else BUTTON,
                        Operator("fault", f"{target_name}:{fault}"),
                    )
                )
            top += ((len(faults) + 2) // 3) * 24 + 2
        top += 4
        half = (panel.width - 28) // 2
        spots.append(
            self._button(
                target,
                layout,
                pygame.Rect(panel.left + 12, top, half, 26),
                host_button_text(state.host_control),
                BUTTON_ON if state.host_control == "stopped" else BUTTON,
                Operator("host"),
                enabled=state.host_control != "unavailable",
            )
        )
        spots.append(
            self._button(
                target,
                layout,
                pygame.Rect(panel.left + 16 + half, top, half, 26),
                "Power failure + restart",
                BUTTON_ON,
                Operator("power"),
            )
        )
        top += 32
        for index, (mode, text) in enumerate(FAULT_MODES):
            spots.append(
                self._button(
                    target,
                    layout,
                    pygame.Rect(panel.left + 12 + index * (half + 4), top, half, 24),
                    text,
                    BUTTON_GOOD if mode == state.fault_mode else BUTTON,
                    Operator("fault_mode", mode),
                )
            )
        return spots

    def _supervisor(
        self, target: pygame.Surface, layout: Layout, state: PanelState, top: int
    ) -> list[Hotspot]:
        panel = layout.panel_rect
        spots = []
        for text, command, enabled in supervisor_buttons(state):
            rect = pygame.Rect(panel.left + 12, top, panel.width - 24, 30)
            spots.append(
                self._button(target, layout, rect, text, BUTTON, Operator(command), enabled)
            )
            top += 36
        top += 6
        notes = (
            "Replenishment and bin emptying need the ATM without a customer",
            "(idle, out of service or supervisor). Leaving supervisor mode",
            "restarts the ATM: self-test, sign-on, back in service.",
        )
        for line in notes:
            self._text(target, layout, line, top, PANEL_DIM, 14)
            top += 17
        top += 8
        spots += self._cassettes(target, layout, state, top)
        top += 24 * len(state.cassettes) + 6
        for _kind, line in state.status_lines:
            if top > 740:
                break
            if line.startswith(("  reject", "  retract", "  paper", "  retain")):
                self._text(target, layout, line.strip(), top, PANEL_TEXT, 14, 8)
                top += 16
        return spots

    def _cassettes(
        self, target: pygame.Surface, layout: Layout, state: PanelState, top: int
    ) -> list[Hotspot]:
        """One row a cassette: its count, and exchange buttons (supervisor mode only)."""
        panel = layout.panel_rect
        spots = []
        text_width = (panel.width - 24) * 2 // 5
        button_width = (panel.width - 24 - text_width) // len(CASSETTE_CHANGES)
        for row in state.cassettes:
            rect = pygame.Rect(panel.left + 12, top, text_width, 21)
            area = layout.to_window(rect)
            line = f"{row.label}: {row.count}/{row.capacity}"
            surface = self.fascia.fitted(line, layout.px(14), area.width, PANEL_TEXT)
            target.blit(surface, surface.get_rect(midleft=area.midleft))
            for index, (label, change) in enumerate(CASSETTE_CHANGES):
                button = pygame.Rect(
                    panel.left + 12 + text_width + index * button_width, top, button_width - 4, 21
                )
                action = Operator("cassette", f"{row.number}:{change}")
                spots.append(
                    self._button(target, layout, button, label, BUTTON, action, state.supervisor)
                )
            top += 24
        return spots
