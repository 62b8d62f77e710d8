"""Driver of the ESC/POS receipt printer: python-escpos builds the receipt, we ask for status.

Status uses our own DLE EOT n queries on the same port (four in one write, one byte each back,
with a deadline), so a printer that does not answer is "unknown", never "adequate".
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

import serial

from device.controller.device_status import PaperLevel, PrinterStatus
from device.controller.ports import DeviceFault, DeviceTimeout, LinkError
from device.drivers.base import open_port
from device.drivers.escpos_loader import escpos_class
from peripherals.wire import escpos as wire


class PrinterError(DeviceFault):
    """The printer cannot print: `code` is paper_out, cover_open, jam or offline."""


UNKNOWN = PrinterStatus(online=None, cover_open=None, paper=PaperLevel.UNKNOWN, jammed=None)
STATUS_QUESTIONS = (
    wire.StatusKind.PRINTER,
    wire.StatusKind.OFFLINE_CAUSE,
    wire.StatusKind.ERROR_CAUSE,
    wire.StatusKind.PAPER,
)


def _escpos_job() -> Any:
    """A python-escpos printer that gathers the bytes of a print job for one write (`job`), as
    a spooler hands a printer its job: the same bytes on the wire as a write per command, which
    cost a system call and a wake of the printer's side each."""

    class JobPrinter(escpos_class()):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.job = bytearray()

        def _raw(self, msg: bytes) -> None:
            self.job += msg

        def close(self) -> None:
            """The driver owns the port."""

    return JobPrinter()


class ReceiptPrinterDriver:
    """An ESC/POS receipt printer on a serial link: a pty path, /dev/tty*, socket:// or loop://."""

    TITLE_COLUMNS = 21  # double width on a 42-column printer

    def __init__(self, url: str, *, timeout: float = 1.0) -> None:
        self.url = url
        self.timeout = timeout
        # python-escpos's own Serial opens a plain pyserial port: its waits use select(), which
        # fails on a descriptor above 1023. Our port (any URL) carries the printer's bytes.
        self.port = open_port(url, timeout=0.05)
        self._printer = _escpos_job()

    # ----- status ----------------------------------------------------------------------------

    def _ask(self) -> list[int | None]:
        """The answers to the four DLE EOT questions of STATUS_QUESTIONS, asked in one write.

        A printer answers each real-time question as it arrives, one byte each in the order
        asked, so the four cost one round trip. An answer that is not a status byte is None;
        those still missing at the deadline are None too. Reads wait in the port's own 50 ms
        slices (setting a timeout per read would rewrite the tty's settings each time).
        """
        deadline = time.monotonic() + self.timeout
        answers: list[int | None] = []
        try:
            self.port.reset_input_buffer()
            self.port.write(b"".join(wire.real_time_query(kind) for kind in STATUS_QUESTIONS))
            while len(answers) < len(STATUS_QUESTIONS) and deadline - time.monotonic() > 0:
                data: bytes = self.port.read(len(STATUS_QUESTIONS) - len(answers))
                answers += [byte if wire.is_status_byte(byte) else None for byte in data]
        except (serial.SerialException, OSError) as err:
            raise LinkError(f"{self.url}: status query failed: {err}") from err
        return answers + [None] * (len(STATUS_QUESTIONS) - len(answers))

    def status(self) -> PrinterStatus:
        """Online, cover, paper and jam, each from its DLE EOT answer; unknown if unanswered."""
        printer, offline, error, paper = self._ask()
        if printer is None:
            return UNKNOWN
        jammed = None
        if error is not None:
            jammed = bool(error & (wire.ERROR_AUTOCUTTER | wire.ERROR_UNRECOVERABLE))
        return PrinterStatus(
            online=not printer & wire.PRINTER_OFFLINE,
            cover_open=None if offline is None else bool(offline & wire.OFFLINE_COVER_OPEN),
            paper=PaperLevel.UNKNOWN
            if paper is None
            else PaperLevel(wire.decode_paper(paper).value),
            jammed=jammed,
        )

    def _check(self, status: PrinterStatus, when: str) -> None:
        if not status.answered:
            raise DeviceTimeout(f"{self.url}: receipt printer did not answer {when}")
        if status.paper == "out":
            raise PrinterError(f"receipt printer: paper out {when}", "paper_out")
        if status.jammed:
            raise PrinterError(f"receipt printer: paper jam {when}", "jam")
        if status.cover_open:
            raise PrinterError(f"receipt printer: cover open {when}", "cover_open")
        if not status.online:
            raise PrinterError(f"receipt printer: offline {when}", "offline")

    # ----- printing --------------------------------------------------------------------------

    def print_receipt(
        self, lines: list[str], *, title: str | None = None, qr: str | None = None
    ) -> None:
        """Print a bold centred title, the lines, an optional QR code, and cut.

        Raises PrinterError when the printer cannot print (before) or stopped (after), and
        DeviceTimeout when it does not answer status.
        """
        self._check(self.status(), "before printing")
        printer = self._printer
        printer.job.clear()
        try:
            printer.hw("INIT")
            printer.magic.encoding = None  # ESC @ reset the code page; python-escpos must resend it
            if title:
                printer.set(align="center", bold=True, double_width=True, double_height=True)
                printer.textln(title)
                printer.set(normal_textsize=True, bold=False, align="left")
            for line in lines:
                printer.textln(line)
            if qr:
                printer.set(align="center")
                printer.qr(qr, native=True, size=4)
                printer.ln()
                printer.set(align="left")
            printer.cut()
            self.port.write(bytes(printer.job))
            self.port.flush()
        except (serial.SerialException, OSError) as err:
            raise LinkError(f"{self.url}: printing failed: {err}") from err
        self._check(self.status(), "after printing")

    def close(self) -> None:
        try:
            if self.port.is_open:
                self.port.close()
        except (serial.SerialException, OSError):
            pass  # closing a port whose peer is gone

    def __enter__(self) -> ReceiptPrinterDriver:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
