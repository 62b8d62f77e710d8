"""What every device driver shares: opening a port by URL, timed reads, and its errors.

A driver never hard-wires serial.Serial: `/dev/ttyUSB0`, a pty path, socket:// and loop:// all work.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

import serial


class DriverError(Exception):
    """A device driver could not do what was asked."""


class DeviceTimeout(DriverError, TimeoutError):
    """The device did not answer in time."""


class DeviceFault(DriverError):
    """The device answered with an error; `code` is the device's own error code."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class LinkError(DriverError, ConnectionError):
    """The serial link failed (port closed, peer gone)."""


def open_port(url: str, *, baudrate: int = 9600, timeout: float = 0.5, **options: Any) -> Any:
    """Open a pyserial port by URL or device path."""
    try:
        return serial.serial_for_url(
            url, baudrate=baudrate, timeout=timeout, write_timeout=2.0, **options
        )
    except (serial.SerialException, ValueError, OSError) as err:
        raise LinkError(f"cannot open serial port {url!r}: {err}") from err


class SerialDriver:
    """Owns one port; subclasses build their protocol on `write` and `read_until_deadline`."""

    def __init__(self, url: str, *, baudrate: int = 9600, timeout: float = 1.0) -> None:
        self.url = url
        self.timeout = timeout
        self.port = open_port(url, baudrate=baudrate, timeout=0.05)

    def write(self, data: bytes) -> None:
        try:
            self.port.write(data)
            self.port.flush()
        except (serial.SerialException, OSError) as err:
            raise LinkError(f"{self.url}: write failed: {err}") from err

    def read_some(self, deadline: float) -> bytes:
        """Whatever bytes arrive before `deadline` (time.monotonic); b"" when it passes."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return b""
            try:
                # setting the timeout reconfigures a pty, which fails once its other end is gone
                self.port.timeout = min(remaining, 0.05)
                waiting = max(1, self.port.in_waiting)
                data: bytes = self.port.read(waiting)
            except (serial.SerialException, OSError) as err:
                raise LinkError(f"{self.url}: read failed: {err}") from err
            if data:
                return data

    def reset_input(self) -> None:
        try:
            self.port.reset_input_buffer()
        except (serial.SerialException, OSError) as err:
            raise LinkError(f"{self.url}: {err}") from err

    def close(self) -> None:
        self.port.close()

    def __enter__(self) -> SerialDriver:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
