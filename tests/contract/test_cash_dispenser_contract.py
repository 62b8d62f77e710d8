"""Cash dispenser contract: the same conversation through CashDispenserDriver on every backend.

Withdrawals, note faults, lost and damaged commands, restarts and replenishment, one bay per test.
"""

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
from tests.contract.conftest import OneDeviceBay

Dispenser = tuple[Any, Any, CashDispenserDriver]

DEFAULT_LOAD = {"cassettes": "config/cassettes/default.yaml"}


@pytest.fixture
def dispenser(one_device_bay: OneDeviceBay) -> Iterator[Dispenser]:
    # No command has crossed yet, so no ACK of the driver is on the wire: a link fault a test
    # arms before its first command meets that command. Every step is saved to the bay's state
    # directory, as on an ATM, so a dispense takes as long as it would there.
    bay = one_device_bay("cash_dispenser")
    driver = CashDispenserDriver(bay.url("cash_dispenser"), timeout=1.0)
    with driver:
        yield bay, bay.cash_dispenser, driver


def counts(driver: CashDispenserDriver) -> list[int]:
    return [c.count for c in driver.status().cassettes]


def test_status_rom_version_and_lcdm_status_of_a_loaded_dispenser(dispenser: Dispenser) -> None:
    _, _, driver = dispenser
    status = driver.status()
    assert status.cassettes[0] == CassetteStatus(1, 2000, "978", 500, 2500, 50, "ok")
    assert [(c.number, c.denomination, c.currency, c.count, c.state) for c in status.cassettes] == [
        (1, 2000, "978", 500, "ok"),
        (2, 5000, "978", 400, "ok"),
        (3, 1000, "978", 500, "ok"),
        (4, 10000, "978", 200, "ok"),
    ]
    assert (status.stacker_notes, status.presented_notes, status.shutter) == (0, 0, "closed")
    assert (status.device_ok, status.reject_notes, status.retract_notes) == (True, 0, 0)
    assert driver.rom_version() == "ATMCDM01"
    assert driver.lcdm_status() == (0x30, 0, 0)


def test_a_whole_withdrawal_planned_dispensed_presented_and_taken(dispenser: Dispenser) -> None:
    _, emulator, driver = dispenser
    plan = driver.plan(26000, driver.status().cassettes)
    assert plan == {2: 1, 3: 1, 4: 2}
    result = driver.dispense(plan, transaction=41)
    assert (result.ok, result.error, result.amount) == (True, None, 26000)
    assert (result.dispensed, result.rejected) == (plan, {})
    assert driver.status().stacker_notes == 4
    presented = driver.present()
    assert (presented.ok, presented.presented_amount, presented.notes) == (True, 26000, 4)
    assert emulator.shutter == "open"
    assert driver.taken() is False
    assert emulator.take_cash() == 4
    assert driver.taken() is True
    assert counts(driver) == [500, 399, 499, 198]
    assert emulator.taken_notes.amount == 26000
    assert driver.status().shutter == "closed"


def test_a_jam_reports_where_every_note_is_until_purged(dispenser: Dispenser) -> None:
    bay, emulator, driver = dispenser
    bay.inject("cash_dispenser", "jam", mode="once", after_notes=3)
    result = driver.dispense({1: 2, 3: 3}, transaction=1)
    assert (result.ok, result.error) == (False, "jam_at_chk_sensors")
    assert result.picked == {1: 2, 3: 2}
    assert result.dispensed == {1: 2, 3: 1}  # in the stacker
    assert result.in_transport == {3: 1}
    assert result.amount == 5000
    status = driver.status()
    assert (status.device_ok, status.stacker_notes, status.transport_notes) == (False, 3, 1)
    assert (status.cassettes[0].count, status.cassettes[2].count) == (498, 498)
    assert driver.purge() == 4  # the stacked notes and the stuck one
    status = driver.status()
    assert (status.device_ok, status.reject_notes, status.reject_amount) == (True, 4, 6000)
    assert emulator.reject_bin.by_cassette == {1: 2, 3: 2}


def test_a_double_pick_goes_to_reject_and_the_customer_still_gets_the_amount(
    dispenser: Dispenser,
) -> None:
    bay, _, driver = dispenser
    bay.inject("cash_dispenser", "double_pick", mode="once", cassette=1)
    result = driver.dispense({1: 3}, transaction=2)
    assert (result.ok, result.dispensed, result.amount) == (True, {1: 3}, 6000)
    assert (result.rejected, result.picked) == ({1: 2}, {1: 5})
    assert counts(driver)[0] == 495
    assert driver.status().reject_notes == 2
    assert driver.present().presented_amount == 6000


def test_a_missing_cassette_is_reported_and_never_planned(dispenser: Dispenser) -> None:
    bay, _, driver = dispenser
    bay.inject("cash_dispenser", "cassette_missing", cassette=2)
    status = driver.status()
    assert status.cassettes[1].state == "missing"
    result = driver.dispense({2: 1}, transaction=3)
    assert (result.ok, result.error, result.picked) == (False, "cassette_2_missing", {})
    assert plan_notes(5000, status.cassettes) == {1: 2, 3: 1}
    assert driver.lcdm_status()[2] & 0x04  # LCDM "lower cassette out" sensor bit
    assert counts(driver)[1] == 400


def test_an_empty_cassette_before_and_during_a_dispense(dispenser: Dispenser) -> None:
    bay, _, driver = dispenser
    bay.inject("cash_dispenser", "cassette_empty", cassette=4)
    assert driver.status().cassettes[3].state == "empty"
    result = driver.dispense({4: 1}, transaction=4)
    assert (result.error, result.picked) == ("cassette_4_empty", {})
    bay.clear("cash_dispenser", "cassette_empty")
    driver.replenish({3: 2})
    assert driver.status().cassettes[2].state == "low"
    result = driver.dispense({1: 1, 3: 3}, transaction=5)
    assert (result.ok, result.error) == (False, "cassette_3_empty")
    assert (result.dispensed, result.amount) == ({1: 1, 3: 2}, 4000)
    assert driver.status().cassettes[2].state == "empty"
    assert driver.purge() == 3


def test_a_shutter_jam_keeps_the_notes_in_the_stacker(dispenser: Dispenser) -> None:
    bay, _, driver = dispenser
    assert driver.dispense({1: 1}, transaction=6).ok
    bay.inject("cash_dispenser", "shutter_jam", mode="once")
    presented = driver.present()
    assert (presented.ok, presented.error, presented.presented_amount) == (False, "shutter_jam", 0)
    status = driver.status()
    assert (status.shutter, status.device_ok, status.stacker_notes) == ("jammed", False, 1)
    assert driver.purge() == 1
    status = driver.status()
    assert (status.shutter, status.device_ok) == ("closed", True)


def test_notes_left_behind_are_retracted_to_the_retract_bin(dispenser: Dispenser) -> None:
    bay, emulator, driver = dispenser
    bay.inject("cash_dispenser", "notes_not_taken")
    assert driver.dispense({2: 2, 3: 1}, transaction=7).ok
    assert driver.present().ok
    assert emulator.take_cash() == 0
    assert driver.taken() is False
    retracted = driver.retract()
    assert (retracted.notes, retracted.amount) == (3, 11000)
    status = driver.status()
    assert (status.retract_notes, status.presented_notes, status.shutter) == (3, 0, "closed")
    assert status.last_outcome == "retracted" and driver.taken() is False
    assert emulator.retract_bin.by_cassette == {2: 2, 3: 1}
    assert driver.retract().notes == 0


def test_an_unresponsive_dispenser_times_out_after_three_tries(dispenser: Dispenser) -> None:
    bay, _, driver = dispenser
    bay.inject("cash_dispenser", "unresponsive")
    started = time.monotonic()
    with pytest.raises(DeviceTimeout, match="3 tries"):
        driver.status()
    assert 1.4 < time.monotonic() - started < 3.0  # three ACK timeouts of 0.5 s
    bay.clear("cash_dispenser")
    assert driver.status().device_ok is True


def test_a_dropped_command_is_sent_again_and_dispenses_once(dispenser: Dispenser) -> None:
    # Also what a device that ignores one command costs the driver: one silence, one send more.
    bay, _, driver = dispenser
    bay.inject("cash_dispenser.link", "drop", mode="once")
    result = driver.dispense({1: 1}, transaction=4)
    assert (result.ok, result.dispensed) == (True, {1: 1})
    assert (driver.stats.retries, driver.stats.timeouts) == (1, 1)
    assert counts(driver)[0] == 499


def test_a_corrupted_command_is_nakked_and_sent_again(dispenser: Dispenser) -> None:
    bay, emulator, driver = dispenser
    bay.inject("cash_dispenser.link", "corrupt", mode="once", index=4)
    assert driver.dispense({1: 1}, transaction=8).ok
    assert (emulator.naks_sent, driver.stats.naks, driver.stats.retries) == (1, 1, 1)
    assert emulator.stacker.notes == 1


def test_a_dispense_sent_again_after_a_late_reply_runs_once(dispenser: Dispenser) -> None:
    # The link holds the command 0.6 s: the driver, without an ACK after 0.5 s, sends it again;
    # the device sees it twice and answers the second from memory.
    bay, emulator, driver = dispenser
    bay.inject("cash_dispenser.link", "delay", mode="once", seconds=0.6)
    result = driver.dispense({4: 2}, transaction=9)
    assert (result.ok, result.amount) == (True, 20000)
    deadline = time.monotonic() + 2.0
    while emulator.duplicates_answered < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (emulator.duplicates_answered, driver.stats.retries) == (1, 1)
    assert emulator.stacker.notes == 2 and counts(driver)[3] == 198
    again = driver.dispense({4: 2}, transaction=9)
    assert again.repeated and again.dispensed == {4: 2}
    assert emulator.stacker.notes == 2 and driver.counters()["dispenses"] == 1


def test_a_restarted_dispenser_resumes_its_counters(
    one_device_bay: OneDeviceBay, tmp_path: Path
) -> None:
    state_dir = tmp_path / "dispenser"
    bay = one_device_bay(
        "cash_dispenser", CashDispenserEmulator.from_config(DEFAULT_LOAD, state_dir=state_dir)
    )
    driver = CashDispenserDriver(bay.url("cash_dispenser"), timeout=1.0)
    with driver:
        assert driver.dispense({1: 2, 2: 1}, transaction=10).ok
        assert driver.present().ok
        bay.cash_dispenser.take_cash()
        assert driver.dispense({3: 1}, transaction=11).ok
        before = driver.counters()
        status_before = driver.status()
    bay.stop()
    again = one_device_bay(
        "cash_dispenser", CashDispenserEmulator.from_config(DEFAULT_LOAD, state_dir=state_dir)
    )
    driver = CashDispenserDriver(again.url("cash_dispenser"), timeout=1.0)
    with driver:
        assert driver.counters() == before
        assert (before["taken"], before["stacked"]) == (3, 4)
        status = driver.status()
        assert status == status_before and status.stacker_notes == 1
        assert driver.taken() is True


def test_replenishment_sets_counts_and_empties_bins(dispenser: Dispenser) -> None:
    _, _, driver = dispenser
    driver.dispense({1: 2}, transaction=12)
    driver.purge()
    with pytest.raises(DispenserError, match="note_request_error") as err:
        driver.replenish({1: 9000})
    assert err.value.code == "note_request_error"
    driver.replenish({1: 2500, 4: 0}, empty_bins=True)
    status = driver.status()
    assert [c.count for c in status.cassettes] == [2500, 400, 500, 0]
    assert (status.cassettes[3].state, status.reject_notes) == ("empty", 0)
    assert driver.counters()["replenishments"] == 1


def test_a_dispense_while_the_stacker_is_full_is_refused(dispenser: Dispenser) -> None:
    _, emulator, driver = dispenser
    assert driver.dispense({1: 1}, transaction=13).ok
    result = driver.dispense({1: 1}, transaction=14)
    assert (result.error, result.dispensed) == ("stacker_busy", {1: 0})
    assert emulator.stacker.notes == 1


def test_a_full_stacker_dispense_with_every_step_saved_beats_the_timeout(
    dispenser: Dispenser,
) -> None:
    # 100 notes, 201 fsynced saves of the state file: far longer than a 0.05 s reply timeout,
    # within the time the driver allows per note on top of it.
    _, emulator, driver = dispenser
    driver.timeout = 0.05
    started = time.monotonic()
    result = driver.dispense({1: 25, 2: 25, 3: 25, 4: 25}, transaction=15)
    elapsed = time.monotonic() - started
    assert (result.ok, result.amount) == (True, 25 * (2000 + 5000 + 1000 + 10000))
    assert (driver.stats.retries, emulator.duplicates_answered) == (0, 0)
    assert elapsed < 100 * 0.1 + 0.05
