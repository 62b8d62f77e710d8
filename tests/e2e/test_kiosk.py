"""The kiosk window driven by synthetic pygame events on SDL's dummy video driver; the checks
read what is drawn (pixels and rendered text) as well as the bank and the devices.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pygame
import pytest
from pytest_mock import MockerFixture

from device.clock import VirtualClock
from device.sim.bank_stack import BankStack
from device.sim.kiosk.fascia import (
    CARD_BLUE,
    NOTE_COLOURS,
    PAPER,
    SCREEN_BG,
    SCREEN_LABEL,
    SCREEN_TEXT,
)
from device.sim.kiosk.input_map import Hotspot, Operator
from device.sim.kiosk.kiosk_app import (
    BLINK_SECONDS,
    FPS,
    HostSwitch,
    KioskApp,
    KioskCustomer,
    run_script,
)
from device.sim.kiosk.layout import Layout
from tests.e2e.conftest import MakeAtm

ALICE_CHECKING = "10000001"


@pytest.fixture
def kiosk(
    make_atm: MakeAtm, bank_stack: BankStack, monkeypatch: pytest.MonkeyPatch
) -> Iterator[KioskApp]:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    app = KioskApp(make_atm(), size=(1024, 768), host_switch=HostSwitch(bank_stack.server))
    yield app
    app.close()


def customer(kiosk: KioskApp) -> KioskCustomer:
    assert isinstance(kiosk.atm.clock, VirtualClock)
    return KioskCustomer(kiosk, kiosk.atm.clock)


def key(kiosk: KioskApp, code: int, mod: int = 0) -> None:
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=code, mod=mod, unicode=""))
    customer(kiosk).settle()


def click(kiosk: KioskApp, design_rect: pygame.Rect) -> None:
    point = kiosk.layout.to_window(design_rect).center
    pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=point, button=1))
    customer(kiosk).settle()


def drawn_text(kiosk: KioskApp, text: str) -> bool:
    """Whether the window shows `text` on the ATM screen: its pixels where the fascia drew it
    are exactly that text rendered in a screen colour."""
    kiosk.draw(force=True)
    screen = kiosk.layout.to_window(Layout.screen)
    for shown, rect in kiosk.fascia.screen_text:
        if shown != text or not screen.contains(rect):
            continue
        actual = pygame.image.tobytes(kiosk.window.subsurface(rect), "RGB")
        for size in range(8, 64):
            for colour in (SCREEN_TEXT, SCREEN_LABEL):
                for bold in (False, True):
                    surface = kiosk.fascia.text(text, size, colour, SCREEN_BG, bold)
                    if surface.get_size() == rect.size and (
                        pygame.image.tobytes(surface, "RGB") == actual
                    ):
                        return True
    return False


def share_of_colour(
    kiosk: KioskApp, design_rect: pygame.Rect, colour: tuple[int, int, int]
) -> float:
    """The fraction of the window's pixels in `design_rect` that are (nearly) `colour`."""
    kiosk.draw(force=True)
    area = kiosk.layout.to_window(design_rect)
    region = kiosk.window.subsurface(area).copy()
    mask = pygame.mask.from_threshold(region, (*colour, 255), (12, 12, 12, 255))
    return mask.count() / (area.width * area.height)


def test_a_whole_withdrawal_by_mouse_and_keyboard(kiosk: KioskApp, bank_stack: BankStack) -> None:
    before = bank_stack.account_balance(ALICE_CHECKING)
    who = customer(kiosk)
    who.wait_for_state("idle", 10)
    assert drawn_text(kiosk, "Please insert your card")
    layout = kiosk.layout
    click(kiosk, layout.card_buttons(len(kiosk.atm.wallet))[0])  # Alice's card
    who.wait_for_state("pin_entry", 10)
    assert drawn_text(kiosk, "Please enter your PIN")
    pad = layout.pin_pad_keys()
    for digit in "1234":
        click(kiosk, pad[digit])
    assert drawn_text(kiosk, "****")
    key(kiosk, pygame.K_RETURN)
    who.wait_for_state("transaction_menu", 10)
    assert drawn_text(kiosk, "Withdraw cash")
    key(kiosk, pygame.K_F1)
    who.wait_for_state("account_selection", 10)
    click(kiosk, layout.function_keys()["F1"])  # checking
    who.wait_for_state("amount_entry", 10)
    assert drawn_text(kiosk, "50.00")
    key(kiosk, pygame.K_F2)
    who.wait_for_state("ejecting_card", 10)
    assert share_of_colour(kiosk, layout.card_at_gate().inflate(-20, -30), CARD_BLUE) > 0.5
    click(kiosk, Layout.card_slot)
    who.wait_for_state("presenting_cash", 10)
    assert share_of_colour(kiosk, layout.cash_mouth(), NOTE_COLOURS[5000]) > 0.1
    assert drawn_text(kiosk, "Please take your cash")
    key(kiosk, pygame.K_m)
    who.wait_for_state("idle", 10)
    assert share_of_colour(kiosk, layout.cash_mouth(), NOTE_COLOURS[5000]) == 0
    assert share_of_colour(kiosk, layout.receipt_paper().inflate(-10, -20), PAPER) > 0.5
    key(kiosk, pygame.K_r)  # tear the receipt off and hold it up
    assert kiosk.reading == 0
    paper_top = pygame.Rect(332, 80, 360, 60)  # the head of the receipt held up to read
    assert share_of_colour(kiosk, paper_top, (255, 255, 255)) > 0.3
    assert "WITHDRAWAL EUR 50.00" in kiosk.atm.receipts()[0]
    key(kiosk, pygame.K_r)
    assert kiosk.reading is None
    assert bank_stack.account_balance(ALICE_CHECKING) == before - 5000


def test_cash_left_is_retracted_and_the_slot_empties(kiosk: KioskApp) -> None:
    script = """
wait idle
insert bob
wait pin_entry
type 4321
press enter
wait transaction_menu
press F1
wait account_selection
press F1
wait amount_entry
press F1
wait ejecting_card
take card
wait presenting_cash
leave cash
wait idle 60
"""
    assert isinstance(kiosk.atm.clock, VirtualClock)
    run_script(kiosk, script.splitlines(), None, kiosk.atm.clock, say=lambda _: None)
    assert kiosk.atm.bay.cash_dispenser.retract_bin.notes == 1
    assert share_of_colour(kiosk, kiosk.layout.cash_mouth(), NOTE_COLOURS[2000]) == 0
    assert "CASH RETRACTED" in kiosk.atm.receipts()[-1]


def find(spots: list[Hotspot], action: Operator) -> pygame.Rect:
    return next(s.rect for s in spots if s.action == action)


def test_operator_panel_faults_host_and_power(kiosk: KioskApp, tmp_path: Path) -> None:
    customer(kiosk).wait_for_state("idle", 10)
    key(kiosk, pygame.K_F12)
    assert kiosk.layout.canvas[0] > 1024  # the panel widened the canvas, aspect kept
    click(kiosk, find(kiosk.hotspots, Operator("tab", "faults")))
    click(kiosk, find(kiosk.hotspots, Operator("fault", "receipt_printer:paper_out")))
    assert "receipt_printer: paper_out" in " ".join([str(f) for f in kiosk.atm.bay.armed()])
    click(kiosk, find(kiosk.hotspots, Operator("fault", "receipt_printer:paper_out")))
    assert [str(f) for f in kiosk.atm.bay.armed()] == []
    click(kiosk, find(kiosk.hotspots, Operator("host")))
    assert kiosk.host_switch is not None and not kiosk.host_switch.running
    click(kiosk, find(kiosk.hotspots, Operator("host")))
    assert kiosk.host_switch.running
    old = kiosk.atm
    click(kiosk, find(kiosk.hotspots, Operator("power")))
    assert kiosk.atm is not old
    customer(kiosk).wait_for_state("idle", 10)
    click(kiosk, find(kiosk.hotspots, Operator("tab", "supervisor")))
    click(kiosk, find(kiosk.hotspots, Operator("supervisor")))
    assert kiosk.atm.controller.state == "supervisor"
    click(kiosk, find(kiosk.hotspots, Operator("replenish")))
    assert all(c.count == c.capacity for c in kiosk.atm.bay.cash_dispenser.cassettes)
    assert "replenished" in [e.event for e in kiosk.atm.journal.entries()]
    click(kiosk, find(kiosk.hotspots, Operator("supervisor")))
    customer(kiosk).wait_for_state("idle", 10)
    shot = kiosk.screenshot(tmp_path / "panel.png")
    assert pygame.image.load(str(shot)).get_size() == (1024, 768)


def test_resizing_keeps_the_aspect_ratio_and_the_drawing(kiosk: KioskApp) -> None:
    customer(kiosk).wait_for_state("idle", 10)
    pygame.display.set_mode((1600, 900), pygame.RESIZABLE)
    pygame.event.post(pygame.event.Event(pygame.VIDEORESIZE, size=(1600, 900), w=1600, h=900))
    customer(kiosk).settle()
    canvas = kiosk.layout.canvas_rect
    assert canvas.height == 900 and abs(canvas.width - 1200) <= 1
    assert drawn_text(kiosk, "Please insert your card")


def test_an_idle_kiosk_asks_the_card_reader_once_a_frame(
    kiosk: KioskApp, mocker: MockerFixture
) -> None:
    assert kiosk.atm.controller.state == "idle"
    status = mocker.spy(kiosk.atm.controller.card_reader, "status")
    for _ in range(10):
        kiosk.frame()
    assert status.call_count == 10  # one poll a frame, not one per controller step
    assert kiosk.atm.controller.state == "idle"


def test_an_idle_kiosk_draws_nothing_until_a_key_or_the_screen_changes(
    make_atm: MakeAtm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the virtual clock, as the kiosk's own clock too: no timing in the checks."""
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    atm = make_atm()
    clock = atm.clock
    assert isinstance(clock, VirtualClock)
    app = KioskApp(atm, size=(1024, 768), sounds=False, now=clock.monotonic)
    try:
        KioskCustomer(app, clock).wait_for_state("idle", 10)
        clock.advance(1.0)  # past the last change: the loop goes quiet
        app.frame()
        # Just after the card light blinked: for the next 0.4 s nothing shown changes.
        clock.advance(BLINK_SECONDS - clock.monotonic() % BLINK_SECONDS + 0.01)
        app.frame()
        draws = app.draws
        for _ in range(40):
            clock.advance(0.01)
            app.frame()
        assert app.draws == draws, "the idle kiosk redrew with nothing changed"
        assert not app.busy()
        # Idle, the loop waits for input until the light's next blink, not a frame at a time.
        assert app.idle_wait() > 1 / FPS
        assert app.idle_wait() == pytest.approx(BLINK_SECONDS - clock.monotonic() % BLINK_SECONDS)

        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_5, mod=0, unicode=""))
        app.frame()
        assert app.draws == draws + 1, "a key press was not drawn in its own frame"
        assert app.fascia_state().pressed == "5"
        assert app.busy()  # full frame rate after input

        clock.advance(1.0)  # the key comes back up
        app.frame()
        clock.advance(1.0)
        app.frame()
        assert not app.busy()
        draws = app.draws
        atm.controller.show("idle", notice="Cash is not available")  # the ATM changes its screen
        app.frame()
        assert app.draws == draws + 1, "a new screen was not drawn in the next frame"
        assert drawn_text(app, "Cash is not available")
        assert app.busy()
    finally:
        app.close()


def test_supervisor_sets_each_cassette_count_from_the_panel(kiosk: KioskApp) -> None:
    customer(kiosk).wait_for_state("idle", 10)
    key(kiosk, pygame.K_F12)
    click(kiosk, find(kiosk.hotspots, Operator("tab", "supervisor")))
    outside = Operator("disabled", "+10")  # exchange buttons are off outside supervisor mode
    assert any(spot.action == outside for spot in kiosk.hotspots)
    click(kiosk, find(kiosk.hotspots, Operator("supervisor")))
    assert kiosk.atm.controller.state == "supervisor"
    cassettes = {c.number: c for c in kiosk.atm.bay.cash_dispenser.cassettes}
    first, second = sorted(cassettes)[:2]
    before = cassettes[first].count
    click(kiosk, find(kiosk.hotspots, Operator("cassette", f"{first}:-10")))
    click(kiosk, find(kiosk.hotspots, Operator("cassette", f"{second}:empty")))
    counts = {c.number: c.count for c in kiosk.atm.bay.cash_dispenser.cassettes}
    assert counts[first] == before - 10 and counts[second] == 0
    exchanges = [
        e.fields["counts"] for e in kiosk.atm.journal.entries() if e.event == "replenished"
    ]
    assert exchanges == [{str(first): before - 10}, {str(second): 0}]
    click(kiosk, find(kiosk.hotspots, Operator("cassette", f"{second}:full")))
    counts = {c.number: c.count for c in kiosk.atm.bay.cash_dispenser.cassettes}
    assert counts[second] == cassettes[second].capacity
    click(kiosk, find(kiosk.hotspots, Operator("supervisor")))
    customer(kiosk).wait_for_state("idle", 10)


def test_a_fault_switched_on_in_once_mode_fires_once_and_is_gone(kiosk: KioskApp) -> None:
    customer(kiosk).wait_for_state("idle", 10)
    key(kiosk, pygame.K_F12)
    click(kiosk, find(kiosk.hotspots, Operator("tab", "faults")))
    click(kiosk, find(kiosk.hotspots, Operator("fault_mode", "once")))
    click(kiosk, find(kiosk.hotspots, Operator("fault", "card_reader.link:drop")))
    assert "drop (once)" in kiosk._panel_message.get()
    # The idle ATM polls the card reader each frame: the first poll was lost, the driver sent it
    # again, and the fault is gone (a persistent drop would take the ATM out of service).
    customer(kiosk).wait_for_state("idle", 10)
    assert [str(f) for f in kiosk.atm.bay.armed()] == []
    assert kiosk.atm.controller.state == "idle"


def test_supervisor_purges_loose_notes_and_removes_a_stuck_card(kiosk: KioskApp) -> None:
    customer(kiosk).wait_for_state("idle", 10)
    key(kiosk, pygame.K_F12)
    click(kiosk, find(kiosk.hotspots, Operator("tab", "supervisor")))
    click(kiosk, find(kiosk.hotspots, Operator("supervisor")))
    assert kiosk.atm.controller.state == "supervisor"
    click(kiosk, find(kiosk.hotspots, Operator("purge")))
    assert "purged to the reject bin" in kiosk._panel_message.get()
    kiosk.atm.bay.card_reader.insert_card("alice")  # entry is off: the card waits at the gate
    kiosk.atm.controller.card_stuck = True  # as after an eject and a capture that both failed
    click(kiosk, find(kiosk.hotspots, Operator("remove_card")))
    assert kiosk.atm.bay.card_reader.status()["media"] == "none"
    assert not kiosk.atm.controller.card_stuck
    events = [e.event for e in kiosk.atm.journal.entries()]
    assert "purged" in events and "card_removed_by_operator" in events
    click(kiosk, find(kiosk.hotspots, Operator("supervisor")))
    customer(kiosk).wait_for_state("idle", 10)
