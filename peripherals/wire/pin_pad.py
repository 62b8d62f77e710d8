"""The encrypted PIN pad's wire protocol as pure bytes: a hunting framer and a typed codec.

Frames follow the SZZT ZT588 family: STX, 3-digit length, text, ETX, 2 hex digits of XOR.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from peripherals.wire.framing import FrameEvent, printable

STX = 0x02
ETX = 0x03
ACK = 0x06
NAK = 0x15
MAX_TEXT = 512  # longest frame text either side accepts; a TR-31 block fits with room
INTER_BYTE_TIMEOUT = 0.2  # seconds between bytes of one frame before a receiver gives up on it
ACK_TIMEOUT = 0.25  # seconds the host waits for ACK before sending its command again
COMMAND_SENDS = 4  # the host sends a command at most this many times (again on NAK or silence)
REPLY_SENDS = 4  # the pad sends a reply or an event at most this many times (again on NAK)
REPLY_TIMEOUT = 1.0  # seconds the host waits for the reply once its command is acknowledged
OVERHEAD = 7  # STX, three length digits, ETX, two checksum digits


def checksum(body: bytes) -> int:
    """XOR of every byte from the first length digit to ETX inclusive."""
    value = 0
    for byte in body:
        value ^= byte
    return value


def encode_frame(text: str) -> bytes:
    """One frame around `text` (printable ASCII, at most MAX_TEXT characters)."""
    raw = text.encode("ascii")
    if not printable(raw):
        raise ValueError("frame text must be printable ASCII")
    if len(raw) > MAX_TEXT:
        raise ValueError(f"frame text of {len(raw)} characters is over {MAX_TEXT}")
    body = f"{len(raw):03d}".encode("ascii") + raw + bytes([ETX])
    return bytes([STX]) + body + f"{checksum(body):02X}".encode("ascii")


class FrameDecoder:
    """Turns a byte stream, split anywhere, into events; a frame is its text.

    Between frames it hunts for STX, ACK or NAK and skips anything else. A frame that fails its
    ETX or checksum is reported (to refuse with NAK) and dropped; after a false STX (bad length)
    hunting resumes at the next byte, so a real frame hidden behind garbage is still found.
    """

    def __init__(
        self, max_text: int = MAX_TEXT, *, inter_byte_timeout: float = INTER_BYTE_TIMEOUT
    ) -> None:
        self.max_text = max_text
        self.inter_byte_timeout = inter_byte_timeout
        self._buffer = bytearray()
        self._last_byte_at = 0.0
        self.skipped = 0  # garbage bytes dropped while hunting

    @property
    def partial(self) -> bool:
        """Whether a frame has begun and not ended (the receiver times it out)."""
        return bool(self._buffer)

    def reset(self) -> None:
        self._buffer.clear()

    def expire(self, now: float) -> list[FrameEvent[str]]:
        """The frame in progress took too long: give up its STX and hunt in what follows."""
        if not self._buffer or now - self._last_byte_at <= self.inter_byte_timeout:
            return []
        del self._buffer[0]
        return [FrameEvent(error="frame timed out", nak=True), *self._parse()]

    def feed(self, data: bytes, now: float) -> list[FrameEvent[str]]:
        """Events for `data`. An overdue frame is left for `expire`, which the receiver's timer
        calls: the pad's timer runs every few milliseconds, and the driver never times frames."""
        if data:
            self._last_byte_at = now
        self._buffer += data
        return self._parse()

    def _parse(self) -> list[FrameEvent[str]]:
        events: list[FrameEvent[str]] = []
        buffer = self._buffer
        while buffer:
            start = next((i for i, b in enumerate(buffer) if b in (STX, ACK, NAK)), None)
            if start is None:
                self.skipped += len(buffer)
                buffer.clear()
                break
            if start:
                self.skipped += start
                del buffer[:start]
            if buffer[0] != STX:
                events.append(FrameEvent(control=buffer[0]))
                del buffer[0]
                continue
            if len(buffer) < 4:
                break
            digits = bytes(buffer[1:4])
            if not digits.isdigit():
                self.skipped += 1
                del buffer[0]  # a stray STX: hunt on from the next byte
                continue
            length = int(digits)
            if length > self.max_text:
                events.append(FrameEvent(error=f"length {length} over {self.max_text}", nak=True))
                del buffer[0]
                continue
            total = length + OVERHEAD
            if len(buffer) < total:
                break
            frame = bytes(buffer[:total])
            if frame[4 + length] != ETX:
                events.append(FrameEvent(error="no ETX where the length says", nak=True))
                del buffer[0]
                continue
            del buffer[:total]
            body, check = frame[1 : 5 + length], frame[5 + length :]
            if check != f"{checksum(body):02X}".encode("ascii"):
                events.append(FrameEvent(error="checksum mismatch", nak=True))
            elif not printable(frame[4 : 4 + length]):
                events.append(FrameEvent(error="text is not printable ASCII", nak=True))
            else:
                events.append(FrameEvent(frame=frame[4 : 4 + length].decode("ascii")))
        return events


# ----- meaning ---------------------------------------------------------------------------------


class ErrorCode(StrEnum):
    """The device's error codes: a reply's status is "00" or one of these."""

    UNKNOWN_COMMAND = "E0"
    BAD_PARAMETER = "E1"
    WRONG_MODE = "E2"
    KEY_NOT_LOADED = "E3"
    KEY_BLOCK_REJECTED = "E4"
    KEY_USAGE_WRONG = "E5"
    FORMAT_NOT_USABLE = "E6"
    PAN_INVALID = "E7"
    NO_PIN_BLOCK = "E8"
    PIN_LENGTH_INVALID = "E9"
    TAMPERED = "EA"
    DUKPT_EXHAUSTED = "EB"
    NO_MASTER_KEY = "EC"
    UNKNOWN_SLOT = "ED"
    DUKPT_NOT_CONFIGURED = "EE"
    INTERNAL = "EF"

    @property
    def description(self) -> str:
        return ERROR_TEXT[self]


ERROR_TEXT: dict[ErrorCode, str] = {
    ErrorCode.UNKNOWN_COMMAND: "unknown command",
    ErrorCode.BAD_PARAMETER: "malformed or out-of-range parameter",
    ErrorCode.WRONG_MODE: "command not allowed in the current mode",
    ErrorCode.KEY_NOT_LOADED: "the key needed is not loaded",
    ErrorCode.KEY_BLOCK_REJECTED: "key block malformed or its MAC does not verify",
    ErrorCode.KEY_USAGE_WRONG: "key block usage, algorithm or length not allowed for the slot",
    ErrorCode.FORMAT_NOT_USABLE: "PIN block format not usable with the selected key",
    ErrorCode.PAN_INVALID: "PAN missing or not 12 to 19 digits",
    ErrorCode.NO_PIN_BLOCK: "no PIN block ready (entry not finished with enter)",
    ErrorCode.PIN_LENGTH_INVALID: "PIN length limits not within 4..12 or min > max",
    ErrorCode.TAMPERED: "device tampered: keys erased until re-installation",
    ErrorCode.DUKPT_EXHAUSTED: "DUKPT transaction counter exhausted",
    ErrorCode.NO_MASTER_KEY: "terminal master key not installed",
    ErrorCode.UNKNOWN_SLOT: "unknown key slot",
    ErrorCode.DUKPT_NOT_CONFIGURED: "DUKPT not configured on this terminal",
    ErrorCode.INTERNAL: "internal device error",
}

OK = "00"


class Mode(StrEnum):
    IDLE = "idle"
    PLAIN = "plain"
    PIN_ENTRY = "pin_entry"


MODE_CODES: dict[Mode, str] = {Mode.IDLE: "I", Mode.PLAIN: "P", Mode.PIN_ENTRY: "N"}


class KeySource(StrEnum):
    """Where the PIN block key comes from: a fixed PIN key or the terminal's DUKPT scheme."""

    FIXED = "F"
    DUKPT = "D"


class Slot(StrEnum):
    """Key slots: the terminal master key and the two fixed PIN keys."""

    MASTER = "MK"
    PIN_TDES = "PT"
    PIN_AES = "PA"


SLOT_NAMES: dict[str, Slot] = {
    "tmk": Slot.MASTER,
    "pin_tdes": Slot.PIN_TDES,
    "pin_aes": Slot.PIN_AES,
    **{slot.value: slot for slot in Slot},
}

PIN_FORMATS = (0, 1, 3, 4)
PIN_LENGTHS = range(4, 13)


class PinPadCodecError(ValueError):
    """Text that is no valid command, reply or event; `code` is the error code to answer with."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.BAD_PARAMETER) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Status:
    code = "ST"


@dataclass(frozen=True)
class LoadKey:
    slot: Slot
    key_block: str
    code = "LK"


@dataclass(frozen=True)
class ReadKeyCheckValue:
    slot: Slot
    code = "KC"


@dataclass(frozen=True)
class SelectPinBlock:
    pin_block_format: int
    key_source: KeySource
    code = "PF"


@dataclass(frozen=True)
class StartPinEntry:
    pan: str = field(repr=False)
    pin_block_format: int = 0
    min_length: int = 4
    max_length: int = 12
    timeout_seconds: int = 30
    code = "PE"


@dataclass(frozen=True)
class GetPinBlock:
    code = "PB"


@dataclass(frozen=True)
class Cancel:
    code = "CN"


@dataclass(frozen=True)
class StartPlainEntry:
    code = "PL"


@dataclass(frozen=True)
class StopEntry:
    code = "SP"


Command = (
    Status
    | LoadKey
    | ReadKeyCheckValue
    | SelectPinBlock
    | StartPinEntry
    | GetPinBlock
    | Cancel
    | StartPlainEntry
    | StopEntry
)
COMMAND_CODES = ("ST", "LK", "KC", "PF", "PE", "PB", "CN", "PL", "SP")
EVENT_PREFIX = "EV"


def _slot(text: str) -> Slot:
    try:
        return Slot(text)
    except ValueError:
        raise PinPadCodecError(f"unknown key slot {text!r}", ErrorCode.UNKNOWN_SLOT) from None


def _number(text: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise PinPadCodecError(f"{what} {text!r} is not a number")
    return int(text)


def encode_command(command: Command) -> str:
    match command:
        case LoadKey(slot, block):
            return f"LK{slot.value}{block}"
        case ReadKeyCheckValue(slot):
            return f"KC{slot.value}"
        case SelectPinBlock(fmt, source):
            return f"PF{fmt}{source.value}"
        case StartPinEntry(pan, fmt, low, high, seconds):
            if not (0 <= fmt <= 9 and 0 <= low <= 99 and 0 <= high <= 99 and 0 <= seconds <= 999):
                raise PinPadCodecError("PIN entry parameters do not fit their fields")
            return f"PE{fmt}{low:02d}{high:02d}{seconds:03d}{pan}"
        case _:
            return command.code


def decode_command(text: str) -> Command:
    """The command in a frame's text; PinPadCodecError (with the code to answer) if it is none."""
    code, rest = text[:2], text[2:]
    simple: dict[str, Command] = {
        "ST": Status(),
        "PB": GetPinBlock(),
        "CN": Cancel(),
        "PL": StartPlainEntry(),
        "SP": StopEntry(),
    }
    if code in simple:
        if rest:
            raise PinPadCodecError(f"{code} takes no data")
        return simple[code]
    if code == "LK":
        block = rest[2:]
        if not block or not block.isalnum():
            raise PinPadCodecError("LK needs a slot and an alphanumeric key block")
        return LoadKey(_slot(rest[:2]), block)
    if code == "KC":
        if len(rest) != 2:
            raise PinPadCodecError("KC needs a 2-character slot")
        return ReadKeyCheckValue(_slot(rest))
    if code == "PF":
        if len(rest) != 2:
            raise PinPadCodecError("PF needs a format digit and a key source letter")
        try:
            source = KeySource(rest[1])
        except ValueError:
            raise PinPadCodecError(f"unknown key source {rest[1]!r}") from None
        return SelectPinBlock(_number(rest[0], "format"), source)
    if code == "PE":
        if len(rest) < 8:
            raise PinPadCodecError("PE needs format, min, max, timeout and PAN")
        pan = rest[8:]
        if not (pan.isascii() and pan.isdigit()):
            raise PinPadCodecError("the PAN is digits only", ErrorCode.PAN_INVALID)
        return StartPinEntry(
            pan=pan,
            pin_block_format=_number(rest[0], "format"),
            min_length=_number(rest[1:3], "minimum length"),
            max_length=_number(rest[3:5], "maximum length"),
            timeout_seconds=_number(rest[5:8], "timeout"),
        )
    raise PinPadCodecError(f"unknown command {code!r}", ErrorCode.UNKNOWN_COMMAND)


@dataclass(frozen=True)
class Reply:
    """The answer to a command: its code, "00" or an error code, and data (only with "00")."""

    command: str
    status: str = OK
    data: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def error(self) -> ErrorCode | None:
        return None if self.ok else ErrorCode(self.status)


def encode_reply(reply: Reply) -> str:
    return f"{reply.command}{reply.status}{reply.data if reply.ok else ''}"


def decode_reply(text: str) -> Reply:
    command, status, data = text[:2], text[2:4], text[4:]
    if command not in COMMAND_CODES:
        raise PinPadCodecError(f"reply to unknown command {command!r}")
    if status != OK:
        try:
            ErrorCode(status)
        except ValueError:
            raise PinPadCodecError(f"reply status {status!r} is neither 00 nor E0..EF") from None
        if data:
            raise PinPadCodecError("an error reply carries no data")
    return Reply(command, status, data)


@dataclass(frozen=True)
class StatusData:
    mode: Mode
    keys_loaded: bool
    tampered: bool
    pin_ready: bool
    pin_block_format: int
    key_source: str  # "fixed" | "dukpt_tdes" | "dukpt_aes"


KEY_SOURCE_CODES = {"fixed": "F", "dukpt_tdes": "T", "dukpt_aes": "A"}


def _flag(char: str) -> bool:
    if char not in ("0", "1"):
        raise PinPadCodecError(f"flag {char!r} is not 0 or 1")
    return char == "1"


def encode_status(status: StatusData) -> str:
    return (
        f"{MODE_CODES[status.mode]}{int(status.keys_loaded)}{int(status.tampered)}"
        f"{int(status.pin_ready)}{status.pin_block_format}{KEY_SOURCE_CODES[status.key_source]}"
    )


def decode_status(data: str) -> StatusData:
    if len(data) != 6:
        raise PinPadCodecError(f"status data {data!r} is not 6 characters")
    modes = {code: mode for mode, code in MODE_CODES.items()}
    sources = {code: name for name, code in KEY_SOURCE_CODES.items()}
    if data[0] not in modes or data[5] not in sources:
        raise PinPadCodecError(f"status data {data!r} has an unknown mode or key source")
    return StatusData(
        mode=modes[data[0]],
        keys_loaded=_flag(data[1]),
        tampered=_flag(data[2]),
        pin_ready=_flag(data[3]),
        pin_block_format=_number(data[4], "format"),
        key_source=sources[data[5]],
    )


@dataclass(frozen=True)
class PinBlockData:
    """The reply to PB: format, enciphered block, KSN (DUKPT) or None. Never log `block`."""

    pin_block_format: int
    block: bytes = field(repr=False)
    ksn: str | None


def encode_pin_block(data: PinBlockData) -> str:
    return f"{data.pin_block_format}{data.block.hex().upper()}{data.ksn or ''}"


def decode_pin_block(data: str) -> PinBlockData:
    if not data:
        raise PinPadCodecError("empty PIN block reply")
    fmt = _number(data[0], "format")
    size = 32 if fmt == 4 else 16
    block_hex, ksn = data[1 : 1 + size], data[1 + size :]
    try:
        block = bytes.fromhex(block_hex)
    except ValueError:
        raise PinPadCodecError("PIN block is not hexadecimal") from None
    if len(block) * 2 != size or len(ksn) not in (0, 20, 24):
        raise PinPadCodecError("PIN block or KSN has the wrong length")
    if ksn and not all(c in "0123456789ABCDEF" for c in ksn):
        raise PinPadCodecError("KSN is not upper-case hexadecimal")
    return PinBlockData(fmt, block, ksn or None)


def decode_key_check_value(data: str) -> str:
    if len(data) != 6 or not all(c in "0123456789ABCDEF" for c in data):
        raise PinPadCodecError(f"key check value {data!r} is not 6 hex digits")
    return data


# ----- key events --------------------------------------------------------------------------------


EVENT_KINDS = ("digit", "enter", "cancel", "clear", "backspace", "function", "timeout", "tamper")
_EVENT_CODES = {
    "digit": "D",
    "enter": "N",
    "cancel": "C",
    "clear": "L",
    "backspace": "B",
    "function": "F",
    "timeout": "T",
    "tamper": "X",
}
_EVENT_KINDS = {code: kind for kind, code in _EVENT_CODES.items()}
FUNCTION_KEYS = tuple(f"F{n}" for n in range(1, 9))


@dataclass(frozen=True)
class KeyEvent:
    """An unsolicited event: kind, and value ("0".."9" or "*" for digits, "F1".."F8")."""

    kind: str
    value: str = ""

    def __post_init__(self) -> None:
        if self.kind not in _EVENT_CODES:
            raise PinPadCodecError(f"unknown event kind {self.kind!r}")
        if self.kind == "digit" and not (len(self.value) == 1 and self.value in "0123456789*"):
            raise PinPadCodecError(f"digit event value {self.value!r} is not a digit or '*'")
        if self.kind == "function" and self.value not in FUNCTION_KEYS:
            raise PinPadCodecError(f"function key {self.value!r} is not F1..F8")
        if self.kind not in ("digit", "function") and self.value:
            raise PinPadCodecError(f"a {self.kind} event has no value")


def is_event(text: str) -> bool:
    return text.startswith(EVENT_PREFIX)


def encode_event(event: KeyEvent) -> str:
    value = event.value[1:] if event.kind == "function" else event.value
    return f"{EVENT_PREFIX}{_EVENT_CODES[event.kind]}{value}"


def decode_event(text: str) -> KeyEvent:
    if not is_event(text) or len(text) < 3 or text[2] not in _EVENT_KINDS:
        raise PinPadCodecError(f"{text!r} is not an event")
    kind, value = _EVENT_KINDS[text[2]], text[3:]
    return KeyEvent(kind, f"F{value}" if kind == "function" else value)
