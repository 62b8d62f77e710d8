"""Cash dispenser contract: the same conversation through CashDispenserDriver on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from device.controller.ports import DeviceTimeout
from device.drivers.cash_dispenser import CashDispenserDriver
from tests.contract.conftest import OneDeviceBay

Dispenser = tuple[Any, Any, CashDispenserDriver]


@pytest.fixture
def dispenser(one_device_bay: OneDeviceBay) -> Iterator[Dispenser]:
    bay = one_device_bay("cash_dispenser")
    with CashDispenserDriver(bay.url("cash_dispenser"), timeout=1.0) as driver:
        yield bay, bay.cash_dispenser, driver


def counts(driver: CashDispenserDriver) -> list[int]:
    return [c.count for c in driver.status().cassettes]


def test_status_and_rom_version_of_a_loaded_dispenser(dispenser: Dispenser) -> None:
    _, _, driver = dispenser
    status = driver.status()
    assert [(c.number, c.denomination, c.currency, c.count, c.state) for c in status.cassettes] == [
        (1, 2000, "978", 500, "ok"),
        (2, 5000, "978", 400, "ok"),
        (3, 1000, "978", 500, "ok"),
        (4, 10000, "978", 200, "ok"),
    ]
    assert (status.shutter, status.device_ok, status.stacker_notes) == ("closed", True, 0)
    assert driver.rom_version() == "ATMCDM01"


def test_dispense_present_take(dispenser: Dispenser) -> None:
    _, emulator, driver = dispenser
    result = driver.dispense({1: 2, 2: 1}, transaction=1)
    assert (result.ok, result.dispensed, result.amount, result.error) == (
        True,
        {1: 2, 2: 1},
        9000,
        None,
    )
    presented = driver.present()
    assert (presented.ok, presented.presented_amount, presented.notes) == (True, 9000, 3)
    assert driver.taken() is False
    assert emulator.take_cash() == 3
    assert driver.taken() is True
    assert counts(driver) == [498, 399, 500, 200]
    assert driver.status().shutter == "closed"


def test_notes_left_behind_are_retracted(dispenser: Dispenser) -> None:
    bay, _, driver = dispenser
    bay.inject("cash_dispenser", "notes_not_taken")
    driver.dispense({4: 1}, transaction=2)
    driver.present()
    retracted = driver.retract()
    assert (retracted.notes, retracted.amount) == (1, 10000)
    assert driver.status().retract_notes == 1


def test_a_jam_leaves_notes_in_the_transport_until_purged(dispenser: Dispenser) -> None:
    bay, _, driver = dispenser
    bay.inject("cash_dispenser", "jam", mode="once", after_notes=1)
    result = driver.dispense({3: 3}, transaction=3)
    assert result.ok is False
    assert result.error is not None
    assert result.dispensed == {3: 1}
    assert result.in_transport == {3: 1}
    assert driver.status().device_ok is False
    assert driver.purge() == 2  # the stacked note and the stuck one
    assert driver.status().device_ok is True


def test_a_dropped_command_is_sent_again_and_dispenses_once(dispenser: Dispenser) -> None:
    bay, _, driver = dispenser
    bay.inject("cash_dispenser.link", "drop", mode="once")
    result = driver.dispense({1: 1}, transaction=4)
    assert (result.ok, result.dispensed) == (True, {1: 1})
    assert counts(driver)[0] == 499


def test_an_unresponsive_dispenser_times_out(dispenser: Dispenser) -> None:
    bay, _, driver = dispenser
    bay.inject("cash_dispenser", "unresponsive")
    with pytest.raises(DeviceTimeout):
        driver.status()
    bay.clear("cash_dispenser")
    assert driver.status().device_ok is True
