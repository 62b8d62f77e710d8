"""Unit tests of the ATM controller alone: devices and host are in-memory fakes of the ports."""

from __future__ import annotations

import datetime as dt
import errno
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from device.advice_queue import AdviceQueue
from device.clock import VirtualClock
from device.controller.atm_controller import AtmController, ControllerConfig, SupervisorError
from device.controller.controller_events import ControllerEvent
from device.controller.ports import CardData, DeviceFault, HostReply, HostUnavailable, PinBlock
from device.journal import Journal, JournalWriteError
from device.screens import DEFAULT_SCREENS, load_screens

PAN = "4761739001010010"


class FakeCardReader:
    def __init__(self) -> None:
        self.media = "none"
        self.entry_enabled = False
        self.captured = 0

    def initialise(self) -> None: ...
    def status(self) -> Any:
        return SimpleNamespace(media=self.media, retain_bin_full=False)

    def enable_entry(self) -> None:
        self.entry_enabled = True

    def disable_entry(self) -> None:
        self.entry_enabled = False

    def read_tracks(self) -> Any:
        return SimpleNamespace(pan=PAN, expiry="3012", service_code="201")

    def eject(self) -> None:
        self.media = "gate"

    def capture(self) -> None:
        self.media = "none"
        self.captured += 1

    def close(self) -> None: ...


class FakePinPad:
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.typed = ""
        self.mode = "idle"

    def key(self, kind: str, value: str = "") -> None:
        if kind == "digit" and self.mode == "pin_entry":
            self.typed += value
            value = "*"
        self.events.append(SimpleNamespace(kind=kind, value=value))

    def status(self) -> Any:
        return SimpleNamespace(keys_loaded=True, tampered=False, mode=self.mode)

    def start_plain_entry(self) -> None:
        self.mode = "plain"

    def stop_entry(self) -> None:
        self.mode = "idle"

    def start_pin_entry(self, pan: str, **options: Any) -> None:
        self.mode, self.typed = "pin_entry", ""

    def poll_events(self, timeout: float = 0.0) -> list[Any]:
        events, self.events = self.events, []
        return events

    def get_pin_block(self) -> Any:
        return SimpleNamespace(block=("PIN" + self.typed).encode(), format=0, ksn=None)

    def cancel(self) -> None:
        self.mode = "idle"

    def close(self) -> None: ...


@dataclass
class FakeDispenser:
    notes: int = 100
    stacker: int = 0
    presented: int = 0
    customer: int = 0
    retracted: int = 0
    rejected: int = 0
    jam: bool = False
    taken_flag: bool = False
    transport: int = 0
    last_outcome: str = "none"

    def status(self) -> Any:
        cassette = SimpleNamespace(number=1, denomination=1000, count=self.notes, state="ok")
        return SimpleNamespace(
            cassettes=[cassette],
            device_ok=not self.transport,
            stacker_notes=self.stacker,
            presented_notes=self.presented,
            transport_notes=self.transport,
            last_outcome=self.last_outcome,
        )

    def dispense(self, notes: dict[int, int], *, transaction: int) -> Any:
        count = notes[1]
        moved = count // 2 if self.jam else count
        self.notes -= moved
        self.stacker += moved
        ok = not self.jam
        return SimpleNamespace(ok=ok, amount=moved * 1000, error=None if ok else "jam")

    def present(self) -> Any:
        self.presented, self.stacker = self.stacker, 0
        self.last_outcome = "presented"
        return SimpleNamespace(ok=True, presented_amount=self.presented * 1000, error=None)

    def taken(self) -> bool:
        if self.taken_flag and self.presented:
            self.customer += self.presented
            self.presented = 0
            self.last_outcome = "taken"
        return self.last_outcome == "taken" or (self.taken_flag and not self.presented)

    def retract(self) -> Any:
        count, self.presented = self.presented, 0
        self.retracted += count
        if count:
            self.last_outcome = "retracted"
        return SimpleNamespace(notes=count, amount=count * 1000)

    def purge(self) -> int:
        count, self.stacker, self.transport = self.stacker + self.transport, 0, 0
        self.rejected += count
        return count

    def replenish(self, counts: dict[int, int]) -> None:
        self.notes = counts[1]

    def close(self) -> None: ...


class FakePrinter:
    def __init__(self) -> None:
        self.receipts: list[list[str]] = []
        self.paper = "adequate"

    def status(self) -> Any:
        return SimpleNamespace(online=True, paper=self.paper)

    def print_receipt(self, lines: list[str], **options: Any) -> None:
        self.receipts.append(lines)

    def close(self) -> None: ...


@dataclass
class FakeHost:
    funds: int = 100_000
    good_pin: bytes = b"PIN1234"
    wrong_pins: int = 0
    down: bool = False
    stan: int = 0
    holds: dict[str, int] = field(default_factory=dict)
    completions: list[tuple[str, int]] = field(default_factory=list)
    reversals: list[tuple[str, int]] = field(default_factory=list)

    def _reply(self, code: str) -> HostReply:
        if self.down:
            raise HostUnavailable("connection refused")
        self.stan += 1
        now = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
        return HostReply(code, f"{self.stan:06d}", now, self.funds, self.funds)

    def sign_on(self) -> None:
        self._reply("00")

    def echo(self) -> None:
        self._reply("00")

    def verify_pin(self, card: CardData, pin: PinBlock) -> HostReply:
        if pin.block == self.good_pin:
            return self._reply("00")
        self.wrong_pins += 1
        return self._reply("75" if self.wrong_pins >= 3 else "55")

    def balance(self, card: CardData, pin: PinBlock, account: str) -> HostReply:
        return self._reply("00")

    def withdraw(
        self,
        card: CardData,
        pin: PinBlock,
        account: str,
        amount: int,
        *,
        before_send: Callable[[str, dt.datetime], None] | None = None,
    ) -> HostReply:
        if before_send is not None:
            before_send(f"{self.stan + 1:06d}", dt.datetime(2026, 11, 28, tzinfo=dt.UTC))
        if amount > self.funds:
            return self._reply("51")
        reply = self._reply("00")
        self.holds[reply.stan] = amount
        return reply

    def transfer(self, card: CardData, pin: PinBlock, a: str, b: str, amount: int) -> HostReply:
        return self._reply("00")

    def mini_statement(self, card: CardData, pin: PinBlock, account: str) -> HostReply:
        return self._reply("00")

    def change_pin(self, card: CardData, pin: PinBlock, new_pin: PinBlock) -> HostReply:
        return self._reply("00")

    def complete(self, original_stan: str, transmitted_at: str, amount: int) -> str:
        if self.down:
            raise HostUnavailable("down")
        self.completions.append((original_stan, amount))
        self.funds -= amount
        return "00"

    def reverse(self, stan: str, transmitted_at: str, amount: int, dispensed: int) -> str:
        if self.down:
            raise HostUnavailable("down")
        self.reversals.append((stan, dispensed))
        self.funds -= dispensed
        return "00"


def plan_notes(amount: int, cassettes: Any) -> dict[int, int] | None:
    if amount % 1000 or amount // 1000 > cassettes[0].count:
        return None
    return {1: amount // 1000}


@dataclass
class Rig:
    atm: AtmController
    reader: FakeCardReader
    pad: FakePinPad
    dispenser: FakeDispenser
    printer: FakePrinter
    host: FakeHost
    clock: VirtualClock
    journal: Journal

    def run(self, steps: int = 20, advance: float = 0.0) -> None:
        for _ in range(steps):
            self.atm.step()
            if advance:
                self.clock.advance(advance)

    def insert_card_and_pin(self, pin: str = "1234") -> None:
        self.reader.media = "inside"
        self.run(2)
        for digit in pin:
            self.pad.key("digit", digit)
        self.pad.key("enter")
        self.run(3)

    def press(self, key: str) -> None:
        self.pad.key("function", key)
        self.run(3)

    def events(self) -> list[str]:
        return [e.event for e in self.journal.entries()]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    clock = VirtualClock()
    journal = Journal(tmp_path / "journal.jsonl")
    parts = FakeCardReader(), FakePinPad(), FakeDispenser(), FakePrinter(), FakeHost()
    atm = AtmController(
        card_reader=parts[0],
        pin_pad=parts[1],
        dispenser=parts[2],
        printer=parts[3],
        host=parts[4],
        journal=journal,
        advices=AdviceQueue(tmp_path / "advices.jsonl"),
        screens=load_screens(DEFAULT_SCREENS),
        clock=clock,
        config=ControllerConfig(terminal_id="ATM00001"),
        plan_notes=plan_notes,
    )
    atm.start()
    yield Rig(atm, *parts, clock, journal)
    journal.close()


def test_withdrawal_returns_card_before_cash_and_completes(rig: Rig) -> None:
    assert rig.atm.state == "idle"
    rig.insert_card_and_pin()
    assert rig.atm.state == "transaction_menu"
    rig.press("F1")  # withdraw
    rig.press("F1")  # checking
    rig.press("F2")  # 50.00
    assert rig.atm.state == "ejecting_card"
    assert rig.dispenser.stacker == 5 and rig.dispenser.presented == 0
    rig.reader.media = "none"  # customer takes the card
    rig.run(2)
    assert rig.atm.state == "presenting_cash"
    rig.dispenser.taken_flag = True
    rig.run(5, advance=0.5)
    assert rig.atm.state == "idle"
    assert rig.dispenser.customer == 5
    assert rig.host.completions == [("000003", 5000)]
    assert rig.host.funds == 95_000
    assert any("WITHDRAWAL EUR 50.00" in line for line in rig.printer.receipts[0])
    order = [e for e in rig.events() if e in ("authorised", "card_taken", "presented", "taken")]
    assert order == ["authorised", "card_taken", "presented", "taken"]


def test_lines_with_nothing_between_them_are_one_journal_write(rig: Rig) -> None:
    writes: list[list[str]] = []
    rig.journal.listeners.append(lambda entries: writes.append([e.event for e in entries]))
    withdraw_fifty(rig)
    rig.reader.media = "none"
    rig.run(2)
    rig.dispenser.taken_flag = True
    rig.run(5, advance=0.5)
    assert rig.atm.state == "idle"
    assert ["card_taken", "present_started"] in writes
    assert ["receipt_printed", "session_closed"] in writes
    assert sum(w.count("card_taken") + w.count("session_closed") for w in writes) == 2


def test_a_card_taken_with_no_cash_to_follow_is_journalled_at_once(rig: Rig) -> None:
    writes: list[list[str]] = []
    rig.journal.listeners.append(lambda entries: writes.append([e.event for e in entries]))
    rig.insert_card_and_pin()
    rig.press("F8")  # cancel: the card comes back, no cash
    rig.reader.media = "none"
    rig.run(3)
    assert ["card_taken"] in writes and ["session_closed"] in writes


def test_cash_not_taken_is_retracted_and_reversed(rig: Rig) -> None:
    rig.insert_card_and_pin()
    rig.press("F1")
    rig.press("F1")
    rig.press("F3")  # 100.00
    rig.reader.media = "none"
    rig.run(2)
    assert rig.atm.state == "presenting_cash"
    rig.clock.advance(31)
    rig.run(5, advance=0.5)
    assert rig.dispenser.retracted == 10 and rig.dispenser.customer == 0
    assert rig.host.reversals == [("000003", 0)]
    assert rig.host.funds == 100_000
    assert rig.atm.state == "idle"


def test_card_not_taken_is_captured_and_cash_never_presented(rig: Rig) -> None:
    rig.insert_card_and_pin()
    rig.press("F1")
    rig.press("F1")
    rig.press("F2")
    rig.clock.advance(31)
    rig.run(8, advance=1.0)
    assert rig.reader.captured == 1
    assert rig.dispenser.rejected == 5 and rig.dispenser.presented == 0
    assert rig.host.reversals == [("000003", 0)]


def test_jam_mid_dispense_purges_and_reverses_in_full(rig: Rig) -> None:
    rig.dispenser.jam = True
    rig.insert_card_and_pin()
    rig.press("F1")
    rig.press("F1")
    rig.press("F4")  # 200.00
    assert rig.atm.screen.name == "declined"
    assert rig.dispenser.rejected == 10 and rig.dispenser.customer == 0
    assert rig.host.reversals == [("000003", 0)]
    assert "purged" in rig.events()


def test_three_wrong_pins_capture_the_card(rig: Rig) -> None:
    rig.insert_card_and_pin("1111")
    assert rig.atm.state == "pin_entry"
    assert "Incorrect PIN" in rig.atm.screen.text()
    for _ in range(2):
        for digit in "9999":
            rig.pad.key("digit", digit)
        rig.pad.key("enter")
        rig.run(3)
    assert rig.atm.state == "capturing_card"
    assert rig.reader.captured == 1


def test_amount_the_cassettes_cannot_make_is_refused_before_the_host(rig: Rig) -> None:
    rig.insert_card_and_pin()
    rig.press("F1")
    rig.press("F1")
    rig.press("F5")  # other amount
    for digit in "25":  # 25.00 is not a multiple of the 10.00 note
        rig.pad.key("digit", digit)
    rig.pad.key("enter")
    rig.run(3)
    assert rig.atm.state == "amount_entry"
    assert "cannot be dispensed" in rig.atm.screen.text()
    assert rig.host.holds == {}


def test_stray_keys_are_ignored(rig: Rig) -> None:
    rig.pad.key("function", "F3")
    rig.pad.key("digit", "7")
    rig.run(3)
    assert rig.atm.state == "idle"
    assert rig.atm.fire(ControllerEvent.DISPENSE) is False
    assert rig.atm.state == "idle"


def test_the_event_enum_is_exactly_the_machine_s_triggers(rig: Rig) -> None:
    assert set(rig.atm.machine.events) == set(ControllerEvent)


def test_a_misspelt_event_is_a_bug_not_a_silent_no_op(rig: Rig) -> None:
    with pytest.raises(ValueError, match="'dispence' is not an event of the ATM controller"):
        rig.atm.fire("dispence")
    assert rig.atm.state == "idle"


def test_inactivity_asks_for_more_time_then_ends_the_session(rig: Rig) -> None:
    rig.insert_card_and_pin()
    rig.clock.advance(121)
    rig.run(1)
    assert rig.atm.screen.name == "more_time"
    rig.press("F4")  # yes
    assert rig.atm.screen.name == "transaction_menu"
    rig.clock.advance(121)
    rig.run(1)
    rig.clock.advance(31)
    rig.run(1)
    assert rig.atm.state == "ejecting_card"


def test_cancel_returns_the_card(rig: Rig) -> None:
    rig.insert_card_and_pin()
    rig.press("F8")
    assert rig.atm.state == "ejecting_card" and rig.reader.media == "gate"


def test_host_down_takes_the_atm_out_of_service_until_it_returns(rig: Rig) -> None:
    rig.host.down = True
    rig.run(1, advance=6)
    rig.run(1)
    assert rig.atm.state == "out_of_service"
    rig.host.down = False
    rig.clock.advance(6)
    rig.run(2)
    assert rig.atm.state == "idle"


def test_no_paper_still_serves_without_receipt(rig: Rig) -> None:
    rig.printer.paper = "out"
    rig.insert_card_and_pin()
    assert "No receipts" in rig.atm.screen.text()


def test_device_fault_in_idle_goes_out_of_service(rig: Rig, mocker: Any) -> None:
    mocker.patch.object(rig.reader, "status", side_effect=DeviceFault("jammed", "10"))
    rig.run(1)
    assert rig.atm.state == "out_of_service"


def test_no_paper_asks_before_the_transaction_and_goes_on_without_receipt(rig: Rig) -> None:
    rig.printer.paper = "out"
    rig.insert_card_and_pin()
    rig.press("F2")  # balance
    assert rig.atm.screen.name == "receipt_unavailable"
    rig.press("F4")  # continue without a receipt
    assert rig.atm.state == "account_selection"
    rig.press("F1")
    rig.press("F8")
    rig.reader.media = "none"
    rig.run(3)
    assert rig.printer.receipts == []


def test_no_paper_cancel_returns_the_card(rig: Rig) -> None:
    rig.printer.paper = "out"
    rig.insert_card_and_pin()
    rig.press("F1")
    rig.press("F8")
    assert rig.atm.state == "ejecting_card"


def test_operator_hold_keeps_the_atm_out_of_service(rig: Rig) -> None:
    assert rig.atm.set_out_of_service(True)
    assert rig.atm.state == "out_of_service"
    rig.run(3, advance=6)
    assert rig.atm.state == "out_of_service"
    rig.atm.set_out_of_service(False)
    rig.run(2)
    assert rig.atm.state == "idle"


def test_supervisor_replenishes_between_customers_only(rig: Rig) -> None:
    with pytest.raises(SupervisorError):
        rig.atm.replenish({1: 500})
    assert rig.atm.open_supervisor()
    rig.atm.replenish({1: 500})
    assert rig.dispenser.notes == 500
    assert rig.atm.close_supervisor()
    assert rig.atm.state == "idle"
    assert {"supervisor_entered", "replenished", "supervisor_left"} <= set(rig.events())
    rig.insert_card_and_pin()
    assert rig.atm.open_supervisor() is False


def test_withdrawal_reply_lost_is_reversed_blind_and_the_card_returned(rig: Rig) -> None:
    rig.insert_card_and_pin()

    def lost(card: CardData, pin: PinBlock, account: str, amount: int, **_: Any) -> HostReply:
        error = HostUnavailable("no answer within 30 s")
        error.stan, error.transmitted_at = "000042", dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
        raise error

    rig.host.withdraw = lost  # type: ignore[method-assign]
    rig.press("F1")
    rig.press("F1")
    rig.press("F2")
    assert rig.atm.state == "ejecting_card"
    assert rig.host.reversals == [("000042", 0)]
    assert rig.dispenser.notes == 100


@pytest.mark.parametrize(
    ("customer_took_the_notes", "next_customer_at_once"),
    [(True, False), (False, False), (True, True)],
)
def test_cash_left_while_the_dispenser_is_silent_is_settled_once_it_answers(
    rig: Rig, mocker: Any, customer_took_the_notes: bool, next_customer_at_once: bool
) -> None:
    rig.insert_card_and_pin()
    rig.press("F1")
    rig.press("F1")
    rig.press("F2")
    rig.reader.media = "none"
    rig.run(2)
    assert rig.atm.state == "presenting_cash"
    silent = DeviceFault("no answer in 3 tries", "")
    for name in ("status", "taken", "retract"):
        mocker.patch.object(rig.dispenser, name, side_effect=silent)
    rig.clock.advance(31)
    rig.run(5, advance=0.5)
    # Neither a completion nor a reversal would be honest while nobody can count the notes.
    assert rig.host.reversals == [] and rig.host.completions == []
    assert "settlement_deferred" in rig.events() and "suspect" not in rig.events()
    assert rig.atm.state == "idle" and not rig.atm.cash_available
    rig.clock.advance(10)
    rig.run(3)
    assert rig.host.reversals == [] and rig.host.completions == []  # still silent: still open
    mocker.stopall()  # the dispenser answers again
    if customer_took_the_notes:  # the shutter is empty and the dispenser saw them go
        rig.dispenser.last_outcome = "taken"
        rig.dispenser.customer += rig.dispenser.presented
        rig.dispenser.presented = 0
    if next_customer_at_once:  # a busy ATM: no idle health check before the session ends
        rig.insert_card_and_pin()
        rig.press("F8")
        rig.reader.media = "none"
        rig.run(3, advance=0.5)
        assert rig.atm.state == "idle"
    else:
        rig.clock.advance(10)
        rig.run(3)
    if customer_took_the_notes:
        assert [amount for _, amount in rig.host.completions] == [5000]  # F2: 50.00
        assert rig.host.reversals == []
    else:
        assert [amount for _, amount in rig.host.reversals] == [0]  # all notes retracted
        assert rig.host.completions == []
    assert rig.atm.cash_available
    assert "suspect" not in rig.events()


def fail_journal_at(rig: Rig, mocker: Any, event: str) -> None:
    """The journal's write holding `event` fails (full disk): JournalWriteError, as Journal
    raises (`record` writes through `record_many`)."""
    record_many = rig.journal.record_many

    def failing(events: Any) -> Any:
        events = list(events)
        if any(name == event for name, _ in events):
            raise JournalWriteError(rig.journal.path, "no space left on device", errno.ENOSPC)
        return record_many(events)

    mocker.patch.object(rig.journal, "record_many", side_effect=failing)


def withdraw_fifty(rig: Rig) -> None:
    rig.insert_card_and_pin()
    rig.press("F1")
    rig.press("F1")
    rig.press("F2")


def test_an_approved_withdrawal_s_answer_and_approval_are_one_journal_write(rig: Rig) -> None:
    writes: list[list[str]] = []
    rig.journal.listeners.append(lambda entries: writes.append([e.event for e in entries]))
    withdraw_fifty(rig)
    assert rig.atm.state == "ejecting_card"
    assert ["authorisation", "authorised"] in writes
    assert sum(events.count("authorisation") for events in writes) == 1


def test_a_declined_answer_is_journalled_alone(rig: Rig) -> None:
    rig.host.funds = 1_000  # less than the 50.00 asked
    writes: list[list[str]] = []
    rig.journal.listeners.append(lambda entries: writes.append([e.event for e in entries]))
    withdraw_fifty(rig)
    assert ["authorisation"] in writes and not any("authorised" in w for w in writes)


def test_a_failed_intent_write_stops_before_the_request_leaves(rig: Rig, mocker: Any) -> None:
    fail_journal_at(rig, mocker, "withdrawal_requested")
    withdraw_fifty(rig)
    assert rig.atm.state == "out_of_service"
    assert rig.host.holds == {}  # the 0200 never left
    assert rig.dispenser.notes == 100 and rig.dispenser.stacker == 0
    assert rig.reader.media == "gate"  # the card is given back
    assert "journal cannot be written" in rig.atm.out_of_service_reason
    rig.run(3, advance=6)
    assert rig.atm.state == "out_of_service"  # until a restart reopens the journal


def test_a_failed_dispense_intent_write_dispenses_nothing(rig: Rig, mocker: Any) -> None:
    fail_journal_at(rig, mocker, "dispense_started")
    withdraw_fifty(rig)
    assert rig.atm.state == "out_of_service"
    assert (rig.dispenser.notes, rig.dispenser.stacker, rig.dispenser.presented) == (100, 0, 0)
    mocker.stopall()
    # The next start settles the approved withdrawal from the journal: a reversal, nothing out.
    assert rig.atm.settlement.recover() == ["STAN 000003: reversal, 0 of 5000 cents handed out"]
    assert rig.host.reversals == []
    rig.atm.settlement.forward()
    assert rig.host.reversals == [("000003", 0)]


def test_a_failed_present_intent_write_keeps_the_shutter_closed(rig: Rig, mocker: Any) -> None:
    fail_journal_at(rig, mocker, "present_started")
    withdraw_fifty(rig)
    rig.reader.media = "none"
    rig.run(3)
    assert rig.atm.state == "out_of_service"
    assert rig.dispenser.presented == 0 and rig.dispenser.customer == 0


def test_a_card_neither_returned_nor_retained_keeps_the_atm_out_of_service(
    rig: Rig, mocker: Any
) -> None:
    rig.insert_card_and_pin()
    mocker.patch.object(rig.reader, "eject", side_effect=DeviceFault("jammed", "10"))
    mocker.patch.object(rig.reader, "capture", side_effect=DeviceFault("retain bin full", "40"))
    rig.press("F8")  # cancel: eject fails, capture fails, the card stays inside
    rig.run(5, advance=1.0)
    assert rig.atm.state == "out_of_service"
    assert "card" in rig.atm.out_of_service_reason
    rig.run(5, advance=6.0)
    assert rig.atm.state == "out_of_service"  # never a new session on the card left inside
    assert rig.events().count("card_read") == 1
    assert rig.atm.open_supervisor()
    rig.reader.media = "none"
    rig.atm.card_removed()
    assert rig.atm.close_supervisor()
    assert rig.atm.state == "idle"


def test_a_card_found_inside_at_start_is_retained_not_served(tmp_path: Path) -> None:
    clock, journal = VirtualClock(), Journal(tmp_path / "journal.jsonl")
    reader = FakeCardReader()
    reader.media = "inside"  # the power went while a customer's card was in
    atm = AtmController(
        card_reader=reader,
        pin_pad=FakePinPad(),
        dispenser=FakeDispenser(),
        printer=FakePrinter(),
        host=FakeHost(),
        journal=journal,
        advices=AdviceQueue(tmp_path / "advices.jsonl"),
        screens=load_screens(DEFAULT_SCREENS),
        clock=clock,
        config=ControllerConfig(terminal_id="ATM00001"),
        plan_notes=plan_notes,
    )
    atm.start()
    atm.step()
    assert reader.captured == 1 and atm.state == "idle"
    assert [e.event for e in journal.entries()][:2] == ["card_found_at_start", "card_captured"]
    journal.close()


def test_no_receipt_after_the_customer_chose_to_go_on_without_one(rig: Rig) -> None:
    rig.printer.paper = "out"
    rig.insert_card_and_pin()
    rig.press("F1")  # withdrawal
    assert rig.atm.screen.name == "receipt_unavailable"
    rig.press("F4")  # continue without a receipt
    rig.press("F1")
    rig.press("F2")
    rig.printer.paper = "adequate"  # paper loaded meanwhile: still no receipt, as answered
    rig.reader.media = "none"
    rig.run(2)
    rig.dispenser.taken_flag = True
    rig.run(5, advance=0.5)
    assert rig.host.completions == [("000003", 5000)]
    assert rig.printer.receipts == []


def test_supervisor_purges_notes_left_in_the_transport(rig: Rig) -> None:
    rig.dispenser.transport = 1
    with pytest.raises(SupervisorError):
        rig.atm.purge_dispenser()
    assert rig.atm.open_supervisor()
    assert rig.atm.purge_dispenser() == 1
    assert rig.atm.close_supervisor()
    assert rig.atm.state == "idle" and rig.atm.cash_available
