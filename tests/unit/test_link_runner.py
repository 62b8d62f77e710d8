"""The pty link runner moves bytes both ways unchanged and applies link faults."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from device.drivers.base import SerialDriver
from peripherals.emulator import Emulator
from peripherals.links.endpoint import PtyEndpoint
from peripherals.links.runner import LinkRunner


class EchoDevice(Emulator):
    NAME = "echo"

    def receive(self, data: bytes) -> None:
        self.send(data)


@pytest.fixture
def link() -> Iterator[tuple[LinkRunner, SerialDriver]]:
    runner = LinkRunner(EchoDevice(), PtyEndpoint()).start()
    driver = SerialDriver(runner.url)
    yield runner, driver
    driver.close()
    runner.stop()


def read_for(driver: SerialDriver, seconds: float) -> bytes:
    deadline = time.monotonic() + seconds
    out = b""
    while time.monotonic() < deadline:
        out += driver.read_some(deadline)
    return out


def test_every_byte_value_passes_unchanged(link: tuple[LinkRunner, SerialDriver]) -> None:
    _, driver = link
    payload = bytes(range(256))
    driver.write(payload)
    assert read_for(driver, 0.5) == payload


def test_drop_loses_one_chunk_then_heals(link: tuple[LinkRunner, SerialDriver]) -> None:
    runner, driver = link
    runner.faults.inject("drop", mode="once")
    driver.write(b"lost")
    assert read_for(driver, 0.2) == b""
    driver.write(b"kept")
    assert read_for(driver, 0.3) == b"kept"


def test_corrupt_flips_one_byte(link: tuple[LinkRunner, SerialDriver]) -> None:
    runner, driver = link
    runner.faults.inject("corrupt", mode="once", index=1)
    driver.write(b"\x00\x00\x00")
    assert read_for(driver, 0.3) == b"\x00\xff\x00"


def test_disconnect_holds_until_cleared(link: tuple[LinkRunner, SerialDriver]) -> None:
    runner, driver = link
    runner.faults.inject("disconnect")
    driver.write(b"x")
    assert read_for(driver, 0.2) == b""
    runner.faults.clear("disconnect")
    driver.write(b"y")
    assert read_for(driver, 0.3) == b"y"


class TimedDevice(EchoDevice):
    timer = False
    partial = False

    def timer_running(self) -> bool:
        return self.timer

    def holds_partial_frame(self) -> bool:
        return self.partial


def test_a_quiet_link_is_polled_less_often_unless_the_device_has_something_to_time() -> None:
    device = TimedDevice()
    runner = LinkRunner(device, PtyEndpoint()).start()
    driver = SerialDriver(runner.url)
    try:
        driver.write(b"x")
        assert driver.read_some(time.monotonic() + 0.3) == b"x"
        # A whole exchange leaves nothing to time: the thread sleeps until the next byte.
        assert runner._poll_seconds() == LinkRunner.IDLE_POLL_SECONDS
        device.partial = True  # half a frame in: its inter-byte timeout needs ticks
        assert runner._poll_seconds() == LinkRunner.POLL_SECONDS
        device.partial = False
        device.timer = True
        assert runner._poll_seconds() == LinkRunner.POLL_SECONDS
        device.timer = False
        assert runner._poll_seconds() == LinkRunner.IDLE_POLL_SECONDS
        device.send(b"y")  # the device speaking first also wakes the line
        assert driver.read_some(time.monotonic() + 0.3) == b"y"
    finally:
        driver.close()
        runner.stop()


def test_a_pump_hands_over_what_the_driver_sent_and_both_ends_count_every_byte() -> None:
    # Not started: no link thread, so every byte moves in the pumps this test makes.
    runner = LinkRunner(EchoDevice(), PtyEndpoint())
    runner.emulator.attach(runner._to_driver)
    driver = SerialDriver(runner.url)
    try:
        port = driver.port
        runner.count_from(port.in_waiting)
        port.write(b"status")
        assert port.sent == 6 and runner.bytes_from_driver == 0
        deadline = time.monotonic() + 2.0
        while runner.bytes_from_driver < 6:  # a pty hands the bytes over a moment later
            assert time.monotonic() < deadline, "the pump never saw the driver's bytes"
            moved = runner.pump()
        assert moved and runner.bytes_from_driver == 6
        assert runner.bytes_to_driver == 6  # the echo, sent in the same pump
        assert port.received == 0  # in flight or waiting: the driver has read nothing yet
        assert read_for(driver, 0.2) == b"status"
        assert port.received == runner.bytes_to_driver and not runner.pump()
    finally:
        driver.close()
        runner.emulator.detach()
        runner.endpoint.close()


def test_handled_only_once_a_pass_has_taken_every_byte_the_driver_sent() -> None:
    """Exact, with no link thread: the test makes every pass itself."""
    runner = LinkRunner(EchoDevice(), PtyEndpoint())
    driver = SerialDriver(runner.url)
    try:
        assert runner.handled(driver.port.sent)  # nothing sent yet
        driver.write(b"abc")
        assert driver.port.sent == 3 and not runner.handled(3)
        deadline = time.monotonic() + 2.0
        while runner.bytes_from_driver < 3 and time.monotonic() < deadline:
            runner.pump()
        assert runner.handled(3)
        with runner._pump_lock:  # a pass under way in another thread
            assert not runner.handled(3)
        runner.faults.inject("delay", mode="persistent", seconds=0.0)
        assert not runner.handled(3)  # an armed link fault acts in time
        runner.faults.clear()
        assert runner.handled(3)
    finally:
        driver.close()
        runner.endpoint.close()


def test_a_device_with_a_timer_or_half_a_frame_is_never_handled() -> None:
    device = TimedDevice()
    runner = LinkRunner(device, PtyEndpoint())
    try:
        assert runner.handled(0)
        device.timer = True
        assert not runner.handled(0)
        device.timer, device.partial = False, True
        assert not runner.handled(0)
    finally:
        runner.endpoint.close()
