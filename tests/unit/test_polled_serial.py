"""PolledSerial on a real pseudo-terminal: a flush interrupted by a stop signal waits again, a
write waits for room until its timeout, and any other failure is a SerialException the driver
turns into a link error."""

from __future__ import annotations

import errno
import os
import termios
from collections.abc import Iterator

import pytest
import serial
from pytest_mock import MockerFixture

from device.drivers.polled_serial import PolledSerial, read_up_to, write_all


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


def test_a_write_to_a_line_nobody_reads_times_out(port: tuple[PolledSerial, int]) -> None:
    opened, _ = port
    opened.write_timeout = 0.2
    with pytest.raises(serial.SerialTimeoutException, match="Write timeout"):
        opened.write(b"\x55" * 1_000_000)  # far more than a pty holds
    assert 0 < opened.sent < 1_000_000


def test_a_write_waits_for_room_and_sends_everything(mocker: MockerFixture) -> None:
    taken = bytearray()
    full_once = iter([True, False, False, False, False])

    def send(view: memoryview) -> int:
        if next(full_once, False):
            raise BlockingIOError
        taken.extend(view[:3])
        return min(3, len(view))

    wait = mocker.Mock()
    assert write_all(b"\x02hello\x03", send, wait, 1.0) == 7
    assert bytes(taken) == b"\x02hello\x03"
    assert wait.call_count == 1


def test_a_write_the_line_refuses_is_a_serial_exception() -> None:
    def send(view: memoryview) -> int:
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(serial.SerialException, match="write failed"):
        write_all(b"\x02", send, lambda timeout: None, 1.0)


def test_a_read_collects_pieces_and_ends_at_its_size_or_timeout() -> None:
    pieces = iter([b"\x02he", BlockingIOError(), b"llo"])

    def receive(size: int) -> bytes:
        piece = next(pieces)
        if isinstance(piece, Exception):
            raise piece
        return piece[:size]

    assert read_up_to(5, receive, lambda timeout: True, 1.0, "gone") == b"\x02hell"
    assert read_up_to(5, receive, lambda timeout: False, 1.0, "gone") == b""


def test_a_line_readable_with_nothing_to_read_is_reported_gone() -> None:
    with pytest.raises(serial.SerialException, match=r"^the link went away$"):
        read_up_to(1, lambda size: b"", lambda timeout: True, 1.0, "the link went away")
