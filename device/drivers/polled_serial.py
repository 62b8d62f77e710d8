"""pyserial's POSIX port with its reads and writes waiting in poll(2) instead of select(2).

select() cannot watch a descriptor above 1023, and one process running a fleet of ATMs on ptys
holds thousands; poll() has no such limit. Everything else is pyserial's own port.
"""

from __future__ import annotations

import errno
import os
import select
import termios
from collections.abc import Callable

import serial
from serial.serialutil import PortNotOpenError, SerialException, SerialTimeoutException, Timeout


class PolledSerial(serial.Serial):
    """A serial device path (a tty or a pty) read and written through poll(2).

    It counts the bytes it has taken in (read or flushed unread) and sent, so the simulator can
    tell when the other end has everything: a pty hands bytes over a moment after the write.
    """

    received = 0
    sent = 0

    def read(self, size: int = 1) -> bytes:
        return self.read_within(size, self.timeout)

    def read_within(self, size: int, seconds: float | None) -> bytes:
        """read() with its own timeout: setting `timeout` rewrites the tty's settings (two
        system calls), which a driver waiting in short slices would do before every read."""
        fd = self.fd
        if not self.is_open or fd is None:
            raise PortNotOpenError()
        poller = select.poll()
        poller.register(fd, select.POLLIN)

        def receive(size: int) -> bytes:
            chunk = os.read(fd, size)
            self.received += len(chunk)
            return chunk

        return read_up_to(
            size,
            receive,
            lambda timeout: bool(poller.poll(poll_milliseconds(timeout))),
            seconds,
            # As pyserial says it: readable with nothing to read is a link that went away.
            "device reports readiness to read but returned no data "
            "(device disconnected or multiple access on port?)",
        )

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        fd = self.fd
        if not self.is_open or fd is None:
            raise PortNotOpenError()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)

        def send(view: memoryview) -> int:
            written = os.write(fd, view)
            self.sent += written
            return written

        return write_all(
            data, send, lambda timeout: poller.poll(poll_milliseconds(timeout)), self.write_timeout
        )

    def flush(self) -> None:
        """Wait until the written bytes have left (tcdrain). A stop signal (SIGSTOP, a debugger or
        profiler attaching) interrupts tcdrain, which Python does not restart: wait again."""
        fd = self.fd
        if not self.is_open or fd is None:
            raise PortNotOpenError()
        while True:
            try:
                termios.tcdrain(fd)
                return
            except termios.error as err:
                if err.args and err.args[0] == errno.EINTR:
                    continue
                raise SerialException(f"flush failed: {err}") from err

    def reset_input_buffer(self) -> None:
        """Drop what has arrived, as tcflush would, but read it away so that every byte
        dropped is counted (a flush could drop one that lands between a count and the flush)."""
        fd = self.fd
        if not self.is_open or fd is None:
            raise PortNotOpenError()
        while True:
            try:
                chunk = os.read(fd, 4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                raise SerialException(f"read failed: {err}") from err
            if not chunk:
                return
            self.received += len(chunk)


def read_up_to(
    size: int,
    receive: Callable[[int], bytes],
    wait_readable: Callable[[Timeout], bool],
    seconds: float | None,
    gone: str,
) -> bytes:
    """Up to `size` bytes through a non-blocking `receive`, waiting while nothing is there, for at
    most `seconds` (None: until `size` came); SerialException(`gone`) when the line reports
    readable but gives nothing (the other end went away)."""
    received = bytearray()
    timeout = serial_timeout(seconds)
    while len(received) < size:
        if not wait_readable(timeout):
            break  # the read timeout passed
        try:
            chunk = receive(size - len(received))
        except (BlockingIOError, InterruptedError):
            continue
        except OSError as err:
            raise SerialException(f"read failed: {err}") from err
        if not chunk:
            raise SerialException(gone)
        received += chunk
        if timeout.expired():
            break
    return bytes(received)


def write_all(
    data: bytes | bytearray | memoryview,
    send: Callable[[memoryview], int],
    wait_writable: Callable[[Timeout], object],
    seconds: float | None,
) -> int:
    """Put all of `data` through a non-blocking `send`, waiting for room while the line is full;
    SerialTimeoutException once `seconds` have passed (None: no limit). Returns the byte count."""
    view = memoryview(bytes(data))
    total = len(view)
    timeout = serial_timeout(seconds)
    while view:
        try:
            view = view[send(view) :]
            continue
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as err:
            raise SerialException(f"write failed: {err}") from err
        if timeout.expired():
            raise SerialTimeoutException("Write timeout")
        wait_writable(timeout)
    return total


def serial_timeout(seconds: float | None) -> Timeout:
    # pyserial's Timeout takes None for "no limit", though its type stubs say float only.
    return Timeout(seconds)  # type: ignore[arg-type]


def poll_milliseconds(timeout: Timeout) -> int | None:
    """poll()'s timeout for what is left of a pyserial Timeout (None: wait as long as it takes)."""
    if timeout.is_infinite:
        return None
    return max(0, int(timeout.time_left() * 1000 + 0.999))
