"""The kiosk's geometry and input table: aspect ratio kept, parts inside the fascia and apart,
clicks and keys mapped to the right actions."""

from __future__ import annotations

import itertools
import os

import pygame
import pytest

from device.sim.kiosk.input_map import (
    Hotspot,
    InsertCard,
    Press,
    Take,
    TogglePanel,
    map_click,
    map_key,
)
from device.sim.kiosk.layout import FASCIA_SIZE, Layout, LayoutError
from device.sim.kiosk.sounds import RATE, click, tone

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


@pytest.mark.parametrize("size", [(1024, 768), (800, 600), (1920, 1080), (640, 1000), (333, 777)])
@pytest.mark.parametrize("panel", [False, True])
def test_the_canvas_keeps_its_aspect_and_fits_the_window(
    size: tuple[int, int], panel: bool
) -> None:
    layout = Layout(size, panel)
    canvas = layout.canvas_rect
    want = layout.canvas[0] / layout.canvas[1]
    assert abs(canvas.width / canvas.height - want) < 0.02
    assert canvas.left >= 0 and canvas.top >= 0
    assert canvas.right <= size[0] and canvas.bottom <= size[1]
    assert canvas.width == size[0] or canvas.height == size[1]  # it fills one direction


def test_the_panel_widens_the_canvas_beside_the_fascia() -> None:
    assert Layout((1024, 768)).canvas == FASCIA_SIZE
    with_panel = Layout((1024, 768), panel=True)
    assert with_panel.canvas[0] > FASCIA_SIZE[0]
    assert with_panel.panel_rect.left == FASCIA_SIZE[0]


def test_a_window_too_small_is_refused() -> None:
    with pytest.raises(LayoutError, match="too small"):
        Layout((20, 20))


def test_window_and_design_points_round_trip() -> None:
    layout = Layout((1600, 900))
    for x, y in [(0, 0), (512, 384), (1023, 767)]:
        window = layout.to_window(pygame.Rect(x, y, 1, 1)).topleft
        back = layout.to_design(window)
        assert abs(back[0] - x) <= 1 and abs(back[1] - y) <= 1


def test_every_part_is_inside_the_fascia_and_keys_do_not_overlap() -> None:
    layout = Layout((1024, 768))
    fascia = pygame.Rect(0, 0, *FASCIA_SIZE)
    keys = list(layout.pin_pad_keys().values()) + list(layout.function_keys().values())
    parts = [
        Layout.screen,
        Layout.card_slot,
        Layout.pin_pad,
        Layout.cash_slot,
        Layout.receipt_slot,
        *keys,
        *layout.card_buttons(6),
    ]
    assert all(fascia.contains(part) for part in parts)
    assert all(Layout.pin_pad.contains(k) for k in layout.pin_pad_keys().values())
    assert len(layout.pin_pad_keys()) == 14  # 0-9, cancel, clear, enter, back
    for a, b in itertools.combinations(keys, 2):
        assert not a.colliderect(b)
    for a, b in itertools.combinations(layout.card_buttons(6), 2):
        assert not a.colliderect(b)


def test_function_keys_sit_level_beside_the_screen() -> None:
    keys = Layout((1024, 768)).function_keys()
    for left, right in zip(("F1", "F2", "F3", "F4"), ("F5", "F6", "F7", "F8"), strict=True):
        assert keys[left].centery == keys[right].centery
        assert keys[left].right < Layout.screen.left < Layout.screen.right < keys[right].left


def key_event(key: int, mod: int = 0) -> pygame.event.Event:
    return pygame.event.Event(pygame.KEYDOWN, key=key, mod=mod)


def test_the_keyboard_table() -> None:
    cards = ["alice", "bob"]
    assert map_key(key_event(pygame.K_7), cards) == Press("7")
    assert map_key(key_event(pygame.K_KP3), cards) == Press("3")
    assert map_key(key_event(pygame.K_RETURN), cards) == Press("enter")
    assert map_key(key_event(pygame.K_ESCAPE), cards) == Press("cancel")
    assert map_key(key_event(pygame.K_BACKSPACE), cards) == Press("clear")
    assert map_key(key_event(pygame.K_F8), cards) == Press("F8")
    assert map_key(key_event(pygame.K_2, pygame.KMOD_LCTRL), cards) == InsertCard("bob")
    assert map_key(key_event(pygame.K_3, pygame.KMOD_LCTRL), cards) is None  # no third card
    assert map_key(key_event(pygame.K_c), cards) == Take("card")
    assert map_key(key_event(pygame.K_m), cards) == Take("cash")
    assert map_key(key_event(pygame.K_r), cards) == Take("receipt")
    assert map_key(key_event(pygame.K_F12), cards) == TogglePanel()
    assert map_key(key_event(pygame.K_z), cards) is None


def test_a_click_hits_the_button_drawn_there_at_any_scale() -> None:
    layout = Layout((2048, 1536))  # twice the design size
    spots = [Hotspot(r, Press(k)) for k, r in layout.pin_pad_keys().items()]
    five = layout.to_window(layout.pin_pad_keys()["5"]).center
    assert map_click(five, layout, spots) == Press("5")
    assert map_click((1, 1), layout, spots) is None


def test_sound_buffers_are_mono_16_bit_of_the_right_length() -> None:
    assert len(tone(1000, 0.1)) == 2 * int(RATE * 0.1)
    assert len(click()) == 2 * int(RATE * 0.012)
    assert max(tone(1000, 0.1)) > 0
