"""Half a frame on a real pty link, then silence: the device gives it up after its inter-byte
timeout (NAK) on the link thread's ticks, although the link sleeps whenever nothing is timed."""

from __future__ import annotations

import time
from typing import Any

import pytest

from device.drivers.base import SerialDriver
from peripherals.card_reader import CardReaderEmulator
from peripherals.emulator import Emulator
from peripherals.harness.profile import DEFAULT_PROFILE, load_profile
from peripherals.links.endpoint import PtyEndpoint
from peripherals.links.runner import LinkRunner
from peripherals.pin_pad import PinPadEmulator
from peripherals.wire import card_reader as reader_wire
from peripherals.wire import pin_pad as pad_wire


def _card_reader() -> Emulator:
    return CardReaderEmulator()


def _pin_pad() -> Emulator:
    settings: dict[str, Any] = dict(load_profile(DEFAULT_PROFILE).devices["pin_pad"].settings)
    return PinPadEmulator.from_config(settings)


@pytest.mark.parametrize(
    ("make", "whole_frame", "nak", "timeout"),
    [
        (
            _card_reader,
            reader_wire.build_frame(b"C10"),
            reader_wire.NAK,
            reader_wire.INTER_BYTE_TIMEOUT,
        ),
        (_pin_pad, pad_wire.encode_frame("ST"), pad_wire.NAK, pad_wire.INTER_BYTE_TIMEOUT),
    ],
    ids=["card_reader", "pin_pad"],
)
def test_a_frame_cut_short_is_refused_after_the_inter_byte_timeout(
    make: Any, whole_frame: bytes, nak: int, timeout: float
) -> None:
    emulator = make()
    runner = LinkRunner(emulator, PtyEndpoint()).start()
    driver = SerialDriver(runner.url)
    try:
        driver.write(whole_frame[:3])
        sent = time.monotonic()
        answer = driver.read_some(sent + timeout + 1.0)
        waited = time.monotonic() - sent
        assert answer == bytes([nak])
        assert timeout <= waited + 0.02  # not before the device's timeout ...
        assert waited < timeout + 0.3  # ... and on a tick soon after it, not after a long sleep
        assert not emulator.holds_partial_frame()
        assert runner._poll_seconds() == LinkRunner.IDLE_POLL_SECONDS  # asleep again
    finally:
        driver.close()
        runner.stop()
