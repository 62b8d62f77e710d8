"""The cash dispenser's wire protocol: LCDM-2000 style frames, a hunting framer and a typed codec.

Pure bytes, no I/O. The LCDM commands stay byte-compatible; the ATM-class commands are extensions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, TypeVar

from peripherals.wire.framing import PRINTABLE_RUN, FrameEvent, printable

SOH = 0x01
STX = 0x02
ETX = 0x03
EOT = 0x04
ACK = 0x06
NAK = 0x15
DEVICE_ID = 0x50

INTER_BYTE_TIMEOUT = 0.2  # longest gap between two bytes of one frame
ACK_TIMEOUT = 0.5  # the receiver answers ACK / NAK within this
COMMAND_SENDS = 3  # the host sends a command at most this many times (after NAK, no ACK, no reply)
REPLY_SENDS = 4  # the device sends a reply at most this many times (again on NAK)
REPLY_TIMEOUT = 2.0  # seconds the host waits for the reply once its command is acknowledged
MAX_DATA = 200  # longest data field of any frame; longer input is garbage
STACKER_CAPACITY = 100  # notes one dispense may put in the stacker
MAX_NOTES_PER_CASSETTE = 99  # two ASCII digits per count
LCDM_MAX_NOTES = 60  # the LCDM single-cassette commands take 1..60 notes
CASSETTE_SLOTS = 4


class DispenserCodecError(ValueError):
    """Bytes that are not a valid message of this protocol."""


class Cmd(IntEnum):
    """Command bytes. The first six are the LCDM-2000's own; the rest are extensions."""

    PURGE = 0x44
    UPPER_DISPENSE = 0x45
    STATUS = 0x46
    ROM_VERSION = 0x47
    LOWER_DISPENSE = 0x55
    BOTH_DISPENSE = 0x56
    # extensions (ATM-class dispenser)
    COUNTERS = 0x43  # "C"
    DISPENSE_MIX = 0x4D  # "M"
    PRESENT = 0x4F  # "O": open the shutter, present the stacker
    RETRACT = 0x52  # "R"
    EXT_STATUS = 0x53  # "S"
    TAKEN = 0x54  # "T"
    EXCHANGE = 0x58  # "X": replenishment


class ErrorCode(IntEnum):
    """The error byte of a reply; 0x30..0x47 are the LCDM-2000's, 0x61.. are extensions."""

    GOOD = 0x30
    NORMAL_STOP = 0x31
    PICKUP_ERROR = 0x32
    JAM_AT_CHK_SENSORS = 0x33
    OVERFLOW_BILL = 0x34
    JAM_AT_EXIT = 0x35
    JAM_AT_DIV = 0x36
    UNDEFINED_COMMAND = 0x37
    CASSETTE_1_EMPTY = 0x38  # LCDM "upper bill end"
    NOTE_REQUEST_ERROR = 0x3B
    REJECT_TRAY_MISSING = 0x3F
    CASSETTE_2_EMPTY = 0x40  # LCDM "lower bill end"
    OVER_REJECT = 0x44
    CASSETTE_1_MISSING = 0x45  # LCDM "upper cassette not recognised"
    CASSETTE_2_MISSING = 0x46  # LCDM "lower cassette not recognised"
    DISPENSING_TIMEOUT = 0x47
    # extensions
    CASSETTE_3_EMPTY = 0x61
    CASSETTE_4_EMPTY = 0x62
    CASSETTE_3_MISSING = 0x63
    CASSETTE_4_MISSING = 0x64
    SHUTTER_JAM = 0x65
    STACKER_EMPTY = 0x66
    STACKER_BUSY = 0x67  # notes in the stacker, transport or exit: finish or purge first

    @property
    def label(self) -> str:
        """The name drivers report, e.g. "jam_at_chk_sensors"."""
        return self.name.lower()


_EMPTY = {
    1: ErrorCode.CASSETTE_1_EMPTY,
    2: ErrorCode.CASSETTE_2_EMPTY,
    3: ErrorCode.CASSETTE_3_EMPTY,
    4: ErrorCode.CASSETTE_4_EMPTY,
}
_MISSING = {
    1: ErrorCode.CASSETTE_1_MISSING,
    2: ErrorCode.CASSETTE_2_MISSING,
    3: ErrorCode.CASSETTE_3_MISSING,
    4: ErrorCode.CASSETTE_4_MISSING,
}


def empty_error(cassette: int) -> ErrorCode:
    return _EMPTY[cassette]


def missing_error(cassette: int) -> ErrorCode:
    return _MISSING[cassette]


def error_code(value: int) -> ErrorCode:
    try:
        return ErrorCode(value)
    except ValueError:
        raise DispenserCodecError(f"unknown error byte 0x{value:02X}") from None


# ----- framing --------------------------------------------------------------------------------


def bcc(data: Iterable[int]) -> int:
    """XOR of every byte from the start byte through ETX."""
    value = 0
    for byte in data:
        value ^= byte
    return value


def encode_frame(start: int, cmd: int, data: bytes = b"") -> bytes:
    """start ID STX CMD data ETX BCC."""
    if len(data) > MAX_DATA:
        raise DispenserCodecError(f"data of {len(data)} bytes is longer than {MAX_DATA}")
    body = bytes([start, DEVICE_ID, STX, cmd]) + data + bytes([ETX])
    return body + bytes([bcc(body)])


def command_frame(cmd: int, data: bytes = b"") -> bytes:
    return encode_frame(EOT, cmd, data)


def reply_frame(cmd: int, data: bytes = b"") -> bytes:
    return encode_frame(SOH, cmd, data)


# Data length of each command (host to device); commands not listed are read up to ETX.
COMMAND_DATA_LENGTH: Mapping[int, int] = {
    Cmd.PURGE: 0,
    Cmd.UPPER_DISPENSE: 2,
    Cmd.STATUS: 0,
    Cmd.ROM_VERSION: 0,
    Cmd.LOWER_DISPENSE: 2,
    Cmd.BOTH_DISPENSE: 4,
    Cmd.COUNTERS: 0,
    Cmd.DISPENSE_MIX: 2 + 2 * CASSETTE_SLOTS,
    Cmd.PRESENT: 0,
    Cmd.RETRACT: 0,
    Cmd.EXT_STATUS: 0,
    Cmd.TAKEN: 0,
    Cmd.EXCHANGE: 1 + 4 * CASSETTE_SLOTS,
}

# Data length of each reply (device to host); the LCDM status reply holds binary sensor bytes
# (they may equal ETX), so its length must be known. Replies not listed are read up to ETX.
REPLY_DATA_LENGTH: Mapping[int, int] = {
    Cmd.PURGE: 1,
    Cmd.STATUS: 4,
    Cmd.UPPER_DISPENSE: 8,
    Cmd.LOWER_DISPENSE: 8,
    Cmd.BOTH_DISPENSE: 15,
}


@dataclass(frozen=True)
class Frame:
    """One frame with a good BCC: `start` is EOT (a command) or SOH (a reply)."""

    start: int
    cmd: int
    data: bytes

    def encode(self) -> bytes:
        return encode_frame(self.start, self.cmd, self.data)


def _printable(byte: int) -> bool:
    return 0x20 <= byte <= 0x7E


class _Phase(IntEnum):
    HUNT = 0
    ID = 1
    STX = 2
    CMD = 3
    DATA = 4
    ETX = 5
    BCC = 6


class FrameReader:
    """Turns a byte stream into frames, lone ACK / NAK bytes and errors (NAK: a damaged frame).

    Hunts for the start byte (EOT for a device, SOH for a host) after garbage; a frame that breaks
    off is re-scanned from its second byte, so a good frame hidden behind a torn one is found.
    The buffer never holds more than one frame of at most MAX_DATA data bytes.
    """

    def __init__(
        self,
        start: int,
        lengths: Mapping[int, int],
        *,
        max_data: int = MAX_DATA,
        inter_byte_timeout: float = INTER_BYTE_TIMEOUT,
    ) -> None:
        self.start = start
        self.lengths = lengths
        self.max_data = max_data
        self.inter_byte_timeout = inter_byte_timeout
        self.garbage = 0  # bytes skipped while hunting
        self._raw = bytearray()  # the frame being read, from its start byte
        self._phase = _Phase.HUNT
        self._expected: int | None = None  # data length of the frame being read, if fixed
        self._last = 0.0

    @classmethod
    def for_device(cls) -> FrameReader:
        """Reads commands (and the host's ACK / NAK)."""
        return cls(EOT, COMMAND_DATA_LENGTH)

    @classmethod
    def for_host(cls) -> FrameReader:
        """Reads replies (and the device's ACK / NAK)."""
        return cls(SOH, REPLY_DATA_LENGTH)

    @property
    def pending(self) -> int:
        """Bytes of a frame begun but not finished."""
        return len(self._raw)

    def reset(self) -> None:
        self._raw.clear()
        self._phase = _Phase.HUNT
        self._expected = None

    def expire(self, now: float) -> list[FrameEvent[Frame]]:
        """Drop a torn frame whose next byte is overdue at `now`."""
        if not self._raw or now - self._last <= self.inter_byte_timeout:
            return []
        self.reset()
        return [FrameEvent(error="frame timed out")]

    def feed(self, data: bytes, now: float) -> list[FrameEvent[Frame]]:
        """Events for `data`, which arrived at `now`, after dropping a torn frame now overdue."""
        events = self.expire(now)
        if data:
            self._last = now
        pending, at = bytes(data), 0
        while at < len(pending):
            if self._phase is _Phase.DATA:
                taken = self._take_data(pending, at)
                if taken:
                    at += taken
                    continue
            byte = pending[at]
            at += 1
            broken = self._step(byte, events)
            if broken is not None:
                reason, nak = broken
                raw = bytes(self._raw)
                events.append(FrameEvent(error=reason, nak=nak))
                self.reset()
                # hunt again from the byte after the start byte, this one included
                pending, at = raw[1:] + bytes([byte]) + pending[at:], 0
        return events

    def _take_data(self, pending: bytes, at: int) -> int:
        """Data bytes of `pending` from `at` taken in one piece, as `_step` would take them one
        by one: up to a fixed length, or the printable run before ETX within MAX_DATA. 0 when the
        next byte needs `_step` (ETX, a control byte, a frame too long)."""
        have = len(self._raw) - 4
        if self._expected is not None:
            piece = pending[at : at + self._expected - have]
            self._raw += piece
            if have + len(piece) == self._expected:
                self._phase = _Phase.ETX
            return len(piece)
        limit = min(len(pending), at + self.max_data - have)
        match = PRINTABLE_RUN.match(pending, at, limit)
        end = match.end() if match else at
        self._raw += pending[at:end]
        return end - at

    def _step(self, byte: int, events: list[FrameEvent[Frame]]) -> tuple[str, bool] | None:
        """Consume one byte; returns (reason, nak) when the frame being read breaks off."""
        phase = self._phase
        if phase is _Phase.HUNT:
            if byte == self.start:
                self._raw.append(byte)
                self._phase = _Phase.ID
            elif byte in (ACK, NAK):
                events.append(FrameEvent(control=byte))
            else:
                self.garbage += 1
            return None
        if phase is _Phase.ID:
            if byte != DEVICE_ID:
                return ("bad device id", False)
            self._raw.append(byte)
            self._phase = _Phase.STX
            return None
        if phase is _Phase.STX:
            if byte != STX:
                return ("no STX", False)
            self._raw.append(byte)
            self._phase = _Phase.CMD
            return None
        if phase is _Phase.CMD:
            self._raw.append(byte)
            self._expected = self.lengths.get(byte)
            self._phase = _Phase.ETX if self._expected == 0 else _Phase.DATA
            return None
        if phase is _Phase.DATA:
            data_length = len(self._raw) - 4
            if self._expected is not None:
                self._raw.append(byte)
                if data_length + 1 == self._expected:
                    self._phase = _Phase.ETX
                return None
            if byte == ETX:
                self._raw.append(byte)
                self._phase = _Phase.BCC
                return None
            if not _printable(byte):
                return ("control byte in the data", True)
            if data_length >= self.max_data:
                return ("frame too long", True)
            self._raw.append(byte)
            return None
        if phase is _Phase.ETX:
            if byte != ETX:
                return ("no ETX after the data", True)
            self._raw.append(byte)
            self._phase = _Phase.BCC
            return None
        frame_bytes = bytes(self._raw) + bytes([byte])
        self.reset()
        if bcc(frame_bytes[:-1]) != byte:
            events.append(FrameEvent(error="bad BCC", nak=True))
        else:
            events.append(
                FrameEvent(frame=Frame(frame_bytes[0], frame_bytes[3], frame_bytes[4:-2]))
            )
        return None


# ----- field helpers --------------------------------------------------------------------------


def _digits(value: int, width: int, what: str) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**width:
        raise DispenserCodecError(f"{what} {value!r} does not fit {width} decimal digits")
    return b"%0*d" % (width, value)


def _number(data: bytes, start: int, width: int, what: str) -> int:
    field_bytes = data[start : start + width]
    if len(field_bytes) != width or not field_bytes.isdigit():  # bytes: ASCII 0-9 only
        raise DispenserCodecError(
            f"{what}: expected {width} ASCII digits at byte {start}, got {field_bytes!r}"
        )
    return int(field_bytes)


def _char(data: bytes, at: int, choices: Mapping[str, str], what: str) -> str:
    """The name whose one-letter code is at `at`."""
    letter = chr(data[at]) if at < len(data) else ""
    for name, code in choices.items():
        if code == letter:
            return name
    raise DispenserCodecError(f"{what}: unknown code {letter!r} at byte {at}")


def _length(data: bytes, expected: int, what: str) -> None:
    if len(data) != expected:
        raise DispenserCodecError(f"{what}: expected {expected} data bytes, got {len(data)}")


# ----- commands (host to device) --------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A command without data; subclasses with data override `data` and `parse`."""

    CMD: ClassVar[Cmd]

    def data(self) -> bytes:
        return b""

    def encode(self) -> bytes:
        return command_frame(self.CMD, self.data())

    @classmethod
    def parse(cls, data: bytes) -> Command:
        _length(data, 0, cls.__name__)
        return cls()


@dataclass(frozen=True)
class StatusCommand(Command):
    CMD = Cmd.STATUS


@dataclass(frozen=True)
class RomVersionCommand(Command):
    CMD = Cmd.ROM_VERSION


@dataclass(frozen=True)
class PurgeCommand(Command):
    CMD = Cmd.PURGE


@dataclass(frozen=True)
class ExtStatusCommand(Command):
    CMD = Cmd.EXT_STATUS


@dataclass(frozen=True)
class PresentCommand(Command):
    CMD = Cmd.PRESENT


@dataclass(frozen=True)
class TakenCommand(Command):
    CMD = Cmd.TAKEN


@dataclass(frozen=True)
class RetractCommand(Command):
    CMD = Cmd.RETRACT


@dataclass(frozen=True)
class CountersCommand(Command):
    CMD = Cmd.COUNTERS


@dataclass(frozen=True)
class UpperDispense(Command):
    """LCDM: `count` notes (1..60) from the upper cassette (cassette 1) to the exit."""

    CMD = Cmd.UPPER_DISPENSE
    count: int = 0

    def data(self) -> bytes:
        return _digits(self.count, 2, "count")

    @classmethod
    def parse(cls, data: bytes) -> Command:
        _length(data, 2, cls.__name__)
        return cls(_number(data, 0, 2, "count"))


@dataclass(frozen=True)
class LowerDispense(UpperDispense):
    """LCDM: `count` notes (1..60) from the lower cassette (cassette 2) to the exit."""

    CMD = Cmd.LOWER_DISPENSE


@dataclass(frozen=True)
class BothDispense(Command):
    """LCDM: notes from the upper and lower cassettes in one go."""

    CMD = Cmd.BOTH_DISPENSE
    upper: int = 0
    lower: int = 0

    def data(self) -> bytes:
        return _digits(self.upper, 2, "upper count") + _digits(self.lower, 2, "lower count")

    @classmethod
    def parse(cls, data: bytes) -> Command:
        _length(data, 4, cls.__name__)
        return cls(_number(data, 0, 2, "upper count"), _number(data, 2, 2, "lower count"))


@dataclass(frozen=True)
class DispenseMix(Command):
    """Extension: notes from each of the four cassette slots to the stacker, under a sequence
    number; a re-sent command (same number and counts) is answered, not dispensed again."""

    CMD = Cmd.DISPENSE_MIX
    sequence: int = 0
    counts: tuple[int, ...] = (0,) * CASSETTE_SLOTS

    def data(self) -> bytes:
        if len(self.counts) != CASSETTE_SLOTS:
            raise DispenserCodecError(
                f"dispense mix: need {CASSETTE_SLOTS} counts, got {len(self.counts)}"
            )
        return _digits(self.sequence, 2, "sequence") + b"".join(
            _digits(count, 2, f"cassette {i + 1} count") for i, count in enumerate(self.counts)
        )

    @classmethod
    def parse(cls, data: bytes) -> Command:
        _length(data, 2 + 2 * CASSETTE_SLOTS, cls.__name__)
        counts = tuple(
            _number(data, 2 + 2 * i, 2, f"cassette {i + 1} count") for i in range(CASSETTE_SLOTS)
        )
        return cls(_number(data, 0, 2, "sequence"), counts)


UNCHANGED = b"----"


@dataclass(frozen=True)
class Exchange(Command):
    """Extension: replenishment. New note counts per cassette slot (None: unchanged); with
    `empty_bins` the operator has also emptied the reject and retract bins."""

    CMD = Cmd.EXCHANGE
    empty_bins: bool = False
    counts: tuple[int | None, ...] = (None,) * CASSETTE_SLOTS

    def data(self) -> bytes:
        if len(self.counts) != CASSETTE_SLOTS:
            raise DispenserCodecError(
                f"exchange: need {CASSETTE_SLOTS} counts, got {len(self.counts)}"
            )
        return (b"1" if self.empty_bins else b"0") + b"".join(
            UNCHANGED if count is None else _digits(count, 4, f"cassette {i + 1} count")
            for i, count in enumerate(self.counts)
        )

    @classmethod
    def parse(cls, data: bytes) -> Command:
        _length(data, 1 + 4 * CASSETTE_SLOTS, cls.__name__)
        if data[:1] not in (b"0", b"1"):
            raise DispenserCodecError(f"exchange: empty-bins flag {data[:1]!r} is not '0' or '1'")
        counts: list[int | None] = []
        for i in range(CASSETTE_SLOTS):
            start = 1 + 4 * i
            if data[start : start + 4] == UNCHANGED:
                counts.append(None)
            else:
                counts.append(_number(data, start, 4, f"cassette {i + 1} count"))
        return cls(data[:1] == b"1", tuple(counts))


COMMAND_TYPES: Mapping[int, type[Command]] = {
    cls.CMD: cls
    for cls in (
        StatusCommand,
        RomVersionCommand,
        PurgeCommand,
        ExtStatusCommand,
        PresentCommand,
        TakenCommand,
        RetractCommand,
        CountersCommand,
        UpperDispense,
        LowerDispense,
        BothDispense,
        DispenseMix,
        Exchange,
    )
}


def decode_command(frame: Frame) -> Command:
    """The typed command of a frame; DispenserCodecError for an unknown command or bad data."""
    kind = COMMAND_TYPES.get(frame.cmd)
    if kind is None:
        raise DispenserCodecError(f"undefined command 0x{frame.cmd:02X}")
    return kind.parse(frame.data)


# ----- replies (device to host) ---------------------------------------------------------------

# LCDM status reply, sensor byte 0 and sensor byte 1 (a set bit means "blocked" / "not there")
S0_CHK1 = 0x01
S0_CHK2 = 0x02
S0_DIV1 = 0x04
S0_DIV2 = 0x08
S0_EJT = 0x10
S0_EXIT = 0x20
S0_UPPER_NEAR_END = 0x40
S1_SOLENOID = 0x01
S1_UPPER_CASSETTE_OUT = 0x02
S1_LOWER_CASSETTE_OUT = 0x04
S1_CHK3 = 0x08
S1_CHK4 = 0x10
S1_LOWER_NEAR_END = 0x20
S1_REJECT_TRAY_OUT = 0x40

CASSETTE_STATES: Mapping[str, str] = {"ok": "O", "low": "L", "empty": "E", "missing": "M"}
SHUTTER_STATES: Mapping[str, str] = {"closed": "C", "open": "O", "jammed": "J"}
# What became of the last notes presented: none yet, still presented, taken, retracted.
PRESENT_OUTCOMES: Mapping[str, str] = {
    "none": "N",
    "presented": "P",
    "taken": "T",
    "retracted": "R",
}
# LCDM dispense replies carry one status byte per cassette.
LCDM_CASSETTE_STATUS: Mapping[str, int] = {"ok": 0x30, "low": 0x31, "empty": 0x32, "missing": 0x33}

COUNTER_NAMES: tuple[str, ...] = (
    "picked",
    "stacked",
    "rejected",
    "presented",
    "taken",
    "retracted",
    "purged",
    "dispenses",
    "replenishments",
)

R = TypeVar("R", bound="Reply")


@dataclass(frozen=True)
class Reply:
    """A reply whose data is just the error byte (purge, exchange, undefined command)."""

    CMD: ClassVar[Cmd]
    error: ErrorCode = ErrorCode.GOOD

    @property
    def cmd(self) -> int:
        return int(self.CMD)

    @property
    def ok(self) -> bool:
        return self.error is ErrorCode.GOOD

    def data(self) -> bytes:
        return bytes([self.error])

    def encode(self) -> bytes:
        return reply_frame(self.cmd, self.data())

    @classmethod
    def parse(cls, cmd: int, data: bytes) -> Reply:
        _length(data, 1, cls.__name__)
        return cls(error_code(data[0]))


@dataclass(frozen=True)
class PurgeReply(Reply):
    CMD = Cmd.PURGE


@dataclass(frozen=True)
class ExchangeReply(Reply):
    CMD = Cmd.EXCHANGE


@dataclass(frozen=True)
class UndefinedReply(Reply):
    """The answer to a command byte the device does not know: its byte and 0x37."""

    CMD = Cmd.STATUS  # not used: `command` is echoed
    command: int = 0

    @property
    def cmd(self) -> int:
        return self.command

    @classmethod
    def parse(cls, cmd: int, data: bytes) -> Reply:
        _length(data, 1, cls.__name__)
        return cls(error_code(data[0]), cmd)


@dataclass(frozen=True)
class StatusReply(Reply):
    """LCDM status: a '0' byte, the error byte and two sensor bytes."""

    CMD = Cmd.STATUS
    sensors0: int = 0
    sensors1: int = 0

    def data(self) -> bytes:
        return bytes([0x30, self.error, self.sensors0, self.sensors1])

    @classmethod
    def parse(cls, cmd: int, data: bytes) -> Reply:
        _length(data, 4, cls.__name__)
        return cls(error_code(data[1]), data[2], data[3])


@dataclass(frozen=True)
class RomVersionReply(Reply):
    CMD = Cmd.ROM_VERSION
    version: str = ""

    def data(self) -> bytes:
        raw = self.version.encode("ascii", "replace")
        if not printable(raw):
            raise DispenserCodecError(f"ROM version {self.version!r} is not printable ASCII")
        return raw

    @classmethod
    def parse(cls, cmd: int, data: bytes) -> Reply:
        if not printable(data):
            raise DispenserCodecError(f"ROM version {data!r} is not printable ASCII")
        return cls(ErrorCode.GOOD, data.decode("ascii"))


@dataclass(frozen=True)
class SingleDispenseReply(Reply):
    """LCDM upper / lower dispense: notes counted at CHK, notes out of the exit, error,
    cassette status, notes rejected."""

    CMD = Cmd.UPPER_DISPENSE
    command: int = Cmd.UPPER_DISPENSE
    checked: int = 0
    exited: int = 0
    cassette_status: int = 0x30
    rejected: int = 0

    @property
    def cmd(self) -> int:
        return self.command

    def data(self) -> bytes:
        return (
            _digits(self.checked, 2, "checked")
            + _digits(self.exited, 2, "exited")
            + bytes([self.error, self.cassette_status])
            + _digits(self.rejected, 2, "rejected")
        )

    @classmethod
    def parse(cls, cmd: int, data: bytes) -> Reply:
        _length(data, 8, cls.__name__)
        return cls(
            error_code(data[4]),
            cmd,
            _number(data, 0, 2, "checked"),
            _number(data, 2, 2, "exited"),
            data[5],
            _number(data, 6, 2, "rejected"),
        )


@dataclass(frozen=True)
class BothDispenseReply(Reply):
    """LCDM upper and lower dispense: CHK and exit counts of each, error, two cassette status
    bytes, reject counts of each."""

    CMD = Cmd.BOTH_DISPENSE
    upper_checked: int = 0
    upper_exited: int = 0
    lower_checked: int = 0
    lower_exited: int = 0
    upper_status: int = 0x30
    lower_status: int = 0x30
    upper_rejected: int = 0
    lower_rejected: int = 0

    def data(self) -> bytes:
        return (
            _digits(self.upper_checked, 2, "upper checked")
            + _digits(self.upper_exited, 2, "upper exited")
            + _digits(self.lower_checked, 2, "lower checked")
            + _digits(self.lower_exited, 2, "lower exited")
            + bytes([self.error, self.upper_status, self.lower_status])
            + _digits(self.upper_rejected, 2, "upper rejected")
            + _digits(self.lower_rejected, 2, "lower rejected")
        )

    @classmethod
    def parse(cls, cmd: int, data: bytes) -> Reply:
        _length(data, 15, cls.__name__)
        return cls(
            error_code(data[8]),
            _number(data, 0, 2, "upper checked"),
            _number(data, 2, 2, "upper exited"),
            _number(data, 4, 2, "lower checked"),
            _number(data, 6, 2, "lower exited"),
            data[9],
            data[10],
            _number(data, 11, 2, "upper rejected"),
            _number(data, 13, 2, "lower rejected"),
        )


@dataclass(frozen=True)
class MixCount:
    """Where the notes taken from one cassette in one dispense went."""

    picked: int = 0  # notes out of the cassette
    stacked: int = 0  # in the stacker
    rejected: int = 0  # in the reject bin (double or skewed)
    transport: int = 0  # stuck in the transport (a jam)

    def data(self, slot: int) -> bytes:
        return b"".join(
            _digits(value, 3, f"cassette {slot} {name}")
            for name, value in (
                ("picked", self.picked),
                ("stacked", self.stacked),
                ("rejected", self.rejected),
                ("transport", self.transport),
            )
        )

    @classmethod
    def parse(cls, data: bytes, start: int, slot: int) -> MixCount:
        names = ("picked", "stacked", "rejected", "transport")
        values = [
            _number(data, start + 3 * i, 3, f"cassette {slot} {n}") for i, n in enumerate(names)
        ]
        return cls(*values)


@dataclass(frozen=True)
class DispenseMixReply(Reply):
    """Extension: sequence, repeated flag, error, stacker amount (cents), then per cassette slot
    picked / stacked / rejected / transport."""

    CMD = Cmd.DISPENSE_MIX
    sequence: int = 0
    repeated: bool = False
    stacker_amount: int = 0
    cassettes: tuple[MixCount, ...] = (MixCount(),) * CASSETTE_SLOTS

    LENGTH: ClassVar[int] = 2 + 1 + 1 + 8 + 12 * CASSETTE_SLOTS

    def data(self) -> bytes:
        if len(self.cassettes) != CASSETTE_SLOTS:
            raise DispenserCodecError(f"dispense mix reply: need {CASSETTE_SLOTS} cassette slots")
        return (
            _digits(self.sequence, 2, "sequence")
            + (b"1" if self.repeated else b"0")
            + bytes([self.error])
            + _digits(self.stacker_amount, 8, "stacker amount")
            + b"".join(count.data(i + 1) for i, count in enumerate(self.cassettes))
        )

    @classmethod
    def parse(cls, cmd: int, data: bytes) -> Reply:
        _length(data, cls.LENGTH, cls.__name__)
        if data[2:3] not in (b"0", b"1"):
            raise DispenserCodecError(f"dispense mix reply: repeated flag {data[2:3]!r}")
        return cls(
            error_code(data[3]),
            _number(data, 0, 2, "sequence"),
            data[2:3] == b"1",
            _number(data, 4, 8, "stacker amount"),
            tuple(MixCount.parse(data, 12 + 12 * i, i + 1) for i in range(CASSETTE_SLOTS)),
        )


@dataclass(frozen=True)
class PresentReply(Reply):
    """Extension: error, notes presented, amount presented (cents), shutter state."""

    CMD = Cmd.PRESENT
    notes: int = 0
    amount: int = 0
    shutter: str = "closed"

    def data(self) -> bytes:
        return (
            bytes([self.error])
            + _digits(self.notes, 3, "notes")
            + _digits(self.amount, 8, "amount")
            + SHUTTER_STATES[self.shutter].encode()
        )

    @classmethod
    def parse(cls, cmd: int, data: bytes) -> Reply:
        _length(data, 13, cls.__name__)
        return cls(
            error_code(data[0]),
            _number(data, 1, 3, "notes"),
            _number(data, 4, 8, "amount"),
            _char(data, 12, SHUTTER_STATES, "shutter"),
        )


@dataclass(frozen=True)
class TakenReply(Reply):
    """Extension: error, what became of the last notes presented, notes presented now."""

    CMD = Cmd.TAKEN
    outcome: str = "none"
    notes: int = 0

    def data(self) -> bytes:
        return (
            bytes([self.error])
            + PRESENT_OUTCOMES[self.outcome].encode()
            + _digits(self.notes, 3, "notes")
        )

    @classmethod
    def parse(cls, cmd: int, data: bytes) -> Reply:
        _length(data, 5, cls.__name__)
        return cls(
            error_code(data[0]),
            _char(data, 1, PRESENT_OUTCOMES, "outcome"),
            _number(data, 2, 3, "notes"),
        )


@dataclass(frozen=True)
class RetractReply(Reply):
    """Extension: error, notes and amount retracted now, notes and amount in the retract bin."""

    CMD = Cmd.RETRACT
    notes: int = 0
    amount: int = 0
    bin_notes: int = 0
    bin_amount: int = 0

    def data(self) -> bytes:
        return (
            bytes([self.error])
            + _digits(self.notes, 3, "notes")
            + _digits(self.amount, 8, "amount")
            + _digits(self.bin_notes, 4, "bin notes")
            + _digits(self.bin_amount, 8, "bin amount")
        )

    @classmethod
    def parse(cls, cmd: int, data: bytes) -> Reply:
        _length(data, 24, cls.__name__)
        return cls(
            error_code(data[0]),
            _number(data, 1, 3, "notes"),
            _number(data, 4, 8, "amount"),
            _number(data, 12, 4, "bin notes"),
            _number(data, 16, 8, "bin amount"),
        )


@dataclass(frozen=True)
class CountersReply(Reply):
    """Extension: error, then each of COUNTER_NAMES as 8 digits."""

    CMD = Cmd.COUNTERS
    values: tuple[int, ...] = (0,) * len(COUNTER_NAMES)

    def data(self) -> bytes:
        if len(self.values) != len(COUNTER_NAMES):
            raise DispenserCodecError(f"counters: need {len(COUNTER_NAMES)} values")
        return bytes([self.error]) + b"".join(
            _digits(value, 8, name) for name, value in zip(COUNTER_NAMES, self.values, strict=True)
        )

    @classmethod
    def parse(cls, cmd: int, data: bytes) -> Reply:
        _length(data, 1 + 8 * len(COUNTER_NAMES), cls.__name__)
        return cls(
            error_code(data[0]),
            tuple(_number(data, 1 + 8 * i, 8, name) for i, name in enumerate(COUNTER_NAMES)),
        )

    def as_dict(self) -> dict[str, int]:
        return dict(zip(COUNTER_NAMES, self.values, strict=True))


@dataclass(frozen=True)
class CassetteInfo:
    """One cassette as the extended status reports it (25 bytes on the wire)."""

    number: int
    state: str  # ok | low | empty | missing
    currency: str  # ISO 4217 numeric, 3 digits
    denomination: int  # cents
    count: int
    capacity: int
    low_threshold: int

    LENGTH: ClassVar[int] = 1 + 1 + 3 + 8 + 4 + 4 + 4

    def data(self) -> bytes:
        if len(self.currency) != 3 or not self.currency.isdigit():
            raise DispenserCodecError(f"currency {self.currency!r} is not 3 digits")
        return (
            _digits(self.number, 1, "cassette number")
            + CASSETTE_STATES[self.state].encode()
            + self.currency.encode("ascii")
            + _digits(self.denomination, 8, "denomination")
            + _digits(self.count, 4, "count")
            + _digits(self.capacity, 4, "capacity")
            + _digits(self.low_threshold, 4, "low threshold")
        )

    @classmethod
    def parse(cls, data: bytes, start: int) -> CassetteInfo:
        return cls(
            _number(data, start, 1, "cassette number"),
            _char(data, start + 1, CASSETTE_STATES, "cassette state"),
            str(_number(data, start + 2, 3, "currency")).zfill(3),
            _number(data, start + 5, 8, "denomination"),
            _number(data, start + 13, 4, "count"),
            _number(data, start + 17, 4, "capacity"),
            _number(data, start + 21, 4, "low threshold"),
        )


@dataclass(frozen=True)
class ExtStatusReply(Reply):
    """Extension: the whole device: error, device ok, shutter, last present outcome, stacker,
    transport, exit, reject and retract bins (notes and cents), then each cassette."""

    CMD = Cmd.EXT_STATUS
    device_ok: bool = True
    shutter: str = "closed"
    outcome: str = "none"
    stacker_notes: int = 0
    stacker_amount: int = 0
    transport_notes: int = 0
    presented_notes: int = 0
    presented_amount: int = 0
    reject_notes: int = 0
    reject_amount: int = 0
    retract_notes: int = 0
    retract_amount: int = 0
    cassettes: tuple[CassetteInfo, ...] = field(default_factory=tuple)

    HEAD: ClassVar[int] = 54

    def data(self) -> bytes:
        if len(self.cassettes) > CASSETTE_SLOTS:
            raise DispenserCodecError(f"at most {CASSETTE_SLOTS} cassettes")
        return (
            bytes([self.error])
            + (b"0" if self.device_ok else b"1")
            + SHUTTER_STATES[self.shutter].encode()
            + PRESENT_OUTCOMES[self.outcome].encode()
            + _digits(self.stacker_notes, 3, "stacker notes")
            + _digits(self.stacker_amount, 8, "stacker amount")
            + _digits(self.transport_notes, 3, "transport notes")
            + _digits(self.presented_notes, 3, "presented notes")
            + _digits(self.presented_amount, 8, "presented amount")
            + _digits(self.reject_notes, 4, "reject notes")
            + _digits(self.reject_amount, 8, "reject amount")
            + _digits(self.retract_notes, 4, "retract notes")
            + _digits(self.retract_amount, 8, "retract amount")
            + _digits(len(self.cassettes), 1, "cassette count")
            + b"".join(c.data() for c in self.cassettes)
        )

    @classmethod
    def parse(cls, cmd: int, data: bytes) -> Reply:
        if len(data) < cls.HEAD:
            raise DispenserCodecError(
                f"extended status: {len(data)} data bytes, need {cls.HEAD} or more"
            )
        count = _number(data, 53, 1, "cassette count")
        if count > CASSETTE_SLOTS:
            raise DispenserCodecError(
                f"extended status: {count} cassettes, at most {CASSETTE_SLOTS}"
            )
        _length(data, cls.HEAD + count * CassetteInfo.LENGTH, cls.__name__)
        if data[1:2] not in (b"0", b"1"):
            raise DispenserCodecError(f"extended status: device flag {data[1:2]!r}")
        return cls(
            error_code(data[0]),
            data[1:2] == b"0",
            _char(data, 2, SHUTTER_STATES, "shutter"),
            _char(data, 3, PRESENT_OUTCOMES, "outcome"),
            _number(data, 4, 3, "stacker notes"),
            _number(data, 7, 8, "stacker amount"),
            _number(data, 15, 3, "transport notes"),
            _number(data, 18, 3, "presented notes"),
            _number(data, 21, 8, "presented amount"),
            _number(data, 29, 4, "reject notes"),
            _number(data, 33, 8, "reject amount"),
            _number(data, 41, 4, "retract notes"),
            _number(data, 45, 8, "retract amount"),
            tuple(
                CassetteInfo.parse(data, cls.HEAD + i * CassetteInfo.LENGTH) for i in range(count)
            ),
        )


REPLY_TYPES: Mapping[int, type[Reply]] = {
    Cmd.PURGE: PurgeReply,
    Cmd.STATUS: StatusReply,
    Cmd.ROM_VERSION: RomVersionReply,
    Cmd.UPPER_DISPENSE: SingleDispenseReply,
    Cmd.LOWER_DISPENSE: SingleDispenseReply,
    Cmd.BOTH_DISPENSE: BothDispenseReply,
    Cmd.DISPENSE_MIX: DispenseMixReply,
    Cmd.PRESENT: PresentReply,
    Cmd.TAKEN: TakenReply,
    Cmd.RETRACT: RetractReply,
    Cmd.COUNTERS: CountersReply,
    Cmd.EXT_STATUS: ExtStatusReply,
    Cmd.EXCHANGE: ExchangeReply,
}


def decode_reply(frame: Frame) -> Reply:
    """The typed reply of a frame; a one-byte 0x37 answer is an UndefinedReply for any command."""
    if len(frame.data) == 1 and frame.data[0] == ErrorCode.UNDEFINED_COMMAND:
        return UndefinedReply(ErrorCode.UNDEFINED_COMMAND, frame.cmd)
    kind = REPLY_TYPES.get(frame.cmd)
    if kind is None:
        raise DispenserCodecError(f"reply to unknown command 0x{frame.cmd:02X}")
    return kind.parse(frame.cmd, frame.data)


def as_reply(kind: type[R], reply: Reply) -> R:
    """`reply` as the expected type, or DispenserCodecError (the device answered something else)."""
    if not isinstance(reply, kind):
        raise DispenserCodecError(f"expected {kind.__name__}, got {type(reply).__name__}")
    return reply
