"""PolledSerial on a real pseudo-terminal: a flush interrupted by a stop signal waits again,
and any other failure of it is a SerialException the driver turns into a link error."""

from __future__ import annotations

import errno
import os
import termios
from collections.abc import Iterator

import pytest
import serial
from pytest_mock import MockerFixture

from device.drivers.polled_serial import PolledSerial


@pytest.fixture
def port() -> Iterator[tuple[PolledSerial, int]]:
    controller, device = os.openpty()
    opened = PolledSerial(os.ttyname(device), timeout=1.0)
    os.close(device)
    yield opened, controller
    opened.close()
    os.close(controller)


def test_a_flush_interrupted_by_a_signal_is_retried(
    port: tuple[PolledSerial, int], mocker: MockerFixture
) -> None:
    opened, controller = port
    drain = mocker.patch(
        "device.drivers.polled_serial.termios.tcdrain",
        side_effect=[termios.error(errno.EINTR, "Interrupted system call"), None],
    )
    opened.write(b"\x02hello")
    opened.flush()
    assert drain.call_count == 2
    assert os.read(controller, 16) == b"\x02hello"


def test_a_flush_that_fails_otherwise_is_a_serial_exception(
    port: tuple[PolledSerial, int], mocker: MockerFixture
) -> None:
    opened, _ = port
    mocker.patch(
        "device.drivers.polled_serial.termios.tcdrain",
        side_effect=termios.error(errno.EIO, "Input/output error"),
    )
    with pytest.raises(serial.SerialException, match="flush failed"):
        opened.flush()


def test_a_flush_of_a_real_pty_returns(port: tuple[PolledSerial, int]) -> None:
    opened, controller = port
    opened.write(b"\x06")
    opened.flush()
    assert os.read(controller, 1) == b"\x06"
