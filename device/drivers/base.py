"""What every device driver shares: opening a port by URL, timed reads, the framed exchange.

A driver never hard-wires serial.Serial: `/dev/ttyUSB0`, a pty path, socket:// and loop:// all work.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Any, Protocol, TypeVar

import serial

from device import crash_points
from device.controller.ports import DeviceTimeout, LinkError
from device.drivers.polled_serial import PolledSerial
from device.drivers.tcp_serial import TcpSerial
from peripherals.wire.framing import FrameEvent, Framer

ACK = 0x06  # every protocol here acknowledges a received frame with this one byte
NAK = 0x15  # and refuses a damaged one with this

F = TypeVar("F")
R = TypeVar("R")

log = logging.getLogger(__name__)


def open_port(url: str, *, baudrate: int = 9600, timeout: float = 0.5, **options: Any) -> Any:
    """Open a pyserial port by URL or device path (a path through poll(2): no fd limit)."""
    try:
        if "://" not in url and os.name == "posix":
            return PolledSerial(
                url, baudrate=baudrate, timeout=timeout, write_timeout=2.0, **options
            )
        if url.startswith("socket://"):
            port = TcpSerial(None, baudrate=baudrate, timeout=timeout, write_timeout=2.0, **options)
            port.port = url
            port.open()
            return port
        return serial.serial_for_url(
            url, baudrate=baudrate, timeout=timeout, write_timeout=2.0, **options
        )
    except (serial.SerialException, ValueError, OSError) as err:
        raise LinkError(f"cannot open serial port {url!r}: {err}") from err


@dataclass(frozen=True)
class ExchangeRules:
    """How a device's protocol repeats a command; the numbers are in docs/protocols/."""

    sends: int  # a command goes out at most this many times
    ack_timeout: float  # seconds from a send to the device's ACK; silence sends again
    resend_unanswered: bool = False  # silence after the ACK sends again too (repeats are safe)
    damaged_frame_acks: bool = False  # a damaged frame where ACK is awaited proves the command in
    naks_per_send: int | None = None  # damaged frames refused per send (None: every one)


@dataclass
class ExchangeStats:
    """What a driver's exchanges did, for a test or an operator to read."""

    sends: int = 0  # commands written
    retries: int = 0  # of them, sent again after a NAK or a silence
    naks: int = 0  # NAKs from the device: a command reached it damaged
    timeouts: int = 0  # waits for an ACK or a reply that ended in silence
    refused: int = 0  # damaged frames from the device answered with NAK


class Deadlines(Protocol):
    """The clock a driver's ACK and reply deadlines run on, and how it passes while nothing
    arrives. REAL_TIME is the machine's; a simulator may put the deadlines on its virtual clock
    (device/sim/virtual_deadlines.py)."""

    def now(self) -> float: ...

    def wait_slice(self, remaining: float) -> float:
        """Real seconds to wait for bytes before asking again, `remaining` being left."""
        ...

    def nothing_arrived(self, deadline: float) -> None:
        """A wait slice passed in silence; `deadline` is what the driver waits for."""
        ...


class _RealTime:
    def now(self) -> float:
        return time.monotonic()

    def wait_slice(self, remaining: float) -> float:
        return remaining

    def nothing_arrived(self, deadline: float) -> None:
        """Real time has passed by itself."""


REAL_TIME: Deadlines = _RealTime()


class Refused(DeviceTimeout):
    """Every send of a command was answered NAK: like silence, the command never got through."""


class _Unanswered(Enum):
    NAK = "NAK"
    NO_ACK = "no ACK"
    NO_REPLY = "no reply"


class SerialDriver:
    """Owns one port; subclasses build their protocol on `exchange`, or `write` and `read_some`."""

    def __init__(self, url: str, *, baudrate: int = 9600, timeout: float = 1.0) -> None:
        self.url = url
        self.timeout = timeout
        self.port = open_port(url, baudrate=baudrate, timeout=0.05)
        self.device_name = _device_name(type(self).__name__)
        self.stats = ExchangeStats()
        self._unread: deque[FrameEvent[Any]] = deque()  # read past the end of an exchange
        self._crash = _CommandTrail()
        self.deadlines = REAL_TIME

    # ----- one exchange ----------------------------------------------------------------------

    def exchange(
        self,
        framer: Framer[F],
        frame: bytes,
        answer: Callable[[F], R | None],
        rules: ExchangeRules,
        *,
        label: str,
        reply_timeout: float | None = None,
    ) -> R:
        """Send `frame` until the device takes it, and return its reply: the first frame for
        which `answer` (given every good frame, each acknowledged) returns something.

        A NAK, or no ACK within `rules.ack_timeout`, sends it again, at most `rules.sends` times
        in all; a reply that comes first counts as the ACK. After the ACK the reply has
        `reply_timeout` seconds (default the driver's `timeout`). Refused when every send was
        NAKed, else DeviceTimeout.
        """
        wait = self.timeout if reply_timeout is None else reply_timeout
        device = self.device_name.replace("_", " ")
        naks = 0
        acknowledged = False
        for send in range(rules.sends):
            if send:
                self.stats.retries += 1
                log.debug("%s: sending %s again (send %d)", self.url, label, send + 1)
            self.stats.sends += 1
            self.write(frame)
            outcome = self._await_reply(framer, answer, rules, wait)
            if not isinstance(outcome, _Unanswered):
                return outcome
            if outcome is _Unanswered.NAK:
                self.stats.naks += 1
                naks += 1
                continue
            self.stats.timeouts += 1
            if outcome is _Unanswered.NO_REPLY:
                acknowledged = True
                if not rules.resend_unanswered:
                    raise DeviceTimeout(
                        f"{self.url}: {device} sent no reply to {label} within {wait:g} s"
                    )
        if naks == rules.sends:
            raise Refused(f"{self.url}: {device} refused {label} {naks} times (NAK)")
        if acknowledged:
            raise DeviceTimeout(
                f"{self.url}: {device} did not answer {label} in {rules.sends} tries"
            )
        raise DeviceTimeout(
            f"{self.url}: {device} did not acknowledge {label} after {rules.sends} tries"
        )

    def _await_reply(
        self, framer: Framer[F], answer: Callable[[F], R | None], rules: ExchangeRules, wait: float
    ) -> R | _Unanswered:
        """The reply to the command just sent, or why there is none."""
        acknowledged = False
        refused = 0
        deadline = self.deadlines.now() + rules.ack_timeout
        while (event := self._next_event(framer, deadline)) is not None:
            if event.frame is not None:
                self.write(bytes((ACK,)))
                reply = answer(event.frame)
                if reply is not None:
                    return reply
            elif event.nak:
                if rules.naks_per_send is None or refused < rules.naks_per_send:
                    refused += 1
                    self._refuse(event)
                if rules.damaged_frame_acks and not acknowledged:
                    acknowledged = True
                    deadline = self.deadlines.now() + wait
            elif acknowledged:
                continue  # the command is in: an ACK or NAK of an earlier send changes nothing
            elif event.control == ACK:
                acknowledged = True
                deadline = self.deadlines.now() + wait
            elif event.control == NAK:
                return _Unanswered.NAK
        return _Unanswered.NO_REPLY if acknowledged else _Unanswered.NO_ACK

    def receive(self, framer: Framer[F], take: Callable[[F], object], data: bytes = b"") -> None:
        """Outside an exchange: acknowledge each good frame in `data` (and in what an exchange
        read past its reply) and give it to `take`; refuse each damaged one."""
        if data:
            self._unread.extend(framer.feed(data, time.monotonic()))
        while self._unread:
            event = self._unread.popleft()
            if event.frame is not None:
                self.write(bytes((ACK,)))
                take(event.frame)
            elif event.nak:
                self._refuse(event)

    def discard_input(self, framer: Framer[Any]) -> None:
        """Drop whatever arrived before a command: it answers nothing the driver will send."""
        self.reset_input()
        framer.reset()
        self._unread.clear()

    def _next_event(self, framer: Framer[F], deadline: float) -> FrameEvent[F] | None:
        """The next event, read before `deadline` if none is waiting; None once it passes."""
        while not self._unread:
            data = self.read_some(deadline)
            if not data:
                return None
            self._unread.extend(framer.feed(data, time.monotonic()))
        return self._unread.popleft()

    def _refuse(self, event: FrameEvent[Any]) -> None:
        self.stats.refused += 1
        log.debug("%s: damaged frame (%s), NAK", self.url, event.error)
        self.write(bytes((NAK,)))

    # ----- bytes -----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if crash_points.active:
            self._crash_boundary(data)
        try:
            self.port.write(data)
            self.port.flush()
        except (serial.SerialException, OSError) as err:
            raise LinkError(f"{self.url}: write failed: {err}") from err

    def read_some(self, deadline: float) -> bytes:
        """Whatever bytes arrive before `deadline` (on `self.deadlines`); b"" when it passes."""
        while True:
            remaining = deadline - self.deadlines.now()
            if remaining <= 0:
                return b""
            wait = self.deadlines.wait_slice(remaining)
            try:
                waiting = max(1, self.port.in_waiting)
                if isinstance(self.port, PolledSerial):
                    data: bytes = self.port.read_within(waiting, wait)
                else:
                    # setting the timeout reconfigures a pty, which fails once its other end is
                    # gone
                    self.port.timeout = min(wait, 0.05)
                    data = self.port.read(waiting)
            except (serial.SerialException, OSError) as err:
                raise LinkError(f"{self.url}: read failed: {err}") from err
            if data:
                if crash_points.active:
                    self._crash.inbox += data
                return data
            self.deadlines.nothing_arrived(deadline)

    def read_waiting(self) -> bytes:
        """Whatever has already arrived, without waiting (and outside the crash trail's inbox:
        what is drained unasked is a key press, see `_crash_boundary`)."""
        try:
            waiting = self.port.in_waiting
            return bytes(self.port.read(waiting)) if waiting else b""
        except (serial.SerialException, OSError) as err:
            raise LinkError(f"{self.url}: read failed: {err}") from err

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
