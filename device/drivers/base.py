"""What every device driver shares: opening a port by URL, timed reads, and its errors.

A driver never hard-wires serial.Serial: `/dev/ttyUSB0`, a pty path, socket:// and loop:// all work.
"""

from __future__ import annotations

import os
import re
import time
from types import TracebackType
from typing import Any

import serial

from device import crash_points
from device.controller.ports import LinkError
from device.drivers.polled_serial import PolledSerial

ACK = 0x06  # every protocol here acknowledges a received frame with this one byte


def open_port(url: str, *, baudrate: int = 9600, timeout: float = 0.5, **options: Any) -> Any:
    """Open a pyserial port by URL or device path (a path through poll(2): no fd limit)."""
    try:
        if "://" not in url and os.name == "posix":
            return PolledSerial(
                url, baudrate=baudrate, timeout=timeout, write_timeout=2.0, **options
            )
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
        self.device_name = _device_name(type(self).__name__)
        self._crash = _CommandTrail()

    def write(self, data: bytes) -> None:
        if crash_points.active:
            self._crash_boundary(data)
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
                waiting = max(1, self.port.in_waiting)
                if isinstance(self.port, PolledSerial):
                    data: bytes = self.port.read_within(waiting, remaining)
                else:
                    # setting the timeout reconfigures a pty, which fails once its other end is
                    # gone
                    self.port.timeout = min(remaining, 0.05)
                    data = self.port.read(waiting)
            except (serial.SerialException, OSError) as err:
                raise LinkError(f"{self.url}: read failed: {err}") from err
            if data:
                if crash_points.active:
                    self._crash.inbox += data
                return data

    def _crash_boundary(self, data: bytes) -> None:
        """Crash points before a command goes out and once its reply (or a key event) is in.

        A reply is in when the driver acknowledges its frame; later frames before the next
        command are stale repeats, except a PIN pad's key events. A poll that repeats the last
        command with no boundary since its reply is not a boundary, nor is its reply: the ATM
        is where it was after that reply, and counting polls would tie the numbering to timing.
        """
        trail = self._crash
        if data == bytes((ACK,)):
            reply = bytes(trail.inbox)
            trail.inbox.clear()
            if self.device_name == "pin_pad" and (not reply or _is_event(reply)):
                # Unasked (drained outside read_some, or an event frame): a key press.
                crash_points.reached("device.reply:pin_pad:event")
            elif trail.awaiting_reply:
                trail.awaiting_reply = False
                if not trail.repeating:
                    crash_points.reached(f"device.reply:{self.device_name}:{trail.label}")
            trail.reply_mark = crash_points.mark()
            return
        if len(data) == 1:
            return  # a lone NAK is link housekeeping, not a command
        trail.repeating = data == trail.command and crash_points.mark() == trail.reply_mark
        trail.command = data
        trail.awaiting_reply = True
        trail.inbox.clear()
        if not trail.repeating:
            trail.label = command_label(self.device_name, data)
            crash_points.reached(f"device.send:{self.device_name}:{trail.label}")

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


class _CommandTrail:
    """What the crash points of one driver remember of the last command and its reply."""

    def __init__(self) -> None:
        self.command = b""
        self.label = ""
        self.inbox = bytearray()  # bytes read since the command or the last acknowledged frame
        self.awaiting_reply = False
        self.reply_mark = -1
        self.repeating = False


def _device_name(class_name: str) -> str:
    """CashDispenserDriver -> cash_dispenser."""
    stem = class_name.removesuffix("Driver") or class_name
    return re.sub(r"(?<!^)(?=[A-Z])", "_", stem).lower()


def command_label(device: str, frame: bytes) -> str:
    """A short readable name of the command in `frame`, from the device's wire spec."""
    try:
        if device == "cash_dispenser" and len(frame) > 3:
            from peripherals.wire.cash_dispenser import Cmd

            return Cmd(frame[3]).name.lower()
        if device == "card_reader":
            from peripherals.wire import card_reader

            if frame == card_reader.CANCEL:
                return "cancel"
            text = frame[3:6].decode("ascii")
            return f"{card_reader.Command(text[1]).name.lower()}-{text[2]}"
        if device == "pin_pad" and len(frame) > 6:
            return frame[4:6].decode("ascii")
    except (ValueError, IndexError, UnicodeDecodeError):
        pass
    return frame[:4].hex()


def _is_event(reply: bytes) -> bool:
    """Whether a PIN pad frame is a key event rather than the answer to a command."""
    from peripherals.wire import pin_pad

    start = reply.find(bytes((pin_pad.STX,)))
    return start >= 0 and pin_pad.is_event(reply[start + 4 :].decode("ascii", "replace"))
