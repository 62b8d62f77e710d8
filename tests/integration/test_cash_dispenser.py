"""The cash dispenser driver against the emulated dispenser over a real pseudo-terminal."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from device.controller.ports import DeviceTimeout
from device.drivers.cash_dispenser import (
    CashDispenserDriver,
    CassetteStatus,
    DispenserError,
    plan_notes,
)
from peripherals.cash_dispenser import CashDispenserEmulator
from peripherals.links.endpoint import PtyEndpoint
from peripherals.links.runner import LinkRunner

DEFAULT = {"cassettes": "config/cassettes/default.yaml"}


class Rig:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.emulator = CashDispenserEmulator.from_config(DEFAULT, state_dir=state_dir)
        self.runner = LinkRunner(self.emulator, PtyEndpoint()).start()
        self.driver = CashDispenserDriver(self.runner.url, timeout=0.5)

    def stop(self) -> None:
        self.driver.close()
        self.runner.stop()

    def counts(self) -> list[int]:
        return [c.count for c in self.emulator.cassettes]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path / "dispenser")
    yield r
    r.stop()


def test_status_rom_version_and_lcdm_status(rig: Rig) -> None:
    status = rig.driver.status()
    assert status.cassettes[0] == CassetteStatus(1, 2000, "978", 500, 2500, 50, "ok")
    assert [c.denomination for c in status.cassettes] == [2000, 5000, 1000, 10000]
    assert (status.stacker_notes, status.presented_notes, status.shutter) == (0, 0, "closed")
    assert status.device_ok and status.reject_notes == 0 and status.retract_notes == 0
    assert rig.driver.rom_version() == "ATMCDM01"
    assert rig.driver.lcdm_status() == (0x30, 0, 0)


def test_a_whole_withdrawal(rig: Rig) -> None:
    plan = rig.driver.plan(26000, rig.driver.status().cassettes)
    assert plan == {2: 1, 3: 1, 4: 2}
    result = rig.driver.dispense(plan, transaction=41)
    assert result.ok and result.error is None and result.amount == 26000
    assert result.dispensed == plan and result.rejected == {}
    assert rig.driver.status().stacker_notes == 4
    presented = rig.driver.present()
    assert presented.ok and presented.presented_amount == 26000 and presented.notes == 4
    assert rig.emulator.shutter == "open"
    assert rig.driver.taken() is False
    assert rig.emulator.take_cash() == 4
    assert rig.driver.taken() is True
    assert rig.counts() == [500, 399, 499, 198]
    assert rig.emulator.taken_notes.amount == 26000


def test_jam_after_n_notes_reports_where_every_note_is(rig: Rig) -> None:
    rig.emulator.faults.inject("jam", mode="once", after_notes=3)
    result = rig.driver.dispense({1: 2, 3: 3}, transaction=1)
    assert not result.ok and result.error == "jam_at_chk_sensors"
    assert result.picked == {1: 2, 3: 2}
    assert result.dispensed == {1: 2, 3: 1}  # in the stacker
    assert result.in_transport == {3: 1}
    assert result.amount == 5000
    status = rig.driver.status()
    assert not status.device_ok and status.stacker_notes == 3 and status.transport_notes == 1
    assert rig.counts()[0] == 498 and rig.counts()[2] == 498
    assert rig.driver.purge() == 4
    status = rig.driver.status()
    assert status.device_ok and status.reject_notes == 4 and status.reject_amount == 6000
    assert rig.emulator.reject_bin.by_cassette == {1: 2, 3: 2}


def test_a_double_pick_goes_to_reject_and_the_customer_still_gets_the_amount(rig: Rig) -> None:
    rig.emulator.faults.inject("double_pick", mode="once", cassette=1)
    result = rig.driver.dispense({1: 3}, transaction=2)
    assert result.ok and result.dispensed == {1: 3} and result.amount == 6000
    assert result.rejected == {1: 2} and result.picked == {1: 5}
    assert rig.counts()[0] == 495
    assert rig.driver.status().reject_notes == 2
    assert rig.driver.present().presented_amount == 6000


def test_a_missing_cassette_is_reported_and_never_planned(rig: Rig) -> None:
    rig.emulator.faults.inject("cassette_missing", cassette=2)
    status = rig.driver.status()
    assert status.cassettes[1].state == "missing"
    result = rig.driver.dispense({2: 1}, transaction=3)
    assert not result.ok and result.error == "cassette_2_missing" and result.picked == {}
    assert plan_notes(5000, status.cassettes) == {1: 2, 3: 1}
    assert rig.driver.lcdm_status()[2] & 0x04  # LCDM "lower cassette out" sensor bit
    assert rig.counts()[1] == 400


def test_an_empty_cassette_before_and_during_a_dispense(rig: Rig) -> None:
    rig.emulator.faults.inject("cassette_empty", cassette=4)
    assert rig.driver.status().cassettes[3].state == "empty"
    result = rig.driver.dispense({4: 1}, transaction=4)
    assert result.error == "cassette_4_empty" and result.picked == {}
    rig.emulator.clear_fault("cassette_empty")
    rig.driver.replenish({3: 2})
    assert rig.driver.status().cassettes[2].state == "low"
    result = rig.driver.dispense({1: 1, 3: 3}, transaction=5)
    assert not result.ok and result.error == "cassette_3_empty"
    assert result.dispensed == {1: 1, 3: 2} and result.amount == 4000
    assert rig.driver.status().cassettes[2].state == "empty"
    assert rig.driver.purge() == 3


def test_a_shutter_jam_keeps_the_notes_in_the_stacker(rig: Rig) -> None:
    assert rig.driver.dispense({1: 1}, transaction=6).ok
    rig.emulator.faults.inject("shutter_jam", mode="once")
    presented = rig.driver.present()
    assert not presented.ok and presented.error == "shutter_jam" and presented.presented_amount == 0
    status = rig.driver.status()
    assert status.shutter == "jammed" and not status.device_ok and status.stacker_notes == 1
    assert rig.driver.purge() == 1
    status = rig.driver.status()
    assert status.shutter == "closed" and status.device_ok


def test_notes_not_taken_are_retracted_to_the_retract_bin(rig: Rig) -> None:
    rig.emulator.faults.inject("notes_not_taken")
    assert rig.driver.dispense({2: 2, 3: 1}, transaction=7).ok
    assert rig.driver.present().ok
    assert rig.emulator.take_cash() == 0
    assert rig.driver.taken() is False
    retracted = rig.driver.retract()
    assert (retracted.notes, retracted.amount) == (3, 11000)
    status = rig.driver.status()
    assert status.retract_notes == 3 and status.presented_notes == 0 and status.shutter == "closed"
    assert status.last_outcome == "retracted" and rig.driver.taken() is False
    assert rig.emulator.retract_bin.by_cassette == {2: 2, 3: 1}
    assert rig.driver.retract().notes == 0


def test_an_unresponsive_device_times_out_after_three_tries(rig: Rig) -> None:
    rig.emulator.faults.inject("unresponsive")
    started = time.monotonic()
    with pytest.raises(DeviceTimeout, match="3 tries"):
        rig.driver.status()
    assert 1.4 < time.monotonic() - started < 3.0
    rig.emulator.faults.clear()
    assert rig.driver.status().device_ok


def test_one_lost_command_is_sent_again(rig: Rig) -> None:
    rig.emulator.faults.inject("unresponsive", mode="once")
    assert rig.driver.status().device_ok
    assert rig.driver.stats.retries == 1


def test_a_corrupted_command_is_nakked_and_sent_again(rig: Rig) -> None:
    rig.runner.faults.inject("corrupt", mode="once", index=4)
    assert rig.driver.dispense({1: 1}, transaction=8).ok
    assert rig.emulator.naks_sent == 1 and rig.driver.stats.retries == 1
    assert rig.driver.stats.naks == 1
    assert rig.emulator.stacker.notes == 1


def test_a_dispense_sent_again_after_a_late_reply_runs_once(rig: Rig) -> None:
    # The link holds the command 0.7 s: the driver, without an ACK after 0.5 s, sends it again;
    # the device sees it twice and answers the second from memory.
    rig.runner.faults.inject("delay", mode="once", seconds=0.7)
    result = rig.driver.dispense({4: 2}, transaction=9)
    assert result.ok and result.amount == 20000
    deadline = time.monotonic() + 2.0
    while rig.emulator.duplicates_answered < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rig.emulator.duplicates_answered == 1 and rig.driver.stats.retries == 1
    assert rig.emulator.stacker.notes == 2 and rig.counts()[3] == 198
    again = rig.driver.dispense({4: 2}, transaction=9)
    assert again.repeated and again.dispensed == {4: 2}
    assert rig.emulator.stacker.notes == 2 and rig.driver.counters()["dispenses"] == 1


def test_a_restarted_dispenser_resumes_its_counters(rig: Rig, tmp_path: Path) -> None:
    assert rig.driver.dispense({1: 2, 2: 1}, transaction=10).ok
    assert rig.driver.present().ok
    rig.emulator.take_cash()
    assert rig.driver.dispense({3: 1}, transaction=11).ok
    before = rig.driver.counters()
    status_before = rig.driver.status()
    rig.stop()
    again = Rig(rig.state_dir)
    try:
        assert again.driver.counters() == before
        assert before["taken"] == 3 and before["stacked"] == 4
        status = again.driver.status()
        assert status == status_before and status.stacker_notes == 1
        assert again.driver.taken() is True
    finally:
        again.stop()


def test_replenishment_sets_counts_and_empties_bins(rig: Rig) -> None:
    rig.driver.dispense({1: 2}, transaction=12)
    rig.driver.purge()
    with pytest.raises(DispenserError, match="note_request_error") as err:
        rig.driver.replenish({1: 9000})
    assert err.value.code == "note_request_error"
    rig.driver.replenish({1: 2500, 4: 0}, empty_bins=True)
    status = rig.driver.status()
    assert [c.count for c in status.cassettes] == [2500, 400, 500, 0]
    assert status.cassettes[3].state == "empty" and status.reject_notes == 0
    assert rig.driver.counters()["replenishments"] == 1


def test_a_dispense_while_the_stacker_is_full_is_refused(rig: Rig) -> None:
    assert rig.driver.dispense({1: 1}, transaction=13).ok
    result = rig.driver.dispense({1: 1}, transaction=14)
    assert result.error == "stacker_busy" and result.dispensed == {1: 0}
    assert rig.emulator.stacker.notes == 1


def test_bad_arguments_are_refused_before_anything_is_sent(rig: Rig) -> None:
    with pytest.raises(ValueError, match=r"0\.\.99"):
        rig.driver.dispense({1: 1}, transaction=100)
    with pytest.raises(ValueError, match="slot 5"):
        rig.driver.dispense({5: 1}, transaction=1)
    with pytest.raises(ValueError, match="no notes"):
        rig.driver.dispense({1: 0}, transaction=1)
    assert rig.emulator.counters["dispenses"] == 0


# ----- the planner against what the device reports ----------------------------------------


def units(*specs: tuple[int, int, int, str]) -> list[Any]:
    return [CassetteStatus(n, d, "978", k, 2500, 10, s) for n, d, k, s in specs]


@pytest.mark.parametrize(
    ("amount", "plan"),
    [
        (26000, {2: 1, 3: 1, 4: 2}),
        (4000, {1: 2}),
        (6000, {2: 1, 3: 1}),
        (1000, {3: 1}),
        (100000, {4: 10}),
        (1500, None),  # no 5.00 notes
        (0, None),
        (-2000, None),
        (1_010_000, None),  # more than 100 notes
    ],
)
def test_plans_from_the_device_status(rig: Rig, amount: int, plan: dict[int, int] | None) -> None:
    assert plan_notes(amount, rig.driver.status().cassettes) == plan


def test_plans_respect_counts_states_and_balance() -> None:
    # only 1 note of 100.00: 300.00 needs 50s too
    assert plan_notes(30000, units((2, 5000, 9, "ok"), (4, 10000, 1, "low"))) == {2: 4, 4: 1}
    # a denomination in two cassettes comes from the fuller one first, then evenly
    twin = units((1, 2000, 10, "ok"), (2, 2000, 4, "ok"))
    assert plan_notes(16000, twin) == {1: 7, 2: 1}
    assert plan_notes(30000, twin) is None  # 15 notes, only 14
    # empty and missing cassettes are never used
    assert plan_notes(2000, units((1, 2000, 5, "missing"), (2, 2000, 5, "empty"))) is None
    # equal note counts: drain the smaller share (1 of 50 fifties, not 2 of 3 twenties)
    mix = units((1, 2000, 3, "ok"), (2, 5000, 50, "ok"), (3, 1000, 50, "ok"))
    assert plan_notes(6000, mix) == {2: 1, 3: 1}
    assert plan_notes(4000, units((1, 2000, 2, "ok"), (2, 1000, 400, "ok"))) == {1: 2}


def test_a_full_stacker_dispense_with_every_step_saved_beats_the_timeout(rig: Rig) -> None:
    # 100 notes, 201 fsynced saves of the state file: longer than the driver's 0.5 s timeout,
    # within the time the driver allows per note.
    started = time.monotonic()
    result = rig.driver.dispense({1: 25, 2: 25, 3: 25, 4: 25}, transaction=15)
    elapsed = time.monotonic() - started
    assert result.ok and result.amount == 25 * (2000 + 5000 + 1000 + 10000)
    assert rig.driver.stats.retries == 0 and rig.emulator.duplicates_answered == 0
    assert elapsed < 100 * 0.1 + 0.5
