"""The kiosk's view model on a fake ATM: what the fascia and the operator panel show, computed
without pygame or a window."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace as NS
from typing import Any

import pytest

from device.sim.kiosk import view_model
from device.sim.kiosk.view_model import (
    FasciaState,
    NotePile,
    PanelState,
    WalletEntry,
    card_light,
    card_slot_status,
    cash_event,
    cash_light,
    cash_slot_text,
    journal_lines,
    note_caption,
    supervisor_buttons,
)

PAN = "4761739001010010"


def fake_atm(
    *,
    state: str = "idle",
    media: str = "none",
    entry: bool = True,
    presented: dict[int, int] | None = None,
    reason: str = "",
) -> Any:
    # Cassettes 1 and 3 hold the same note: the customer sees one pile of it.
    cassettes = [NS(number=n, denomination=d) for n, d in ((1, 2000), (2, 5000), (3, 2000))]
    cash_status = {
        "shutter": "closed",
        "cassettes": [
            {"number": 1, "denomination": 2000, "count": 40, "capacity": 100, "state": "ok"},
            {"number": 2, "denomination": 550, "count": 0, "capacity": 50, "state": "empty"},
        ],
        "reject_bin": 2,
        "retract_bin": 0,
        "presented": 0,
        "stacker": 0,
        "counters": {"dispensed": 7},
    }
    bay = NS(
        card_reader=NS(
            state=NS(value=media),
            entry_enabled=entry,
            card=NS(masked_pan="476173******0010") if media != "none" else None,
            status=lambda: {
                "media": media,
                "entry_enabled": entry,
                "powered": True,
                "retained": 1,
                "retain_capacity": 20,
                "commands": 9,
            },
        ),
        cash_dispenser=NS(
            cassettes=cassettes,
            presented=NS(by_cassette=presented or {}),
            shutter="closed",
            status=lambda: cash_status,
        ),
        pin_pad=NS(
            status=lambda: {
                "mode": "idle",
                "keys_loaded": True,
                "tampered": False,
                "pin_block_format": "ISO-0",
            }
        ),
        receipt_printer=NS(
            status=lambda: {"paper": "ok", "remaining_lines": 400, "online": False, "receipts": 3}
        ),
        armed=lambda: [NS(target="pin_pad", fault="key_stuck")],
        faults=NS(targets=lambda: ["pin_pad"], known=lambda target: ["key_stuck", "tamper"]),
    )
    controller = NS(
        state=state,
        screen=NS(
            name="welcome",
            lines=["Welcome", "", "Insert your card"],
            keys={"F5": NS(label="Balance"), "F1": NS(label="Withdraw")},
        ),
        config=NS(currency_symbol="EUR"),
        out_of_service_reason=reason,
        cash_available=True,
        receipts_available=False,
        host=NS(connected=False),
        advices=NS(pending=lambda: [1, 2]),
    )
    return NS(
        bay=bay,
        controller=controller,
        terminal_id="T0001",
        host_address=NS(host="127.0.0.1", port=8583),
        wallet={"alice": NS(label="Alice"), "bob": NS(label="")},
    )


def fascia(atm: Any, blink_phase: bool = True) -> FasciaState:
    return view_model.fascia_state(
        atm, cash_message="", receipts_waiting=2, pressed="5", blink_phase=blink_phase
    )


def test_the_view_model_needs_no_pygame() -> None:
    # A fresh interpreter: this one may have pygame already from other kiosk tests.
    code = "import sys, device.sim.kiosk.view_model; assert 'pygame' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fascia_piles_notes_by_denomination_and_reads_the_screen() -> None:
    state = fascia(fake_atm(media="inside", presented={1: 2, 2: 1, 3: 3}))
    assert state.notes == (NotePile(5000, 1), NotePile(2000, 5))
    assert state.function_labels == (("F1", "Withdraw"), ("F5", "Balance"))
    assert state.screen_lines == ("Welcome", "", "Insert your card")
    assert state.card_label == "476173******0010"
    assert state.wallet == (WalletEntry("alice", "Alice"), WalletEntry("bob", ""))
    assert (state.currency, state.receipts_waiting, state.pressed) == ("EUR", 2, "5")
    assert state.in_service
    assert note_caption(state.notes[1], state.currency) == "5 x EUR 20"
    assert note_caption(NotePile(550, 1), "EUR") == "1 x EUR 5.50"


@pytest.mark.parametrize(
    ("media", "entry", "presented", "phase", "blink"),
    [
        ("none", True, None, True, True),  # the empty slot's light
        ("none", True, None, False, False),  # its dark half
        ("inside", True, None, True, False),  # a card inside: nothing blinks
        ("none", False, None, True, False),  # entry off
        ("inside", False, {1: 1}, True, True),  # notes waiting
    ],
)
def test_only_an_empty_slot_taking_cards_or_waiting_notes_blink(
    media: str, entry: bool, presented: dict[int, int] | None, phase: bool, blink: bool
) -> None:
    state = fascia(fake_atm(media=media, entry=entry, presented=presented), phase)
    assert state.blink is blink
    assert cash_light(state) is (blink and bool(presented))


def test_out_of_service_and_the_slots_texts() -> None:
    state = fascia(fake_atm(state="out_of_service", media="jammed", entry=False))
    assert not state.in_service
    assert view_model.header_status(state.in_service) == "OUT OF SERVICE"
    assert card_light(state) == "red"
    assert card_slot_status("jammed", False) == "CARD JAMMED"
    assert card_slot_status("none", True) == "Insert card"
    assert card_slot_status("none", False) == ""
    assert card_slot_status("gate", True) == ""  # the card itself shows
    assert cash_slot_text(replace(state, cash_message="Cash taken")) == "Cash taken"
    jammed = replace(state, shutter="jammed", cash_message="Cash taken")
    assert cash_slot_text(jammed) == "SHUTTER JAMMED"


def test_cash_events_from_the_dispenser_counters() -> None:
    assert cash_event({"taken": 1}, {"taken": 2}) == ("Cash taken", False)
    assert cash_event({"retracted": 0, "taken": 1}, {"retracted": 1, "taken": 2}) == (
        "Notes retracted",
        True,
    )
    assert cash_event({"taken": 2}, {"taken": 2}) == ("", False)


def test_journal_lines_mask_card_numbers() -> None:
    entry = NS(seq=12, at="2024-05-01T10:11:12Z", event="card_read", fields={"pan": PAN, "b": 1})
    (line,) = journal_lines([entry])
    assert line == "12 10:11:12 card_read b=1 pan=476173******0010"


def test_panel_state_reads_the_devices_and_the_host() -> None:
    atm = fake_atm(state="out_of_service", reason="no cash")
    panel = view_model.panel_state(
        atm,
        tab="faults",
        fault_mode="once",
        host_running=False,
        message="hi",
        journal=("j",),
        recovery_report=["dispense 42 reversed"],
    )
    assert panel.host_control == "stopped"
    assert panel.armed == frozenset({"pin_pad:key_stuck"})
    assert panel.catalogue == (("pin_pad", ("key_stuck", "tamper")),)
    assert (panel.supervisor, panel.can_service) == (False, True)
    assert [c.label for c in panel.cassettes] == ["1: EUR 20", "2: EUR 5.50"]
    lines = dict((text, kind) for kind, text in panel.status_lines)
    assert lines["out of service: no cash"] == "warn"
    assert lines["Host link 127.0.0.1:8583: not connected; bank host DOWN"] == "title"
    assert lines["cash available, receipts NOT available"] == "text"
    assert lines["  cassette 2: 0 x EUR 5.50 (empty)"] == "text"
    assert lines["  paper ok (400 lines left), OFFLINE, receipts 3"] == "text"
    assert lines["  dispensed 7"] == "dim"
    assert lines["  dispense 42 reversed"] == "text"
    assert view_model.host_control(None) == "unavailable"
    assert view_model.host_button_text("stopped") == "Host: bring up"


def test_supervisor_buttons_follow_the_mode() -> None:
    def enabled(supervisor: bool, can_service: bool) -> dict[str, bool]:
        state = PanelState("supervisor", (), (), frozenset(), "running", supervisor, can_service)
        return {command: on for _text, command, on in supervisor_buttons(state)}

    during_session = enabled(False, False)
    assert not during_session["replenish"] and not during_session["purge"]
    assert during_session["supervisor"] and during_session["clear_faults"]
    supervising = enabled(True, True)
    assert supervising["purge"] and supervising["remove_card"] and supervising["replenish"]
    assert supervisor_buttons(PanelState("s", (), (), frozenset(), "", True, True))[0][0] == (
        "Leave supervisor mode"
    )
