"""Recovery settles each open withdrawal from the journal's intents and the dispenser's report."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.advice_queue import AdviceQueue
from device.controller.ports import CashDispenserPort, DeviceFault
from device.controller.settlement import Settlement, open_withdrawals
from device.journal import Journal
from tests.unit.test_atm_controller import FakeDispenser, FakeHost

AT = "2026-11-28T12:00:00+00:00"


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.jsonl")


def recover(
    journal: Journal,
    advices: AdviceQueue,
    dispenser: CashDispenserPort,
    reason: str = "power failure",
) -> list[str]:
    return Settlement(journal, advices, dispenser, FakeHost(down=True)).recover(reason)


def authorise(journal: Journal, *steps: str, stan: str = "000007", amount: int = 5000) -> None:
    journal.record("authorised", stan=stan, amount=amount, transmitted_at=AT)
    for step in steps:
        journal.record(step, stan=stan, amount=amount)


def test_power_cut_after_counting_purges_stacker_and_reverses_in_full(
    journal: Journal, tmp_path: Path
) -> None:
    authorise(journal, "dispense_started", "notes_counted")
    dispenser = FakeDispenser(notes=95, stacker=5)
    advices = AdviceQueue(tmp_path / "advices.jsonl")
    report = recover(journal, advices, dispenser)
    assert dispenser.rejected == 5 and dispenser.stacker == 0
    [advice] = advices.pending()
    assert (advice.kind, advice.original_stan, advice.dispensed_amount) == ("reversal", "000007", 0)
    assert report == ["STAN 000007: reversal, 0 of 5000 cents handed out"]
    assert open_withdrawals(journal) == []


def test_cash_still_at_the_shutter_is_retracted_and_reversed(
    journal: Journal, tmp_path: Path
) -> None:
    authorise(journal, "dispense_started", "notes_counted", "presented")
    dispenser = FakeDispenser(notes=95, presented=5)
    advices = AdviceQueue(tmp_path / "advices.jsonl")
    recover(journal, advices, dispenser)
    assert dispenser.retracted == 5
    assert [(a.kind, a.dispensed_amount) for a in advices.pending()] == [("reversal", 0)]


def test_cash_taken_before_the_cut_is_completed(journal: Journal, tmp_path: Path) -> None:
    authorise(journal, "dispense_started", "notes_counted", "presented")
    dispenser = FakeDispenser(notes=95, last_outcome="taken")
    advices = AdviceQueue(tmp_path / "advices.jsonl")
    recover(journal, advices, dispenser)
    assert [(a.kind, a.dispensed_amount) for a in advices.pending()] == [("completion", 5000)]


def test_counters_that_cannot_tell_mark_the_withdrawal_suspect(
    journal: Journal, tmp_path: Path
) -> None:
    authorise(journal, "dispense_started", "notes_counted", "presented")
    dispenser = FakeDispenser(notes=95)  # nothing presented, nothing taken, nothing retracted
    advices = AdviceQueue(tmp_path / "advices.jsonl")
    report = recover(journal, advices, dispenser)
    assert advices.pending() == []
    assert report == ["STAN 000007: SUSPECT, count the retract bin"]
    assert [e.event for e in journal.entries()][-1] == "suspect"


def test_settled_withdrawals_are_left_alone(journal: Journal, tmp_path: Path) -> None:
    authorise(journal, "dispense_started", "notes_counted", "presented", "taken")
    journal.record("completion_queued", stan="000007")
    advices = AdviceQueue(tmp_path / "advices.jsonl")
    assert recover(journal, advices, FakeDispenser()) == []
    assert advices.pending() == []


class SilentDispenser(FakeDispenser):
    def status(self) -> object:
        raise DeviceFault("did not answer in 3 tries", "")


def test_a_silent_dispenser_defers_settlement_until_it_answers(
    journal: Journal, tmp_path: Path
) -> None:
    authorise(journal, "dispense_started", "notes_counted", "presented")
    advices = AdviceQueue(tmp_path / "advices.jsonl")
    report = recover(journal, advices, SilentDispenser(notes=95, presented=5))
    assert report == ["STAN 000007: dispenser not answering, settled when it does"]
    assert advices.pending() == []
    assert [e.event for e in journal.entries()][-1] == "settlement_deferred"
    assert [w.stan for w in open_withdrawals(journal)] == ["000007"]  # not SUSPECT: still open
    recover(journal, advices, SilentDispenser(notes=95, presented=5))  # still silent
    assert [e.event for e in journal.entries()].count("settlement_deferred") == 1
    dispenser = FakeDispenser(notes=95, presented=5)  # it answers: the notes are still there
    recover(journal, advices, dispenser, "dispenser back")
    assert dispenser.retracted == 5
    assert [(a.kind, a.dispensed_amount) for a in advices.pending()] == [("reversal", 0)]
    assert open_withdrawals(journal) == []


def requested(journal: Journal, stan: str = "000007", amount: int = 5000) -> None:
    journal.record(
        "withdrawal_requested", stan=stan, amount=amount, account="checking", transmitted_at=AT
    )


def test_a_crash_during_the_host_round_trip_reverses_the_request_blind(
    journal: Journal, tmp_path: Path
) -> None:
    requested(journal)  # the 0200 left; the ATM died before any answer reached the journal
    advices = AdviceQueue(tmp_path / "advices.jsonl")
    dispenser = FakeDispenser(notes=100)
    assert recover(journal, advices, dispenser) == [
        "STAN 000007: reversal, 0 of 5000 cents handed out"
    ]
    [advice] = advices.pending()
    assert (advice.kind, advice.transmitted_at, advice.dispensed_amount) == ("reversal", AT, 0)
    assert dispenser.notes == 100 and dispenser.rejected == 0


def test_an_approval_not_yet_journalled_as_authorised_is_reversed(
    journal: Journal, tmp_path: Path
) -> None:
    requested(journal)
    journal.record("authorisation", transaction="withdrawal", stan="000007", code="00")
    advices = AdviceQueue(tmp_path / "advices.jsonl")
    recover(journal, advices, FakeDispenser())
    assert [(a.kind, a.dispensed_amount) for a in advices.pending()] == [("reversal", 0)]


def test_a_declined_request_leaves_nothing_to_settle(journal: Journal, tmp_path: Path) -> None:
    requested(journal)
    journal.record("authorisation", transaction="withdrawal", stan="000007", code="51")
    assert open_withdrawals(journal) == []


def test_notes_taken_before_presented_reached_the_journal_are_completed(
    journal: Journal, tmp_path: Path
) -> None:
    # The shutter opened and the customer took the notes; the ATM died before `presented`.
    requested(journal)
    authorise(journal, "dispense_started", "notes_counted", "card_taken", "present_started")
    dispenser = FakeDispenser(notes=95, customer=5, last_outcome="taken")
    advices = AdviceQueue(tmp_path / "advices.jsonl")
    recover(journal, advices, dispenser)
    assert [(a.kind, a.dispensed_amount) for a in advices.pending()] == [("completion", 5000)]


def test_notes_at_the_open_shutter_are_retracted_whatever_the_journal_says(
    journal: Journal, tmp_path: Path
) -> None:
    authorise(journal, "dispense_started", "notes_counted", "card_taken", "present_started")
    dispenser = FakeDispenser(notes=95, presented=5, last_outcome="presented")
    advices = AdviceQueue(tmp_path / "advices.jsonl")
    recover(journal, advices, dispenser)
    assert dispenser.retracted == 5 and dispenser.presented == 0
    assert [(a.kind, a.dispensed_amount) for a in advices.pending()] == [("reversal", 0)]


def test_a_present_that_never_ran_is_not_taken_for_the_last_customers_outcome(
    journal: Journal, tmp_path: Path
) -> None:
    # Intent written, command never sent: the notes wait in the stacker, and the device's last
    # outcome ("taken") belongs to the customer before.
    authorise(journal, "dispense_started", "notes_counted", "card_taken", "present_started")
    dispenser = FakeDispenser(notes=95, stacker=5, last_outcome="taken")
    advices = AdviceQueue(tmp_path / "advices.jsonl")
    recover(journal, advices, dispenser)
    assert dispenser.rejected == 5
    assert [(a.kind, a.dispensed_amount) for a in advices.pending()] == [("reversal", 0)]


def test_a_retraction_the_journal_never_saw_is_reversed_not_suspect(
    journal: Journal, tmp_path: Path
) -> None:
    authorise(journal, "dispense_started", "notes_counted", "presented", "retract_started")
    dispenser = FakeDispenser(notes=95, retracted=5, last_outcome="retracted")
    advices = AdviceQueue(tmp_path / "advices.jsonl")
    report = recover(journal, advices, dispenser)
    assert report == ["STAN 000007: reversal, 0 of 5000 cents handed out"]
    assert "suspect" not in [e.event for e in journal.entries()]


def test_a_note_left_in_the_transport_by_a_cut_pick_goes_to_reject(
    journal: Journal, tmp_path: Path
) -> None:
    authorise(journal, "dispense_started")
    dispenser = FakeDispenser(notes=99, transport=1)  # killed mid-pick: one note in the transport
    advices = AdviceQueue(tmp_path / "advices.jsonl")
    recover(journal, advices, dispenser)
    assert (dispenser.transport, dispenser.rejected) == (0, 1)
    assert dispenser.status().device_ok
    assert [(a.kind, a.dispensed_amount) for a in advices.pending()] == [("reversal", 0)]


def test_loose_notes_with_no_withdrawal_open_are_put_away(journal: Journal, tmp_path: Path) -> None:
    dispenser = FakeDispenser(notes=99, transport=1)
    settlement = Settlement(journal, AdviceQueue(tmp_path / "a.jsonl"), dispenser, FakeHost())
    assert settlement.put_away_loose_notes() == 1
    assert dispenser.status().device_ok
    assert [e.event for e in journal.entries()] == ["purged"]


@pytest.mark.parametrize(
    ("kind", "handed_out", "suspect"),
    [
        ("completion", 5000, True),
        ("reversal", 2000, True),
        ("reversal", 0, False),  # a blind reversal of a request the host never saw: nothing to do
    ],
)
def test_an_advice_the_host_cannot_match_stays_visible(
    journal: Journal, tmp_path: Path, kind: str, handed_out: int, suspect: bool
) -> None:
    host = FakeHost()
    host.complete = lambda *_: "25"  # type: ignore[method-assign]
    host.reverse = lambda *_: "25"  # type: ignore[method-assign]
    advices = AdviceQueue(tmp_path / "advices.jsonl")
    settlement = Settlement(journal, advices, FakeDispenser(), host)
    settlement.queue(kind, "000007", AT, 5000, handed_out, "test")
    assert advices.pending() == []  # the host answered: not sent again for ever
    assert ("suspect" in [e.event for e in journal.entries()]) is suspect


def test_an_advice_the_host_could_not_handle_stays_queued(journal: Journal, tmp_path: Path) -> None:
    host = FakeHost()
    host.complete = lambda *_: "96"  # type: ignore[method-assign]
    advices = AdviceQueue(tmp_path / "advices.jsonl")
    Settlement(journal, advices, FakeDispenser(), host).queue(
        "completion", "000007", AT, 5000, 5000, "test"
    )
    assert [a.original_stan for a in advices.pending()] == ["000007"]
