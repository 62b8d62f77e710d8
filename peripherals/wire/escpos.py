"""ESC/POS as pure bytes: a streaming command parser, and the real-time status bytes both ways.

The emulated receipt printer parses with it; the printer driver builds queries and decodes answers.
"""

from __future__ import annotations

import codecs
from collections.abc import Generator
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from peripherals.wire.framing import FrameEvent

DLE = 0x10
EOT = 0x04
ENQ = 0x05
DC4 = 0x14
ESC = 0x1B
FS = 0x1C
GS = 0x1D
LF = 0x0A
HT = 0x09

#: The fixed bits every DLE EOT status byte carries (bits 1 and 4 set, bits 0 and 7 clear).
STATUS_BASE = 0x12

# DLE EOT 1, printer status
PRINTER_OFFLINE = 0x08
# DLE EOT 2, offline cause
OFFLINE_COVER_OPEN = 0x04
OFFLINE_FEED_BUTTON = 0x08
OFFLINE_PAPER_END_STOP = 0x20
OFFLINE_ERROR = 0x40
# DLE EOT 3, error cause
ERROR_RECOVERABLE = 0x04
ERROR_AUTOCUTTER = 0x08
ERROR_UNRECOVERABLE = 0x20
ERROR_AUTO_RECOVERABLE = 0x40
# DLE EOT 4, roll paper sensor
PAPER_NEAR_END_BITS = 0x0C
PAPER_END_BITS = 0x60
# GS r 1, paper sensor (transmitted in turn, not in real time)
GS_R_NEAR_END_BITS = 0x03
GS_R_END_BITS = 0x0C

#: Epson code table numbers (ESC t n) that Python can decode; others fall back to PC437.
CODE_PAGES: dict[int, str] = {
    0: "cp437",
    2: "cp850",
    3: "cp860",
    4: "cp863",
    5: "cp865",
    13: "cp857",
    14: "cp737",
    15: "iso8859_7",
    16: "cp1252",
    17: "cp866",
    18: "cp852",
    19: "cp858",
    32: "cp720",
    33: "cp775",
    34: "cp855",
    35: "cp861",
    36: "cp862",
    37: "cp864",
    38: "cp869",
    39: "iso8859_2",
    40: "iso8859_15",
    44: "cp1125",
    45: "cp1250",
    46: "cp1251",
    47: "cp1253",
    48: "cp1254",
    49: "cp1255",
    50: "cp1256",
    51: "cp1257",
    52: "cp1258",
}

#: Largest image or 2D-code payload kept for rendering; longer ones are skipped by their length.
MAX_KEPT_DATA = 256 * 1024
#: Longest GS k barcode (NUL-terminated form) before the parser gives up on the terminator.
MAX_BARCODE_DATA = 255
#: ESC D takes at most 32 tab stops and a NUL.
MAX_TAB_STOPS = 32


class Align(IntEnum):
    LEFT = 0
    CENTER = 1
    RIGHT = 2


class StatusKind(IntEnum):
    """The n of DLE EOT n."""

    PRINTER = 1
    OFFLINE_CAUSE = 2
    ERROR_CAUSE = 3
    PAPER = 4


class PaperLevel(StrEnum):
    ADEQUATE = "adequate"
    NEAR_END = "near_end"
    OUT = "out"


# ----- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class LineFeed:
    """LF: print the line buffer and feed one line."""


@dataclass(frozen=True)
class Feed:
    """ESC d n / ESC J n: print the line buffer and feed `lines` lines (0: print only)."""

    lines: int


@dataclass(frozen=True)
class Tab:
    """HT: move to the next tab stop."""


@dataclass(frozen=True)
class Initialise:
    """ESC @: clear the line buffer and reset every mode."""


@dataclass(frozen=True)
class SetBold:
    on: bool


@dataclass(frozen=True)
class SetUnderline:
    dots: int


@dataclass(frozen=True)
class SetSize:
    """GS ! n: width and height multipliers, 1..8."""

    width: int
    height: int


@dataclass(frozen=True)
class SetPrintMode:
    """ESC ! n: bold, double height, double width and underline in one byte."""

    bold: bool
    double_height: bool
    double_width: bool
    underline: bool


@dataclass(frozen=True)
class SetAlign:
    align: Align


@dataclass(frozen=True)
class SetCodePage:
    table: int


@dataclass(frozen=True)
class Cut:
    partial: bool
    feed_lines: int = 0


@dataclass(frozen=True)
class SetBarcodeHeight:
    dots: int


@dataclass(frozen=True)
class SetBarcodeHri:
    """GS H n: 0 none, 1 above, 2 below, 3 both."""

    position: int


@dataclass(frozen=True)
class Barcode:
    """GS k: `system` is m as sent (0..6 NUL-terminated form, 65..79 counted form)."""

    system: int
    data: bytes


@dataclass(frozen=True)
class SymbolSetting:
    """GS ( k settings: `symbol` is cn (49 = QR), `function` fn, `value` its parameter bytes."""

    symbol: int
    function: int
    value: bytes


@dataclass(frozen=True)
class SymbolStore:
    """GS ( k fn 80: store data in the symbol buffer (None if too long to keep)."""

    symbol: int
    data: bytes | None


@dataclass(frozen=True)
class SymbolPrint:
    """GS ( k fn 81: print the symbol from its buffer."""

    symbol: int


@dataclass(frozen=True)
class RasterImage:
    """GS v 0 or a printed GS ( L graphic: 1 bit per dot, rows of `width_bytes`, MSB leftmost.

    `data` is None when the image was larger than MAX_KEPT_DATA (it was skipped by its length).
    """

    width_bytes: int
    height: int
    data: bytes | None
    scale_x: int = 1
    scale_y: int = 1


@dataclass(frozen=True)
class GraphicsStore:
    """GS ( L / GS 8 L fn 112: a raster graphic stored for a later GraphicsPrint."""

    image: RasterImage


@dataclass(frozen=True)
class GraphicsPrint:
    """GS ( L fn 50: print the stored graphic."""


@dataclass(frozen=True)
class ColumnImage:
    """ESC *: one band of `dots` (8 or 24) rows, `width` columns; bytes per column = dots // 8."""

    width: int
    dots: int
    data: bytes


@dataclass(frozen=True)
class RealTimeStatus:
    """DLE EOT n, seen anywhere in the stream (even inside another command's data)."""

    kind: int


@dataclass(frozen=True)
class TransmitStatus:
    """GS r n: a status byte transmitted in turn with the data (1 paper, 2 drawer)."""

    kind: int


@dataclass(frozen=True)
class RealTimeRequest:
    """DLE ENQ n: 1 recover and restart, 2 recover and clear buffers."""

    request: int


@dataclass(frozen=True)
class Unknown:
    """A command this parser does not know: its first bytes, skipped."""

    command: bytes


Event = (
    Text
    | LineFeed
    | Feed
    | Tab
    | Initialise
    | SetBold
    | SetUnderline
    | SetSize
    | SetPrintMode
    | SetAlign
    | SetCodePage
    | Cut
    | SetBarcodeHeight
    | SetBarcodeHri
    | Barcode
    | SymbolSetting
    | SymbolStore
    | SymbolPrint
    | RasterImage
    | GraphicsStore
    | GraphicsPrint
    | ColumnImage
    | RealTimeStatus
    | TransmitStatus
    | RealTimeRequest
    | Unknown
)

# ----- parser ---------------------------------------------------------------------------------

# ESC commands with a fixed number of parameter bytes and no effect on the emulated receipt.
_ESC_FIXED: dict[int, int] = {
    ord(" "): 1,
    ord("$"): 2,
    ord("%"): 1,
    ord("+"): 1,
    ord("2"): 0,
    ord("3"): 1,
    ord("<"): 0,
    ord("="): 1,
    ord("?"): 1,
    ord("A"): 1,
    ord("B"): 2,
    ord("G"): 1,
    ord("L"): 0,
    ord("M"): 1,
    ord("R"): 1,
    ord("S"): 0,
    ord("T"): 1,
    ord("U"): 1,
    ord("V"): 1,
    ord("W"): 8,
    ord("\\"): 2,
    ord("c"): 2,
    ord("e"): 1,
    ord("f"): 2,
    ord("g"): 0,
    ord("p"): 3,
    ord("r"): 1,
    ord("u"): 1,
    ord("v"): 0,
    ord("{"): 1,
}
# GS commands with a fixed number of parameter bytes and no effect on the emulated receipt.
_GS_FIXED: dict[int, int] = {
    ord("$"): 2,
    ord("/"): 1,
    ord(":"): 0,
    ord("B"): 1,
    ord("E"): 1,
    ord("I"): 1,
    ord("L"): 2,
    ord("P"): 2,
    ord("T"): 1,
    ord("W"): 2,
    ord("\\"): 2,
    ord("^"): 3,
    ord("a"): 1,
    ord("b"): 1,
    ord("c"): 0,
    ord("f"): 1,
    ord("j"): 1,
    ord("w"): 1,
    ord("|"): 1,
}
# FS commands with a fixed number of parameter bytes (kanji modes, NV images): all skipped.
_FS_FIXED: dict[int, int] = {
    ord("!"): 1,
    ord("&"): 0,
    ord("-"): 1,
    ord("."): 0,
    ord("C"): 1,
    ord("S"): 2,
    ord("W"): 1,
    ord("p"): 2,
}
# DLE DC4 fn: parameter bytes after fn.
_DC4_PARAMS: dict[int, int] = {1: 2, 2: 2, 3: 2, 7: 1, 8: 7}
# Cut forms: GS V m (m in the first set), GS V m n (m in the second).
_CUT_ONE = {0: False, 1: True, 48: False, 49: True}
_CUT_FEED = {65: False, 66: True, 97: False, 98: True, 103: False, 104: True}

_Machine = Generator[int, bytes, None]


class EscPosParser:
    """Turns any split of an ESC/POS byte stream into events, never raising on bad input.

    Each byte passes two layers, as in an Epson printer: a real-time layer that answers DLE EOT n
    wherever it appears (even inside image data), and the command layer, which sees every byte
    too (so a status query inside another command's parameters is also taken as that data).
    Memory is bounded: headers are a few bytes, and long payloads are skipped past MAX_KEPT_DATA.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget a command half received, and go back to code table 0."""
        self.code_page = 0
        self._decoder = codecs.getincrementaldecoder("cp437")("replace")
        self._events: list[Event] = []
        self._held = 0  # bytes kept by the command in progress (for the memory bound)
        self._rt_prev = (-1, -1)  # the last two bytes seen, for DLE EOT n across splits
        self._machine = self._commands()
        self._want = next(self._machine)

    @property
    def buffered(self) -> int:
        """Bytes held by the command in progress (bounded by MAX_KEPT_DATA plus a header)."""
        return self._held

    @property
    def idle(self) -> bool:
        """True between commands (no command is half received)."""
        return self._want == 0

    def expire(self, now: float) -> list[FrameEvent[Event]]:
        """Nothing: ESC/POS has no inter-byte timeout, a command waits for its bytes."""
        return []

    def feed(self, data: bytes, now: float) -> list[FrameEvent[Event]]:
        """Parse the next bytes; the commands they complete, in stream order (never an error:
        what the parser does not know is an Unknown command, skipped)."""
        events = self._events
        size = len(data)
        pos = 0
        while pos < size:
            if self._want == 0 and data[pos] >= 0x20:
                end = pos
                while end < size and data[end] >= 0x20:
                    end += 1
                text = self._decoder.decode(data[pos:end])
                if text:
                    events.append(Text(text))
                self._scan_real_time(data[pos:end])
                pos = end
                continue
            take = max(1, self._want)
            chunk = data[pos : pos + take]
            pos += len(chunk)
            self._scan_real_time(chunk)
            try:
                self._want = self._machine.send(chunk)
            except Exception:  # a parser bug must not stop the printer: drop the command
                events.append(Unknown(chunk[:2]))
                self._machine = self._commands()
                self._want = next(self._machine)
        self._events = []
        return [FrameEvent(frame=event) for event in events]

    def _scan_real_time(self, chunk: bytes) -> None:
        """DLE EOT n (n = 1..4) is answered wherever it appears, whatever the command layer does."""
        first, second = self._rt_prev
        for byte in chunk if DLE in chunk or first == DLE or second == DLE else ():
            if first == DLE and second == EOT and 1 <= byte <= 4:
                self._events.append(RealTimeStatus(byte))
            first, second = second, byte
        if len(chunk) >= 2:
            self._rt_prev = (chunk[-2], chunk[-1])
        elif chunk:
            self._rt_prev = (self._rt_prev[1], chunk[0])

    def _set_code_page(self, table: int) -> None:
        self.code_page = table
        self._decoder = codecs.getincrementaldecoder(CODE_PAGES.get(table, "cp437"))("replace")

    # The command layer: a generator that yields how many bytes it wants next (0 = between
    # commands, where the feed loop handles printable text itself) and receives them.

    def _read(self, count: int) -> Generator[int, bytes, bytes]:
        """Exactly `count` bytes (count is small: a header)."""
        parts: list[bytes] = []
        got = 0
        while got < count:
            chunk = yield count - got
            parts.append(chunk)
            got += len(chunk)
            self._held += len(chunk)
        return b"".join(parts)

    def _payload(self, count: int) -> Generator[int, bytes, bytes | None]:
        """`count` bytes of data, kept if at most MAX_KEPT_DATA, else skipped (None)."""
        keep = count <= MAX_KEPT_DATA
        parts: list[bytes] = []
        got = 0
        while got < count:
            chunk = yield min(count - got, 65536)
            got += len(chunk)
            if keep:
                parts.append(chunk)
                self._held += len(chunk)
        return b"".join(parts) if keep else None

    def _commands(self) -> _Machine:
        emit = self._events_append
        while True:
            self._held = 0
            byte = (yield 0)[0]
            if byte == LF:
                emit(LineFeed())
            elif byte == HT:
                emit(Tab())
            elif byte == ESC:
                yield from self._esc()
            elif byte == GS:
                yield from self._gs()
            elif byte == DLE:
                yield from self._dle()
            elif byte == FS:
                yield from self._fs()
            # Other control bytes (CR, FF, CAN, NUL...) have no effect in standard mode.

    def _events_append(self, event: Event) -> None:
        self._events.append(event)

    def _esc(self) -> _Machine:
        emit = self._events_append
        cmd = (yield from self._read(1))[0]
        if cmd == ord("@"):
            self._set_code_page(0)
            emit(Initialise())
        elif cmd in (ord("E"), ord("-"), ord("a"), ord("t"), ord("d"), ord("J"), ord("!")):
            n = (yield from self._read(1))[0]
            if cmd == ord("E"):
                emit(SetBold(bool(n & 1)))
            elif cmd == ord("-"):
                emit(SetUnderline(n & 0x03 if n < 0x30 else (n - 0x30) & 0x03))
            elif cmd == ord("a"):
                emit(SetAlign(Align(n % 0x30 if n % 0x30 <= 2 else 0)))
            elif cmd == ord("t"):
                self._set_code_page(n)
                emit(SetCodePage(n))
            elif cmd == ord("d"):
                emit(Feed(n))
            elif cmd == ord("J"):
                # n motion units (1/180 inch by default); a text line is 30 of them.
                emit(Feed((n + 29) // 30 if n else 0))
            else:
                emit(SetPrintMode(bool(n & 0x08), bool(n & 0x10), bool(n & 0x20), bool(n & 0x80)))
        elif cmd in (ord("i"), ord("m")):
            emit(Cut(partial=True))
        elif cmd == ord("*"):
            mode, low, high = yield from self._read(3)
            width = low | high << 8
            dots = 24 if mode in (32, 33) else 8
            data = yield from self._payload(width * dots // 8)
            if data is not None:
                emit(ColumnImage(width, dots, data))
        elif cmd == ord("("):
            _letter, low, high = yield from self._read(3)
            yield from self._payload(low | high << 8)
        elif cmd == ord("D"):
            for _ in range(MAX_TAB_STOPS + 1):
                if (yield from self._read(1))[0] == 0:
                    break
        elif cmd == ord("&"):
            yield from self._user_characters()
        elif cmd in _ESC_FIXED:
            yield from self._read(_ESC_FIXED[cmd])
        else:
            emit(Unknown(bytes((ESC, cmd))))

    def _user_characters(self) -> _Machine:
        """ESC & y c1 c2 [x d1..d(y*x)]...: define user characters (skipped by their lengths)."""
        rows, first, last = yield from self._read(3)
        if not (32 <= first <= last <= 126) or rows > 3:
            self._events_append(Unknown(bytes((ESC, ord("&")))))
            return
        for _ in range(last - first + 1):
            columns = (yield from self._read(1))[0]
            yield from self._payload(rows * columns)

    def _gs(self) -> _Machine:
        emit = self._events_append
        cmd = (yield from self._read(1))[0]
        if cmd == ord("!"):
            n = (yield from self._read(1))[0]
            emit(SetSize(((n >> 4) & 0x07) + 1, (n & 0x07) + 1))
        elif cmd == ord("V"):
            m = (yield from self._read(1))[0]
            if m in _CUT_ONE:
                emit(Cut(partial=_CUT_ONE[m]))
            elif m in _CUT_FEED:
                n = (yield from self._read(1))[0]
                emit(Cut(partial=_CUT_FEED[m], feed_lines=(n + 29) // 30 if n else 0))
            else:
                emit(Unknown(bytes((GS, cmd, m))))
        elif cmd == ord("k"):
            yield from self._barcode()
        elif cmd == ord("h"):
            emit(SetBarcodeHeight((yield from self._read(1))[0]))
        elif cmd == ord("H"):
            emit(SetBarcodeHri((yield from self._read(1))[0] % 0x30 & 0x03))
        elif cmd == ord("r"):
            emit(TransmitStatus((yield from self._read(1))[0] % 0x30))
        elif cmd == ord("v"):
            zero, mode, xl, xh, yl, yh = yield from self._read(6)
            if zero != ord("0"):
                emit(Unknown(bytes((GS, cmd, zero))))
                return
            width, height = xl | xh << 8, yl | yh << 8
            data = yield from self._payload(width * height)
            mode %= 0x30
            emit(RasterImage(width, height, data, 1 + (mode & 1), 1 + (mode >> 1 & 1)))
        elif cmd == ord("("):
            letter, low, high = yield from self._read(3)
            yield from self._gs_paren(letter, low | high << 8)
        elif cmd == ord("8"):
            letter, *size = yield from self._read(5)
            length = size[0] | size[1] << 8 | size[2] << 16 | size[3] << 24
            if letter == ord("L"):
                yield from self._graphics(length)
            else:
                yield from self._payload(length)
        elif cmd == ord("*"):
            x, y = yield from self._read(2)
            yield from self._payload(x * y * 8)
        elif cmd in (ord("g"), ord("C")):
            yield from self._read(3)
        elif cmd in _GS_FIXED:
            yield from self._read(_GS_FIXED[cmd])
        else:
            emit(Unknown(bytes((GS, cmd))))

    def _barcode(self) -> _Machine:
        system = (yield from self._read(1))[0]
        if system <= 6:
            data = bytearray()
            while len(data) < MAX_BARCODE_DATA:
                byte = (yield from self._read(1))[0]
                if byte == 0:
                    break
                data.append(byte)
            self._events_append(Barcode(system, bytes(data)))
        elif 65 <= system <= 79:
            length = (yield from self._read(1))[0]
            self._events_append(Barcode(system, (yield from self._read(length))))
        else:
            self._events_append(Unknown(bytes((GS, ord("k"), system))))

    def _gs_paren(self, letter: int, length: int) -> _Machine:
        """GS ( <letter> pL pH ...: every form carries its own length, so none can desync us."""
        if letter == ord("k") and length >= 2:
            symbol, function = yield from self._read(2)
            if function == 80 and length >= 3:
                yield from self._read(1)  # m = 48
                data = yield from self._payload(length - 3)
                self._events_append(SymbolStore(symbol, data))
            elif function == 81:
                yield from self._payload(length - 2)
                self._events_append(SymbolPrint(symbol))
            else:
                value = yield from self._payload(length - 2)
                self._events_append(SymbolSetting(symbol, function, value or b""))
        elif letter == ord("L"):
            yield from self._graphics(length)
        else:
            yield from self._payload(length)

    def _graphics(self, length: int) -> _Machine:
        """GS ( L / GS 8 L: store raster graphics (fn 112) and print them (fn 50)."""
        if length < 2:
            yield from self._payload(length)
            return
        _m, function = yield from self._read(2)
        if function == 112 and length >= 10:
            _tone, scale_x, scale_y, _colour, xl, xh, yl, yh = yield from self._read(8)
            width_bytes, height = ((xl | xh << 8) + 7) // 8, yl | yh << 8
            data = yield from self._payload(length - 10)
            if data is not None and len(data) < width_bytes * height:
                data = None  # fewer dots than announced: not drawable
            kept = data[: width_bytes * height] if data is not None else None
            self._events_append(
                GraphicsStore(
                    RasterImage(width_bytes, height, kept, scale_x & 3 or 1, scale_y & 3 or 1)
                )
            )
        elif function in (50, 2):
            yield from self._payload(length - 2)
            self._events_append(GraphicsPrint())
        else:
            yield from self._payload(length - 2)

    def _dle(self) -> _Machine:
        cmd = (yield from self._read(1))[0]
        if cmd == EOT:
            n = (yield from self._read(1))[0]
            if n in (7, 8):
                yield from self._read(1)
            # 1..4 were answered by the real-time layer already.
        elif cmd == ENQ:
            self._events_append(RealTimeRequest((yield from self._read(1))[0]))
        elif cmd == DC4:
            fn = (yield from self._read(1))[0]
            yield from self._read(_DC4_PARAMS.get(fn, 0))
        else:
            self._events_append(Unknown(bytes((DLE, cmd))))

    def _fs(self) -> _Machine:
        cmd = (yield from self._read(1))[0]
        if cmd == ord("("):
            _letter, low, high = yield from self._read(3)
            yield from self._payload(low | high << 8)
        elif cmd == ord("2"):
            yield from self._read(2 + 72)
        elif cmd in _FS_FIXED:
            yield from self._read(_FS_FIXED[cmd])
        else:
            self._events_append(Unknown(bytes((FS, cmd))))


# ----- status bytes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PrinterCondition:
    """What the printer's sensors report; the source of every status byte."""

    cover_open: bool = False
    paper: PaperLevel = PaperLevel.ADEQUATE
    cutter_error: bool = False

    @property
    def offline(self) -> bool:
        return self.cover_open or self.paper is PaperLevel.OUT or self.cutter_error


def status_byte(kind: int, condition: PrinterCondition) -> int | None:
    """The answer to DLE EOT `kind`; None for a kind this printer does not answer."""
    if kind == StatusKind.PRINTER:
        return STATUS_BASE | (PRINTER_OFFLINE if condition.offline else 0)
    if kind == StatusKind.OFFLINE_CAUSE:
        return (
            STATUS_BASE
            | (OFFLINE_COVER_OPEN if condition.cover_open else 0)
            | (OFFLINE_PAPER_END_STOP if condition.paper is PaperLevel.OUT else 0)
            | (OFFLINE_ERROR if condition.cutter_error else 0)
        )
    if kind == StatusKind.ERROR_CAUSE:
        return STATUS_BASE | (ERROR_AUTOCUTTER if condition.cutter_error else 0)
    if kind == StatusKind.PAPER:
        if condition.paper is PaperLevel.OUT:
            return STATUS_BASE | PAPER_END_BITS
        if condition.paper is PaperLevel.NEAR_END:
            return STATUS_BASE | PAPER_NEAR_END_BITS
        return STATUS_BASE
    return None


def gs_r_byte(kind: int, condition: PrinterCondition) -> int | None:
    """The answer to GS r `kind` (1 paper sensor, 2 drawer: always closed); None otherwise."""
    if kind == 1:
        if condition.paper is PaperLevel.OUT:
            return GS_R_NEAR_END_BITS | GS_R_END_BITS
        return GS_R_NEAR_END_BITS if condition.paper is PaperLevel.NEAR_END else 0
    if kind == 2:
        return 0
    return None


def real_time_query(kind: StatusKind | int) -> bytes:
    """DLE EOT n."""
    return bytes((DLE, EOT, int(kind)))


def is_status_byte(value: int) -> bool:
    """Whether a byte has the fixed bits of a DLE EOT answer (bits 1, 4 set; 0, 7 clear)."""
    return value & 0x93 == STATUS_BASE


def decode_paper(value: int) -> PaperLevel:
    """Paper level from a DLE EOT 4 answer."""
    if value & PAPER_END_BITS:
        return PaperLevel.OUT
    if value & PAPER_NEAR_END_BITS:
        return PaperLevel.NEAR_END
    return PaperLevel.ADEQUATE
