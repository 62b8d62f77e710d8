"""Keyboard and mouse to kiosk actions: one table of keys, and hit-tests of drawn buttons.

Digits, Enter, Escape (cancel), Backspace (clear), F1-F8; Ctrl+1..9 insert a wallet card;
C, M, R take the card, the money, the receipt; F12 or Tab shows the operator panel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pygame

from device.sim.kiosk.layout import Layout


@dataclass(frozen=True)
class Press:
    """A PIN pad or function key: "0".."9", "enter", "cancel", "clear", "backspace", "F1".."F8"."""

    key: str


@dataclass(frozen=True)
class InsertCard:
    card_id: str


@dataclass(frozen=True)
class Take:
    """Take what waits at a slot: "card", "cash" or "receipt" (tear it off, or put it away)."""

    item: str


@dataclass(frozen=True)
class TogglePanel:
    pass


@dataclass(frozen=True)
class Operator:
    """An operator-panel button: `command` with its argument (e.g. fault "card_reader:jam")."""

    command: str
    argument: str = ""


@dataclass(frozen=True)
class Quit:
    pass


Action = Press | InsertCard | Take | TogglePanel | Operator | Quit


@dataclass(frozen=True)
class Hotspot:
    """A clickable rectangle in design units and what a click on it does."""

    rect: pygame.Rect
    action: Action


DIGIT_KEYS = {getattr(pygame, f"K_{n}"): str(n) for n in range(10)}
KEYPAD_DIGITS = {getattr(pygame, f"K_KP{n}"): str(n) for n in range(10)}
KEYS: dict[int, Action] = {
    **{key: Press(digit) for key, digit in (DIGIT_KEYS | KEYPAD_DIGITS).items()},
    **{getattr(pygame, f"K_F{n}"): Press(f"F{n}") for n in range(1, 9)},
    pygame.K_RETURN: Press("enter"),
    pygame.K_KP_ENTER: Press("enter"),
    pygame.K_ESCAPE: Press("cancel"),
    pygame.K_BACKSPACE: Press("clear"),
    pygame.K_DELETE: Press("backspace"),
    pygame.K_c: Take("card"),
    pygame.K_m: Take("cash"),
    pygame.K_r: Take("receipt"),
    pygame.K_F12: TogglePanel(),
    pygame.K_TAB: TogglePanel(),
}
CARD_MODIFIERS = pygame.KMOD_CTRL | pygame.KMOD_ALT

KEY_HELP = (
    ("0-9", "PIN pad digits"),
    ("Enter", "Enter"),
    ("Esc", "Cancel (closes a receipt being read)"),
    ("Backspace", "Clear"),
    ("Delete", "Back one digit"),
    ("F1-F8", "function keys beside the screen"),
    ("Ctrl+1..9", "insert the wallet's card 1..9"),
    ("C / M / R", "take card / money / receipt"),
    ("F12 or Tab", "operator panel"),
)


def map_key(event: pygame.event.Event, card_ids: Sequence[str]) -> Action | None:
    """The action of a KEYDOWN event, or None for keys the kiosk does not use."""
    if event.key == pygame.K_q and event.mod & pygame.KMOD_CTRL:
        return Quit()
    if event.mod & CARD_MODIFIERS and event.key in DIGIT_KEYS | KEYPAD_DIGITS:
        number = int((DIGIT_KEYS | KEYPAD_DIGITS)[event.key])
        if 1 <= number <= len(card_ids):
            return InsertCard(card_ids[number - 1])
        return None
    return KEYS.get(event.key)


def map_click(point: tuple[int, int], layout: Layout, hotspots: Sequence[Hotspot]) -> Action | None:
    """The action of a click at a window pixel: the last drawn hotspot under it wins."""
    x, y = layout.to_design(point)
    for spot in reversed(hotspots):
        if spot.rect.left <= x < spot.rect.right and spot.rect.top <= y < spot.rect.bottom:
            return spot.action
    return None


def map_event(
    event: pygame.event.Event,
    layout: Layout,
    hotspots: Sequence[Hotspot],
    card_ids: Sequence[str],
) -> Action | None:
    if event.type == pygame.QUIT:
        return Quit()
    if event.type == pygame.KEYDOWN:
        return map_key(event, card_ids)
    if event.type == pygame.MOUSEBUTTONDOWN and event.button == 1:
        return map_click(event.pos, layout, hotspots)
    return None
