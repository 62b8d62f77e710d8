"""Wire format of the motorised card reader (Sankyo ICT3K5/ICT3Q8 style): framer and codec.

Pure bytes, no I/O: the emulator and the driver build on it (docs/protocols/card_reader.md).
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from peripherals.wire.framing import FrameEvent, printable

STX = 0xF2
ACK = 0x06
NAK = 0x15
DLE = 0x10
EOT = 0x04
CANCEL = bytes((DLE, EOT))

HEADER_LENGTH = 3  # STX + 2-byte length
CRC_LENGTH = 2
MAX_FRAME = 1024
MAX_TEXT = MAX_FRAME - HEADER_LENGTH - CRC_LENGTH
INTER_BYTE_TIMEOUT = 0.25  # seconds allowed between two bytes of one frame
ACK_TIMEOUT = 0.3  # seconds a sender waits for ACK before sending the frame again
COMMAND_SENDS = 3  # the host sends a command at most this many times (again on NAK or silence)
REPLY_SENDS = 3  # the reader sends a reply at most this many times (again on NAK or silence)
REPLY_TIMEOUT = 1.0  # seconds the host waits for the reply once its command is acknowledged

COMMAND_MARK = ord("C")
POSITIVE_MARK = ord("P")
NEGATIVE_MARK = ord("N")
FIRMWARE_ID = b"ATMSIM-ICT 1.0"


class CardReaderCodecError(ValueError):
    """A frame text that is not a valid command or reply of this protocol."""


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM (x^16+x^12+x^5+1, initial value 0): the reader's frame check."""
    return binascii.crc_hqx(data, 0)


def build_frame(text: bytes) -> bytes:
    """STX, big-endian length, text, big-endian CRC over STX..text."""
    if not 1 <= len(text) <= MAX_TEXT:
        raise CardReaderCodecError(f"frame text of {len(text)} bytes: expected 1..{MAX_TEXT}")
    head = bytes((STX,)) + len(text).to_bytes(2, "big") + text
    return head + crc16(head).to_bytes(2, "big")


# ----- the framer ------------------------------------------------------------------------------


class Control(IntEnum):
    """Single control bytes (and DLE EOT) seen between frames."""

    ACK = ACK
    NAK = NAK
    CANCEL = DLE  # DLE EOT


class FrameReader:
    """Turns a byte stream into events (a frame is its TEXT, between length and CRC). Hunts for
    STX after garbage; holds at most one frame. Every error is a frame to refuse with NAK."""

    def __init__(
        self, *, max_text: int = MAX_TEXT, inter_byte_timeout: float = INTER_BYTE_TIMEOUT
    ) -> None:
        self.max_text = max_text
        self.inter_byte_timeout = inter_byte_timeout
        self.discarded = 0  # garbage bytes skipped while hunting
        self._buffer = bytearray()
        self._last_byte_at: float | None = None

    @property
    def buffered(self) -> int:
        """Bytes held of an unfinished frame (never more than one frame's worth)."""
        return len(self._buffer)

    def reset(self) -> None:
        self._buffer.clear()
        self._last_byte_at = None

    def expire(self, now: float) -> list[FrameEvent[bytes]]:
        """Drop an unfinished frame whose next byte is overdue; an error event says so."""
        if not self._buffer or self._last_byte_at is None:
            return []
        if now - self._last_byte_at <= self.inter_byte_timeout:
            return []
        held, was_frame = len(self._buffer), self._buffer[0] == STX
        self.reset()
        return [_refused(f"frame cut off after {held} bytes")] if was_frame else []

    def feed(self, data: bytes, now: float) -> list[FrameEvent[bytes]]:
        """Events for `data`, after dropping an unfinished frame that `now` finds overdue."""
        events = self.expire(now)
        if data:
            self._last_byte_at = now
        buf = self._buffer
        buf += data
        i = 0
        end = len(buf)
        while i < end:
            byte = buf[i]
            if byte != STX:
                if byte == ACK:
                    events.append(FrameEvent(control=Control.ACK))
                elif byte == NAK:
                    events.append(FrameEvent(control=Control.NAK))
                elif byte == DLE:
                    if i + 1 >= end:
                        break  # wait for the byte after DLE
                    if buf[i + 1] == EOT:
                        events.append(FrameEvent(control=Control.CANCEL))
                        i += 2
                        continue
                    self.discarded += 1
                else:
                    self.discarded += 1
                i += 1
                continue
            if end - i < HEADER_LENGTH:
                break
            length = (buf[i + 1] << 8) | buf[i + 2]
            if not 1 <= length <= self.max_text:
                events.append(_refused(f"frame length {length} not in 1..{self.max_text}"))
                i += 1  # hunt again from the byte after this STX
                continue
            total = HEADER_LENGTH + length + CRC_LENGTH
            if end - i < total:
                break
            frame = bytes(buf[i : i + total])
            i += total
            body, check = frame[:-CRC_LENGTH], frame[-CRC_LENGTH:]
            if crc16(body).to_bytes(2, "big") != check:
                events.append(_refused(f"CRC {check.hex().upper()} does not match the frame"))
            else:
                events.append(FrameEvent(frame=body[HEADER_LENGTH:]))
        del buf[:i]
        if not buf:
            self._last_byte_at = None
        return events


def _refused(reason: str) -> FrameEvent[bytes]:
    return FrameEvent(error=reason, nak=True)


# ----- the codec -------------------------------------------------------------------------------


class Command(StrEnum):
    """The command code cm (one ASCII character)."""

    INITIALISE = "0"
    STATUS = "1"
    ACCEPT_ENTRY = "2"
    MOVE_CARD = "3"  # pm "0" eject to the gate, "1" capture to the retain bin
    READ_TRACK = "6"  # pm "1".."3": the track
    ENTRY_GATE = ":"  # pm "0" enable entry, "1" disable entry


class InitialiseMode(StrEnum):
    """What initialise does with a card found in the reader."""

    EJECT = "0"
    CAPTURE = "1"
    KEEP = "2"


class MoveTo(StrEnum):
    GATE = "0"
    RETAIN_BIN = "1"


class EntryMode(StrEnum):
    ENABLE = "0"
    DISABLE = "1"


class CardPosition(StrEnum):
    """st1 st0 of a positive reply: where the card is."""

    NONE = "00"
    GATE = "01"
    INSIDE = "02"
    JAMMED = "10"


class ErrorCode(StrEnum):
    """e1 e0 of a negative reply (and the condition field of a status reply)."""

    UNDEFINED_COMMAND = "00"
    PARAMETER = "01"
    NOT_NOW = "02"
    DATA = "04"
    JAM = "10"
    CARD_TOO_LONG = "13"
    CARD_TOO_SHORT = "14"
    READ_ERROR = "20"
    NO_START_SENTINEL = "21"
    NO_END_SENTINEL = "22"
    PARITY = "23"
    LRC = "24"
    NO_DATA = "25"
    POWER_DOWN = "30"
    CARD_PULLED_OUT = "40"
    NOT_INITIALISED = "B0"
    RETAIN_BIN_FULL = "E1"  # extension: not in the Sankyo manual


NO_CONDITION = "00"  # the status condition field when there is nothing to report


REASONS: dict[str, str] = {
    ErrorCode.UNDEFINED_COMMAND: "undefined command",
    ErrorCode.PARAMETER: "bad command parameter",
    ErrorCode.NOT_NOW: "command cannot be done now (no card where it is needed)",
    ErrorCode.DATA: "bad command data",
    ErrorCode.JAM: "card jammed",
    ErrorCode.CARD_TOO_LONG: "card too long",
    ErrorCode.CARD_TOO_SHORT: "card too short",
    ErrorCode.READ_ERROR: "magnetic read error",
    ErrorCode.NO_START_SENTINEL: "read error: no start sentinel",
    ErrorCode.NO_END_SENTINEL: "read error: no end sentinel",
    ErrorCode.PARITY: "read error: parity",
    ErrorCode.LRC: "read error: LRC",
    ErrorCode.NO_DATA: "read error: no data on the track",
    ErrorCode.POWER_DOWN: "power down during the command",
    ErrorCode.CARD_PULLED_OUT: "card pulled out",
    ErrorCode.NOT_INITIALISED: "reader not initialised",
    ErrorCode.RETAIN_BIN_FULL: "retain bin full",
}


def reason(code: str) -> str:
    """A readable reason for an error code, even one this table does not know."""
    return REASONS.get(code, f"unknown error code {code!r}")


_PARAMETERS: dict[Command, frozenset[str]] = {
    Command.INITIALISE: frozenset(m.value for m in InitialiseMode),
    Command.STATUS: frozenset({"0"}),
    Command.ACCEPT_ENTRY: frozenset({"0"}),
    Command.MOVE_CARD: frozenset(m.value for m in MoveTo),
    Command.READ_TRACK: frozenset({"1", "2", "3"}),
    Command.ENTRY_GATE: frozenset(m.value for m in EntryMode),
}


@dataclass(frozen=True)
class CardCommand:
    """A command from the host: "C" cm pm data."""

    command: Command
    parameter: str
    data: bytes = b""

    def text(self) -> bytes:
        return b"C" + self.command.value.encode() + self.parameter.encode("ascii") + self.data

    def frame(self) -> bytes:
        return build_frame(self.text())

    def label(self) -> str:
        return f"C{self.command.value}{self.parameter}"


def initialise(mode: InitialiseMode = InitialiseMode.KEEP) -> CardCommand:
    return CardCommand(Command.INITIALISE, mode.value)


def status_request() -> CardCommand:
    return CardCommand(Command.STATUS, "0")


def accept_entry() -> CardCommand:
    return CardCommand(Command.ACCEPT_ENTRY, "0")


def move_card(to: MoveTo) -> CardCommand:
    return CardCommand(Command.MOVE_CARD, to.value)


def read_track(track: int) -> CardCommand:
    if track not in (1, 2, 3):
        raise CardReaderCodecError(f"track {track!r}: expected 1, 2 or 3")
    return CardCommand(Command.READ_TRACK, str(track))


def entry_gate(mode: EntryMode) -> CardCommand:
    return CardCommand(Command.ENTRY_GATE, mode.value)


@dataclass(frozen=True)
class PositiveReply:
    """ "P" cm pm st1 st0 data."""

    command: Command
    parameter: str
    position: CardPosition
    data: bytes = b""

    def text(self) -> bytes:
        return (
            (b"P" + self.command.value.encode() + self.parameter.encode("ascii"))
            + self.position.value.encode()
            + self.data
        )

    def frame(self) -> bytes:
        return build_frame(self.text())


@dataclass(frozen=True)
class NegativeReply:
    """ "N" cm pm e1 e0."""

    command: Command
    parameter: str
    error: str

    def text(self) -> bytes:
        return (
            b"N" + self.command.value.encode() + self.parameter.encode("ascii")
        ) + self.error.encode("ascii")

    def frame(self) -> bytes:
        return build_frame(self.text())

    @property
    def reason(self) -> str:
        return reason(self.error)


Reply = PositiveReply | NegativeReply


def _ascii(text: bytes, start: int, end: int, what: str) -> str:
    piece = text[start:end]
    if len(piece) != end - start or not printable(piece):
        raise CardReaderCodecError(f"{what}: expected {end - start} printable ASCII characters")
    return piece.decode("ascii")


def _command_code(text: bytes) -> Command:
    cm = _ascii(text, 1, 2, "command code")
    try:
        return Command(cm)
    except ValueError:
        raise CardReaderCodecError(f"unknown command code {cm!r}") from None


def decode_command(text: bytes) -> CardCommand:
    """A command frame's text as a CardCommand; CardReaderCodecError if it is not one.

    The emulator answers a command that does not decode with `refusal(text)`.
    """
    if len(text) < 3 or text[0] != COMMAND_MARK:
        raise CardReaderCodecError("a command text starts with 'C' and has at least cm and pm")
    command = _command_code(text)
    parameter = _ascii(text, 2, 3, "parameter")
    if parameter not in _PARAMETERS[command]:
        raise CardReaderCodecError(f"command {command.value!r}: bad parameter {parameter!r}")
    return CardCommand(command, parameter, bytes(text[3:]))


def refusal(text: bytes) -> bytes | None:
    """The negative reply frame to a command text that does not decode, or None if it is not
    a command at all. Unknown cm: "00"; bad pm: "01". cm and pm are echoed as received."""
    if len(text) < 3 or text[0] != COMMAND_MARK:
        return None
    if not printable(text[1:3]):
        return None
    try:
        Command(chr(text[1]))
    except ValueError:
        code = ErrorCode.UNDEFINED_COMMAND
    else:
        code = ErrorCode.PARAMETER
    return build_frame(b"N" + bytes(text[1:3]) + code.value.encode())


def decode_reply(text: bytes) -> Reply:
    """A reply frame's text as a PositiveReply or NegativeReply, or CardReaderCodecError."""
    if len(text) < 5 or text[0] not in (POSITIVE_MARK, NEGATIVE_MARK):
        raise CardReaderCodecError(
            "a reply text starts with 'P' or 'N' and has cm, pm and two status bytes"
        )
    command = _command_code(text)
    parameter = _ascii(text, 2, 3, "parameter")
    code = _ascii(text, 3, 5, "status")
    if text[0] == NEGATIVE_MARK:
        if len(text) != 5:
            raise CardReaderCodecError("a negative reply carries no data after e1 e0")
        return NegativeReply(command, parameter, code)
    try:
        position = CardPosition(code)
    except ValueError:
        raise CardReaderCodecError(f"unknown card position {code!r}") from None
    return PositiveReply(command, parameter, position, bytes(text[5:]))


# ----- the status reply's data (extension) ----------------------------------------------------


@dataclass(frozen=True)
class StatusData:
    """Data of a positive status reply: retain bin flag ("0"/"1") then a 2-character condition.

    The condition is "B0" while the reader is not initialised, else the error of the last
    refused card entry ("13", "14"), reported once, else "00".
    """

    retain_bin_full: bool
    condition: str = NO_CONDITION

    def encode(self) -> bytes:
        return (b"1" if self.retain_bin_full else b"0") + self.condition.encode("ascii")

    @classmethod
    def decode(cls, data: bytes) -> StatusData:
        if len(data) != 3 or data[:1] not in (b"0", b"1"):
            raise CardReaderCodecError(
                "status data: expected a retain bin flag 0/1 and a 2-character code"
            )
        return cls(data[:1] == b"1", _ascii(data, 1, 3, "status condition"))
