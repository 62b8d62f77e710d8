"""Card reader contract: the same conversation through CardReaderDriver on every backend."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from device.controller.device_status import CardReaderStatus
from device.drivers.card_reader import CardReaderDriver, CardReaderError
from tests.contract.conftest import OneDeviceBay

Reader = tuple[Any, Any, CardReaderDriver]


@pytest.fixture
def reader(one_device_bay: OneDeviceBay) -> Iterator[Reader]:
    bay = one_device_bay("card_reader")
    with CardReaderDriver(bay.url("card_reader"), timeout=1.0) as driver:
        driver.initialise()
        # The driver's last ACK may still be on the wire; a link fault armed now must meet the
        # next command, not that ACK.
        deadline = time.monotonic() + 1.0
        while bay.card_reader.awaiting_ack and time.monotonic() < deadline:
            time.sleep(0.005)
        assert not bay.card_reader.awaiting_ack
        yield bay, bay.card_reader, driver


def test_status_of_an_empty_initialised_reader(reader: Reader) -> None:
    _, _, driver = reader
    assert driver.status() == CardReaderStatus(media="none", retain_bin_full=False)


def test_insert_read_eject_take(reader: Reader) -> None:
    _, emulator, driver = reader
    driver.enable_entry()
    assert emulator.insert_card("alice") == "inside"
    assert driver.status().media == "inside"
    tracks = driver.read_tracks()
    assert (tracks.pan, tracks.expiry, tracks.service_code) == ("4761739001010010", "3012", "201")
    assert tracks.masked_pan == "476173******0010"
    driver.eject()
    assert driver.status().media == "gate"
    assert emulator.take_card().pan == "4761739001010010"
    assert driver.status().media == "none"


def test_capture_puts_the_card_in_the_retain_bin(reader: Reader) -> None:
    _, emulator, driver = reader
    driver.enable_entry()
    emulator.insert_card("bob")
    driver.capture()
    assert driver.status().media == "none"
    assert emulator.retained_cards == ["411111******1111"]


def test_a_jam_on_eject_is_a_device_fault_until_cleared(reader: Reader) -> None:
    bay, emulator, driver = reader
    driver.enable_entry()
    emulator.insert_card("charlie")
    bay.inject("card_reader", "jam")
    with pytest.raises(CardReaderError) as caught:
        driver.eject()
    assert caught.value.code == "10"
    assert driver.status().media == "jammed"
    bay.clear("card_reader", "jam")
    assert driver.status().media == "none"


def test_a_corrupted_command_is_refused_and_sent_again(reader: Reader) -> None:
    bay, emulator, driver = reader
    bay.inject("card_reader.link", "corrupt", mode="once", index=2)
    assert driver.status().media == "none"
    assert emulator.status()["refused_frames"] == 1
    assert driver.stats.retries == 1
