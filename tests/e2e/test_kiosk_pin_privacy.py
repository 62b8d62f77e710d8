"""The kiosk keeps the PIN to the PIN pad: no digit typed during PIN entry is drawn pressed,
printed, or put in a screenshot's file name.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pygame
import pytest

from device.clock import VirtualClock
from device.sim.kiosk.input_map import InsertCard, Press
from device.sim.kiosk.kiosk_app import PRESSED_SECONDS, KioskApp, KioskCustomer, run_script
from tests.e2e.conftest import MakeAtm

PIN = "1234"  # Alice's test PIN


@pytest.fixture
def kiosk(make_atm: MakeAtm, monkeypatch: pytest.MonkeyPatch) -> Iterator[KioskApp]:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    app = KioskApp(make_atm(), size=(1024, 768), sounds=False)
    yield app
    app.close()


def customer(kiosk: KioskApp) -> KioskCustomer:
    assert isinstance(kiosk.atm.clock, VirtualClock)
    return KioskCustomer(kiosk, kiosk.atm.clock)


def key_pixels(kiosk: KioskApp, key: str) -> bytes:
    """The window's pixels of one PIN pad key, drawn now."""
    kiosk.draw(force=True)
    area = kiosk.layout.to_window(kiosk.layout.pin_pad_keys()[key])
    return pygame.image.tobytes(kiosk.window.subsurface(area), "RGB")


def test_digits_of_the_pin_are_never_drawn_pressed(kiosk: KioskApp) -> None:
    who = customer(kiosk)
    who.wait_for_state("idle", 10)
    resting = key_pixels(kiosk, "5")
    kiosk.perform(Press("5"))  # outside PIN entry a pressed key shows, as on any keypad
    assert key_pixels(kiosk, "5") != resting
    time.sleep(PRESSED_SECONDS + 0.05)  # the key comes back up

    kiosk.perform(InsertCard("alice"))
    who.wait_for_state("pin_entry", 10)
    for digit in PIN:
        before = key_pixels(kiosk, digit)
        kiosk.perform(Press(digit))
        assert kiosk.fascia_state().pressed == ""
        assert key_pixels(kiosk, digit) == before, f"key {digit} drawn pressed"
    kiosk.perform(Press("enter"))
    who.wait_for_state("transaction_menu", 10)  # the digits did reach the PIN pad


def test_a_scripted_session_prints_and_names_no_pin(kiosk: KioskApp, tmp_path: Path) -> None:
    script = f"wait idle\ninsert alice\nwait pin_entry\ntype {PIN}\npress enter\n"
    script += "wait transaction_menu\n"
    said: list[str] = []
    assert isinstance(kiosk.atm.clock, VirtualClock)
    saved = run_script(
        kiosk, script.splitlines(), tmp_path / "shots", kiosk.atm.clock, say=said.append
    )
    names = [path.name for path in saved]
    assert "04-type-xxxx.png" in names
    assert not [name for name in names if PIN in name]
    assert "> type ****" in said
    assert not [line for line in said if PIN in line]
    assert kiosk.atm.controller.state == "transaction_menu"
