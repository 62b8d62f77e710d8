"""Drivers' deadlines on a virtual clock, over real pseudo-terminals: silence costs virtual time
only, while what the devices and the link faults do in real time still happens in its turn."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from device.clock import VirtualClock
from device.controller.ports import DeviceTimeout
from device.drivers.base import SerialDriver
from device.drivers.card_reader import CardReaderDriver
from device.drivers.cash_dispenser import CashDispenserDriver
from device.drivers.polled_serial import PolledSerial
from device.sim.virtual_deadlines import VirtualDeadlines
from peripherals.card_reader import CardReaderEmulator
from peripherals.cash_dispenser import CashDispenserEmulator
from peripherals.emulator import Emulator
from peripherals.links.endpoint import PtyEndpoint
from peripherals.links.runner import LinkRunner
from peripherals.wire import card_reader as reader_wire
from peripherals.wire import cash_dispenser as dispenser_wire

CONFIG = Path(__file__).parents[2] / "config"


@dataclass
class Rig:
    clock: VirtualClock
    emulator: Any
    link: LinkRunner
    driver: Any


@pytest.fixture
def make_rig() -> Iterator[Callable[[str], Rig]]:
    rigs: list[Rig] = []

    def make(device: str) -> Rig:
        clock = VirtualClock()
        emulator: Emulator
        driver: SerialDriver
        if device == "cash_dispenser":
            emulator = CashDispenserEmulator.from_config(
                {"cassettes": str(CONFIG / "cassettes" / "default.yaml")}, clock=clock.monotonic
            )
            link = LinkRunner(emulator, PtyEndpoint()).start()
            driver = CashDispenserDriver(link.url, timeout=1.0)
        else:
            emulator = CardReaderEmulator.from_config(
                {"wallet": str(CONFIG / "wallet.yaml")}, clock=clock.monotonic
            )
            link = LinkRunner(emulator, PtyEndpoint()).start()
            driver = CardReaderDriver(link.url, timeout=1.0)
        assert isinstance(driver.port, PolledSerial)
        driver.deadlines = VirtualDeadlines(clock, link, driver.port)
        rig = Rig(clock, emulator, link, driver)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.driver.close()
        rig.link.stop()


def test_a_silent_device_times_out_on_the_virtual_clock(make_rig: Callable[[str], Rig]) -> None:
    rig = make_rig("cash_dispenser")
    assert rig.driver.status().device_ok
    assert rig.clock.monotonic() == 0.0  # an answered command costs no virtual time
    rig.emulator.faults.inject("unresponsive")
    with pytest.raises(DeviceTimeout, match="did not acknowledge"):
        rig.driver.status()
    # Each send waited its whole ACK timeout, no more and no less.
    expected = dispenser_wire.COMMAND_SENDS * dispenser_wire.ACK_TIMEOUT
    assert rig.clock.monotonic() == pytest.approx(expected)
    assert rig.driver.stats.timeouts == dispenser_wire.COMMAND_SENDS


def test_a_reply_the_device_sends_again_in_real_time_is_waited_for(
    make_rig: Callable[[str], Rig],
) -> None:
    rig = make_rig("card_reader")
    rig.driver.initialise()
    original = rig.emulator.send
    dropped: list[bytes] = []

    def drop_first_reply(data: bytes) -> None:
        if data[0] == reader_wire.STX and not dropped:
            dropped.append(data)
            rig.link.faults.inject("drop", mode="once")
        original(data)

    rig.emulator.send = drop_first_reply
    assert rig.driver.status().media == "none"
    # The reader sent its reply again after its own (real) ACK timeout, before the driver's
    # virtual one ran out: the clock did not jump while the reader still owed the reply.
    assert dropped and rig.emulator.resent_replies == 1
    assert rig.driver.stats.retries == 0
    assert rig.clock.monotonic() < reader_wire.ACK_TIMEOUT


def test_a_link_delay_runs_the_deadline_in_real_time(make_rig: Callable[[str], Rig]) -> None:
    rig = make_rig("cash_dispenser")
    assert rig.driver.status().device_ok
    late = dispenser_wire.ACK_TIMEOUT + 0.2
    rig.link.faults.inject("delay", mode="once", seconds=late)
    assert rig.driver.status().device_ok
    # As on a real line: the command's ACK was late, so the driver sent it again.
    assert rig.driver.stats.retries == 1
    assert rig.clock.monotonic() >= dispenser_wire.ACK_TIMEOUT
