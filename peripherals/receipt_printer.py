"""The emulated ESC/POS receipt printer: a finite paper roll, cut receipts, real-time status.

Receipts (ending at a cut, or where printing stopped) are kept as text and PNG; faults stop it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from peripherals.emulator import Clock, Emulator
from peripherals.fault_catalogue import fault_names
from peripherals.faults import FaultMode
from peripherals.receipt_render import (
    Element,
    PrintedBarcode,
    PrintedImage,
    PrintedLine,
    PrintedSymbol,
    paper_lines,
    render_png,
    render_text,
)
from peripherals.wire import escpos
from peripherals.wire.escpos import Align, PaperLevel, PrinterCondition

log = logging.getLogger(__name__)


class ReceiptPrinterConfigError(ValueError):
    """A receipt printer config section that cannot be used."""


# Drawing a receipt takes longer than printing it on the wire; one thread draws every printer's
# receipts in the order they were cut, so a status query after the cut is answered at once.
_DRAWER = ThreadPoolExecutor(1, thread_name_prefix="receipt-drawer")
DRAW_TIMEOUT = 30.0
# When each receipt's PNG is drawn: at the cut (in the background), or when it is first asked
# for, where no one may ever look at it (a scenario's or a fleet's ATM).
IMAGES_ON_CUT = "on_cut"
IMAGES_ON_REQUEST = "on_request"
IMAGE_MODES = (IMAGES_ON_CUT, IMAGES_ON_REQUEST)


class _DrawnOnRequest(Future[bytes | Path]):
    """A receipt's image, drawn in the thread of whoever asks for it first."""

    def __init__(self, draw: Callable[[], bytes | Path]) -> None:
        super().__init__()
        self._draw: Callable[[], bytes | Path] | None = draw
        self._drawing = threading.Lock()

    def result(self, timeout: float | None = None) -> bytes | Path:
        with self._drawing:
            draw, self._draw = self._draw, None
            if draw is not None:
                try:
                    self.set_result(draw())
                except Exception as err:
                    self.set_exception(err)
        return super().result(timeout)


@dataclass(frozen=True)
class Receipt:
    """One piece of paper out of the printer: `cut` is False when printing stopped before a cut."""

    text: str
    cut: bool
    elements: tuple[Element, ...]
    drawn: Future[bytes | Path] = field(repr=False, compare=False)

    @property
    def png(self) -> bytes | Path:
        """The image's bytes, or its path when the printer has a state directory (once drawn)."""
        return self.drawn.result(timeout=DRAW_TIMEOUT)

    def png_bytes(self) -> bytes:
        png = self.png
        return png.read_bytes() if isinstance(png, Path) else png


@dataclass
class _Style:
    align: Align = Align.LEFT
    bold: bool = False
    underline: bool = False
    width: int = 1
    height: int = 1
    barcode_height: int = 162
    barcode_hri: int = 0
    qr_module: int = 3


@dataclass
class _Job:
    """The paper printed since the last cut."""

    elements: list[Element] = field(default_factory=list)
    text: str = ""
    text_width: int = 1  # width multiplier of the text in the line buffer
    band: PrintedImage | None = None  # ESC * bands gathered into one image


RECEIPT_PNG = re.compile(r"receipt-(\d+)\.png")


class ReceiptPrinterEmulator(Emulator):
    """An 80 mm thermal receipt printer speaking ESC/POS, with a paper roll of finite length."""

    NAME = "receipt_printer"
    # Faults that are device states (they hold while armed); "once" and "on_command" ones latch.
    FAULTS = fault_names(NAME)

    MAX_RECEIPTS: ClassVar[int] = 500
    MAX_ELEMENTS: ClassVar[int] = 5000  # one receipt longer than this is torn off uncut

    def __init__(
        self,
        clock: Clock = time.monotonic,
        *,
        paper_length_lines: int = 2000,
        near_end_lines: int = 100,
        columns: int = 42,
        images: str = IMAGES_ON_CUT,
        state_dir: Path | None = None,
    ) -> None:
        super().__init__(clock)
        if paper_length_lines < 1 or not 0 <= near_end_lines < paper_length_lines:
            raise ReceiptPrinterConfigError(
                f"receipt printer: need paper_length_lines >= 1 and 0 <= near_end_lines < "
                f"paper_length_lines, got {paper_length_lines} and {near_end_lines}"
            )
        if not 16 <= columns <= 96:
            raise ReceiptPrinterConfigError(f"receipt printer: columns {columns} not in 16..96")
        if images not in IMAGE_MODES:
            raise ReceiptPrinterConfigError(
                f"receipt printer: images {images!r}; use {' or '.join(IMAGE_MODES)}"
            )
        self.paper_length_lines = paper_length_lines
        self.near_end_lines = near_end_lines
        self.columns = columns
        self.images = images
        self.state_dir = state_dir
        self.remaining_lines = paper_length_lines
        self.unknown_commands = 0
        self.dropped_commands = 0
        self._parser = escpos.EscPosParser()
        self._style = _Style()
        self._job = _Job()
        self._symbols: dict[int, bytes] = {}
        self._graphic: escpos.RasterImage | None = None
        self._latched: set[str] = set()
        self._receipts: deque[Receipt] = deque(maxlen=self.MAX_RECEIPTS)
        self._png_number: int | None = None  # the last receipt-NNNNN.png taken; None: not read

    @classmethod
    def from_config(
        cls,
        section: Mapping[str, Any],
        *,
        clock: Clock = time.monotonic,
        state_dir: Path | None = None,
    ) -> ReceiptPrinterEmulator:
        """Build from a config section like {"paper_length_lines": 2000, "near_end_lines": 100}."""
        known = {"paper_length_lines", "near_end_lines", "columns", "images"}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ReceiptPrinterConfigError(
                f"receipt printer: unknown keys {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        values: dict[str, int] = {}
        for key in known & set(section) - {"images"}:
            value = section[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ReceiptPrinterConfigError(
                    f"receipt printer: {key} must be an integer, got {value!r}"
                )
            values[key] = value
        images = section.get("images", IMAGES_ON_CUT)
        if not isinstance(images, str):
            raise ReceiptPrinterConfigError(f"receipt printer: images must be text, got {images!r}")
        return cls(clock, state_dir=state_dir, images=images, **values)

    # ----- what the operator and tests see -------------------------------------------------

    @property
    def receipts(self) -> list[Receipt]:
        """The receipts kept, each drawn when images are drawn at the cut (waits for those still
        being drawn)."""
        with self.lock:
            receipts = list(self._receipts)
        if self.images == IMAGES_ON_CUT:
            wait_for_futures([receipt.drawn for receipt in receipts], timeout=DRAW_TIMEOUT)
        return receipts

    def pending_text(self) -> str:
        """What is printed since the last cut (not yet a receipt)."""
        with self.lock:
            return render_text(self._job.elements, self.columns)

    def condition(self) -> PrinterCondition:
        with self.lock:
            if self._fault_on("paper_out") or self.remaining_lines <= 0:
                paper = PaperLevel.OUT
            elif self._fault_on("paper_near_end") or self.remaining_lines <= self.near_end_lines:
                paper = PaperLevel.NEAR_END
            else:
                paper = PaperLevel.ADEQUATE
            return PrinterCondition(
                cover_open=self._fault_on("cover_open"),
                paper=paper,
                cutter_error=self._fault_on("jam"),
            )

    def load_paper(self) -> None:
        """A fresh roll."""
        with self.lock:
            self.remaining_lines = self.paper_length_lines

    def clear_fault(self, name: str | None = None) -> None:
        """Clear an armed fault and its latched state (the operator fixed the printer)."""
        with self.lock:
            self.faults.clear(name)
            if name is None:
                self._latched.clear()
            else:
                self._latched.discard(name)

    def status(self) -> dict[str, Any]:
        with self.lock:
            condition = self.condition()
            return {
                **super().status(),
                "online": not condition.offline,
                "paper": condition.paper.value,
                "cover_open": condition.cover_open,
                "jammed": condition.cutter_error,
                "responsive": not self._fault_on("unresponsive"),
                "remaining_lines": self.remaining_lines,
                "receipts": len(self._receipts),
                "unknown_commands": self.unknown_commands,
                "dropped_commands": self.dropped_commands,
            }

    # ----- faults ----------------------------------------------------------------------------

    def _fault_on(self, name: str) -> bool:
        if name in self._latched:
            return True
        return any(f.name == name and f.mode is FaultMode.PERSISTENT for f in self.faults.active())

    def _count_command(self) -> None:
        self.faults.command_seen()
        for fault in self.faults.active():
            if fault.mode is not FaultMode.PERSISTENT and self.faults.take(fault.name):
                self._latched.add(fault.name)

    # ----- the byte stream -------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        if self._fault_on("unresponsive"):
            return  # hung firmware: nothing is parsed, printed or answered
        for event in self._parser.feed(data, self.clock()):
            command = event.frame
            assert command is not None  # ESC/POS has no framing errors: unknown is a command
            if not isinstance(command, escpos.Text):
                self._count_command()
                if self._fault_on("unresponsive"):
                    return
            self._handle(command)

    def _handle(self, event: escpos.Event) -> None:
        style = self._style
        match event:
            case escpos.RealTimeStatus(kind=kind):
                answer = escpos.status_byte(kind, self.condition())
                if answer is not None:
                    self.send(bytes((answer,)))
            case escpos.TransmitStatus(kind=kind):
                answer = escpos.gs_r_byte(kind, self.condition())
                if answer is not None:
                    self.send(bytes((answer,)))
            case escpos.Text(text=text):
                self._add_text(text)
            case escpos.Tab():
                self._add_text(" " * (8 - len(self._job.text) % 8))
            case escpos.LineFeed():
                self._end_line(force=True)
            case escpos.Feed(lines=lines):
                printed = self._end_line(force=False)
                for _ in range(lines - 1 if printed else lines):
                    self._print(PrintedLine("", style.align))
            case escpos.Cut(feed_lines=feed_lines):
                self._end_line(force=False)
                for _ in range(feed_lines):
                    self._print(PrintedLine("", style.align))
                self._cut()
            case escpos.Initialise():
                self._style = _Style()
                self._job.text = ""
                self._job.band = None
            case escpos.SetBold(on=on):
                style.bold = on
            case escpos.SetUnderline(dots=dots):
                style.underline = dots > 0
            case escpos.SetSize(width=width, height=height):
                style.width, style.height = width, height
            case escpos.SetPrintMode():
                style.bold, style.underline = event.bold, event.underline
                style.width = 2 if event.double_width else 1
                style.height = 2 if event.double_height else 1
            case escpos.SetAlign(align=align):
                style.align = align
            case escpos.SetBarcodeHeight(dots=dots):
                style.barcode_height = max(1, dots)
            case escpos.SetBarcodeHri(position=position):
                style.barcode_hri = position
            case escpos.Barcode(system=system, data=data):
                self._end_line(force=False)
                self._print(
                    PrintedBarcode(
                        system, data, style.barcode_height, style.barcode_hri, style.align
                    )
                )
            case escpos.SymbolSetting(symbol=49, function=67, value=value) if value:
                style.qr_module = max(1, min(16, value[0]))
            case escpos.SymbolStore(symbol=symbol, data=data):
                self._symbols[symbol] = data or b""
            case escpos.SymbolPrint(symbol=symbol):
                self._end_line(force=False)
                data = self._symbols.get(symbol, b"")
                self._print(PrintedSymbol(symbol, data, style.qr_module, style.align))
            case escpos.RasterImage():
                self._end_line(force=False)
                self._print(self._image(event))
            case escpos.GraphicsStore(image=image):
                self._graphic = image
            case escpos.GraphicsPrint():
                if self._graphic is not None:
                    self._end_line(force=False)
                    self._print(self._image(self._graphic))
            case escpos.ColumnImage():
                self._add_band(event)
            case escpos.Unknown():
                self.unknown_commands += 1
            case _:
                pass  # settings without effect on this paper (code page is the parser's)

    # ----- printing --------------------------------------------------------------------------

    def _image(self, image: escpos.RasterImage) -> PrintedImage:
        return PrintedImage(
            image.width_bytes,
            image.height,
            image.data,
            self._style.align,
            image.scale_x,
            image.scale_y,
        )

    def _can_print(self) -> bool:
        condition = self.condition()
        return not condition.offline

    def _add_text(self, text: str) -> None:
        job = self._job
        if not job.text:
            job.text_width = self._style.width
        for char in text:
            if (len(job.text) + 1) * job.text_width > self.columns:
                self._end_line(force=True)  # the printer wraps a full line by itself
                job.text_width = self._style.width
            job.text += char

    def _end_line(self, *, force: bool) -> bool:
        """Print the line buffer; an empty buffer prints a blank line only if `force`."""
        job = self._job
        if job.band is not None:
            band, job.band = job.band, None
            self._print(band)
            if not job.text:
                return True  # the LF after an ESC * band ends the band, it adds no blank line
        if not job.text and not force:
            return False
        style = self._style
        line = PrintedLine(
            job.text, style.align, style.bold, style.underline, job.text_width, style.height
        )
        job.text = ""
        self._print(line)
        return True

    def _add_band(self, band: escpos.ColumnImage) -> None:
        """ESC * sends one horizontal band of column data; rows become part of one raster image."""
        per_column = band.dots // 8
        width_bytes = (band.width + 7) // 8
        rows = bytearray(width_bytes * band.dots)
        for x in range(min(band.width, len(band.data) // per_column)):
            for y in range(band.dots):
                if band.data[x * per_column + y // 8] >> (7 - y % 8) & 1:
                    rows[y * width_bytes + x // 8] |= 0x80 >> (x % 8)
        job = self._job
        previous = job.band
        if previous is not None and previous.width_bytes == width_bytes and previous.data:
            merged = previous.data + bytes(rows)
            if len(merged) <= escpos.MAX_KEPT_DATA:
                job.band = replace(previous, height=previous.height + band.dots, data=merged)
                return
            self._print(previous)
        job.band = PrintedImage(width_bytes, band.dots, bytes(rows), self._style.align)

    def _print(self, element: Element) -> None:
        job = self._job
        if not self._can_print():
            self.dropped_commands += 1
            if job.elements:
                self._finish(cut=False)  # what made it onto paper before the stop
            return
        job.elements.append(element)
        self.remaining_lines = max(0, self.remaining_lines - paper_lines(element))
        if len(job.elements) >= self.MAX_ELEMENTS:
            self._finish(cut=False)

    def _cut(self) -> None:
        job = self._job
        if job.band is not None:
            self._end_line(force=False)
        if not self._can_print():
            self.dropped_commands += 1
            if job.elements:
                self._finish(cut=False)
            return
        if job.elements:
            self._finish(cut=True)

    def _finish(self, *, cut: bool) -> None:
        elements = tuple(self._job.elements)
        self._job.elements = []
        drawn: Future[bytes | Path]
        if self.images == IMAGES_ON_CUT:
            drawn = _DRAWER.submit(self._draw, elements, cut)
        else:
            drawn = _DrawnOnRequest(functools.partial(self._draw, elements, cut))
        self._receipts.append(Receipt(render_text(elements, self.columns), cut, elements, drawn))

    def _draw(self, elements: tuple[Element, ...], cut: bool) -> bytes | Path:
        try:
            png = render_png(elements, self.columns, cut=cut)
        except Exception:
            log.exception("%s: a receipt could not be drawn", self.NAME)
            raise
        return png if self.state_dir is None else self._write_png(png)

    def _write_png(self, png: bytes) -> bytes | Path:
        assert self.state_dir is not None
        path: Path | None = None
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            path = self._reserve_png_path()
            partial = path.with_suffix(".png.part")
            partial.write_bytes(png)
            os.replace(partial, path)
        except OSError:
            if path is not None:
                with contextlib.suppress(OSError):
                    path.with_suffix(".png.part").unlink()
                with contextlib.suppress(OSError):
                    path.unlink()
            return png  # a full disk must not lose the receipt: keep it in memory
        return path

    def _reserve_png_path(self) -> Path:
        """A new receipt-NNNNN.png, numbered on from the highest already in the folder, created
        empty so that no other writer takes it: an ATM restarted on the same folder never
        overwrites the receipts of its earlier runs."""
        assert self.state_dir is not None
        if self._png_number is None:
            found = (RECEIPT_PNG.fullmatch(name) for name in os.listdir(self.state_dir))
            self._png_number = max((int(m.group(1)) for m in found if m), default=0)
        while True:
            self._png_number += 1
            path = self.state_dir / f"receipt-{self._png_number:05d}.png"
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            except FileExistsError:
                continue
            return path
