"""Power-failure recovery settles each open withdrawal from the journal and the counters."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.advice_queue import AdviceQueue
from device.drivers.base import DeviceFault
from device.journal import Journal
from device.recovery import open_withdrawals, recover
from tests.unit.test_atm_controller import FakeDispenser

AT = "2026-11-28T12:00:00+00:00"


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.jsonl")


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
    dispenser = FakeDispenser(notes=95, taken_flag=True)
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
