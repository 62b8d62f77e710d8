"""PIN pad contract: the same conversation through PinPadDriver on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from device.controller.device_status import PinPadStatus
from device.controller.ports import DeviceTimeout
from device.drivers.pin_pad import PinPadDriver, TamperedError
from peripherals.pin_crypto.ciphers import tdes_ecb_decrypt, tdes_ecb_encrypt
from peripherals.wire.pin_pad import KeyEvent
from tests.contract.conftest import OneDeviceBay

PIN_KEY_TDES = bytes.fromhex("89ABCDEF0123456776543210FEDCBA98")
ALICE_PAN = "4761739001010010"
# ISO 9564 format 0 for PIN 1234 and Alice's card: 041234FFFFFFFFFF XOR 0000173900101001.
ALICE_FORMAT_0 = bytes.fromhex("041223C6FFEFEFFE")

Pad = tuple[Any, Any, PinPadDriver]


@pytest.fixture
def pad(one_device_bay: OneDeviceBay) -> Iterator[Pad]:
    bay = one_device_bay("pin_pad")
    with PinPadDriver(bay.url("pin_pad"), timeout=1.0) as driver:
        yield bay, bay.pin_pad, driver


def events_until(driver: PinPadDriver, count: int) -> list[KeyEvent]:
    events: list[KeyEvent] = []
    for _ in range(20):
        events += driver.poll_events(timeout=0.2)
        if len(events) >= count:
            break
    return events


def test_status_of_an_installed_pad(pad: Pad) -> None:
    _, _, driver = pad
    assert driver.status() == PinPadStatus(mode="idle", keys_loaded=True, tampered=False)


def test_key_check_value_of_the_tdes_pin_key(pad: Pad) -> None:
    _, _, driver = pad
    expected = tdes_ecb_encrypt(PIN_KEY_TDES, bytes(8))[:3].hex().upper()
    assert driver.key_check_value("pin_tdes").upper() == expected


def test_pin_entry_gives_masked_keys_and_the_iso_format_0_block(pad: Pad) -> None:
    _, emulator, driver = pad
    driver.start_pin_entry(ALICE_PAN, pin_block_format=0)
    assert driver.status().mode == "pin_entry"
    for key in ("1", "2", "3", "4", "enter"):
        emulator.press(key)
    assert events_until(driver, 5) == [KeyEvent("digit", "*")] * 4 + [KeyEvent("enter")]
    block = driver.get_pin_block()
    assert (block.format, block.ksn) == (0, None)
    assert tdes_ecb_decrypt(PIN_KEY_TDES, block.block) == ALICE_FORMAT_0
    assert driver.status().mode == "idle"


def test_plain_entry_shows_the_digits(pad: Pad) -> None:
    _, emulator, driver = pad
    driver.start_plain_entry()
    emulator.press("5")
    emulator.press("F2")
    assert events_until(driver, 2) == [KeyEvent("digit", "5"), KeyEvent("function", "F2")]
    driver.cancel()
    assert driver.status().mode == "idle"


def test_tamper_erases_the_keys_until_cleared(pad: Pad) -> None:
    bay, emulator, driver = pad
    emulator.tamper()
    status = driver.status()
    assert (status.tampered, status.keys_loaded) == (True, False)
    with pytest.raises(TamperedError):
        driver.start_pin_entry(ALICE_PAN)
    bay.clear("pin_pad")  # the operator re-installs the pad
    assert driver.status() == PinPadStatus(mode="idle", keys_loaded=True, tampered=False)


def test_an_unresponsive_pad_times_out(pad: Pad) -> None:
    bay, _, driver = pad
    driver.timeout = 0.3
    bay.inject("pin_pad", "unresponsive")
    with pytest.raises(DeviceTimeout):
        driver.status()
    bay.clear("pin_pad")
    assert driver.status().mode == "idle"
