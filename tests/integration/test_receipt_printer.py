"""The receipt printer driver and python-escpos against the emulated printer over real links."""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from device.controller.device_status import PrinterStatus
from device.controller.ports import DeviceTimeout
from device.drivers.receipt_printer import PrinterError, ReceiptPrinterDriver
from peripherals.links.endpoint import LinkClosed, PtyEndpoint
from peripherals.links.runner import LinkRunner
from peripherals.receipt_printer import Receipt, ReceiptPrinterEmulator
from peripherals.receipt_render import PrintedImage, PrintedLine, PrintedSymbol
from peripherals.wire.escpos import Align

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def printer(tmp_path: Path) -> ReceiptPrinterEmulator:
    return ReceiptPrinterEmulator.from_config(
        {"paper_length_lines": 2000, "near_end_lines": 100}, state_dir=tmp_path / "receipts"
    )


@pytest.fixture
def link(printer: ReceiptPrinterEmulator) -> Iterator[LinkRunner]:
    runner = LinkRunner(printer, PtyEndpoint()).start()
    yield runner
    runner.stop()


@pytest.fixture
def driver(link: LinkRunner) -> Iterator[ReceiptPrinterDriver]:
    with ReceiptPrinterDriver(link.url, timeout=0.3) as drv:
        yield drv


def wait_for_receipts(printer: ReceiptPrinterEmulator, count: int) -> list[Receipt]:
    deadline = time.monotonic() + 5.0
    while len(printer.receipts) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return printer.receipts


def check_png(receipt: Receipt, tmp_path: Path) -> tuple[int, int]:
    import pygame

    assert isinstance(receipt.png, Path) and receipt.png.parent == tmp_path / "receipts"
    data = receipt.png_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) < 200_000
    size: tuple[int, int] = pygame.image.load(str(receipt.png)).get_size()
    return size


# ----- the driver over a pty ------------------------------------------------------------------


def test_status_of_a_ready_printer(driver: ReceiptPrinterDriver) -> None:
    assert driver.status() == PrinterStatus(
        online=True, cover_open=False, paper="adequate", jammed=False
    )


def test_print_receipt_renders_title_lines_qr_and_cut(
    driver: ReceiptPrinterDriver, printer: ReceiptPrinterEmulator, tmp_path: Path
) -> None:
    driver.print_receipt(
        ["2026-11-28 10:15:00", "CARD 476173******0010", "WITHDRAWAL 100.00", "Caf\u00e9 \u20ac5"],
        title="ATM RECEIPT",
        qr="https://bank.example/r/42",
    )
    (receipt,) = printer.receipts
    assert receipt.cut
    lines = receipt.text.splitlines()
    assert lines[0] == " " * 10 + "ATM RECEIPT"
    assert lines[1:5] == [
        "2026-11-28 10:15:00",
        "CARD 476173******0010",
        "WITHDRAWAL 100.00",
        "Caf\u00e9 \u20ac5",
    ]
    assert "[QR https://bank.example/r/42]" in receipt.text
    title = receipt.elements[0]
    assert title == PrintedLine("ATM RECEIPT", Align.CENTER, bold=True, width=2, height=2)
    assert PrintedSymbol(49, b"https://bank.example/r/42", 4, Align.CENTER) in receipt.elements
    width, height = check_png(receipt, tmp_path)
    assert width == 42 * 12 + 16 and height > 8 * 24


def test_receipts_in_a_row_each_end_at_their_cut(
    driver: ReceiptPrinterDriver, printer: ReceiptPrinterEmulator
) -> None:
    for n in range(3):
        driver.print_receipt([f"receipt {n}"])
    assert [r.text.split()[:2] for r in printer.receipts] == [["receipt", str(n)] for n in range(3)]
    assert printer.remaining_lines < 2000


# ----- faults ---------------------------------------------------------------------------------


def test_paper_near_end_still_prints(
    driver: ReceiptPrinterDriver, printer: ReceiptPrinterEmulator
) -> None:
    printer.faults.inject("paper_near_end")
    assert driver.status().paper == "near_end"
    driver.print_receipt(["ok"])
    assert printer.receipts[-1].text.startswith("ok")


def test_paper_out_refuses_to_print(
    driver: ReceiptPrinterDriver, printer: ReceiptPrinterEmulator
) -> None:
    printer.faults.inject("paper_out")
    status = driver.status()
    assert (status.online, status.paper) == (False, "out")
    with pytest.raises(PrinterError) as err:
        driver.print_receipt(["lost"])
    assert err.value.code == "paper_out"
    assert printer.receipts == []


def test_paper_running_out_during_a_receipt_is_reported(tmp_path: Path) -> None:
    printer = ReceiptPrinterEmulator(paper_length_lines=5, near_end_lines=2)
    with (
        LinkRunner(printer, PtyEndpoint()) as runner,
        ReceiptPrinterDriver(runner.url, timeout=0.3) as driver,
    ):
        with pytest.raises(PrinterError) as err:
            driver.print_receipt([f"line {n}" for n in range(10)])
        assert err.value.code == "paper_out"
        (receipt,) = printer.receipts
        assert receipt.cut is False
        assert receipt.text.splitlines() == [f"line {n}" for n in range(5)]


@pytest.mark.parametrize(
    ("fault", "code", "field"),
    [("jam", "jam", "jammed"), ("cover_open", "cover_open", "cover_open")],
)
def test_jam_and_cover_open_stop_printing(
    driver: ReceiptPrinterDriver,
    printer: ReceiptPrinterEmulator,
    fault: str,
    code: str,
    field: str,
) -> None:
    printer.faults.inject(fault)
    status = driver.status()
    assert status.online is False and getattr(status, field) is True
    assert status.paper == "adequate"
    with pytest.raises(PrinterError) as err:
        driver.print_receipt(["lost"])
    assert err.value.code == code
    printer.clear_fault(fault)
    driver.print_receipt(["after repair"])
    assert [r.text.split("\n")[0] for r in printer.receipts] == ["after repair"]


def test_unresponsive_printer_is_unknown_never_adequate(
    driver: ReceiptPrinterDriver, printer: ReceiptPrinterEmulator
) -> None:
    printer.faults.inject("unresponsive")
    started = time.monotonic()
    assert driver.status() == PrinterStatus(
        online=None, cover_open=None, paper="unknown", jammed=None
    )
    assert time.monotonic() - started < 1.0  # one timeout, not four
    with pytest.raises(DeviceTimeout):
        driver.print_receipt(["lost"])
    printer.clear_fault()
    assert driver.status().paper == "adequate"
    assert printer.receipts == []


def test_fault_armed_in_the_middle_of_a_stream_stops_the_rest(
    link: LinkRunner, printer: ReceiptPrinterEmulator
) -> None:
    printer.receive(b"printed\n")
    printer.faults.inject("jam")
    printer.receive(b"not printed\n\x1dV\x00")
    (receipt,) = printer.receipts
    assert (receipt.text, receipt.cut) == ("printed\n", False)


# ----- python-escpos straight onto the emulated printer ---------------------------------------


def test_python_escpos_serial_over_a_pty(
    link: LinkRunner, printer: ReceiptPrinterEmulator, tmp_path: Path
) -> None:
    from escpos.printer import Serial

    esc = Serial(devfile=link.url, timeout=0.2)
    esc.open()
    try:
        esc.hw("INIT")
        esc.set(bold=True)
        esc.textln("BOLD")
        esc.set(bold=False, double_width=True, double_height=True)
        esc.textln("BIG")
        esc.set(normal_textsize=True, align="right")
        esc.textln("right")
        esc.set(align="left")
        esc.barcode("12345", "CODE39", pos="BELOW", align_ct=False)
        esc.ln()
        esc.qr("https://bank.example/q", native=True)
        esc.qr("picture")  # python-escpos draws this one itself and sends it as an image
        esc.image(Image.new("1", (64, 32), 0))
        esc.image(Image.new("1", (64, 16), 0), impl="graphics")
        esc.image(Image.new("1", (32, 24), 0), impl="bitImageColumn")
        esc.cut()
        assert esc.is_online() is True
        assert esc.paper_status() == 2
    finally:
        esc.close()
    (receipt,) = wait_for_receipts(printer, 1)
    lines = receipt.text.splitlines()
    assert lines[:3] == ["BOLD", "BIG", " " * 37 + "right"]
    assert "[barcode CODE39 12345]" in lines
    assert "[QR https://bank.example/q]" in lines
    assert "[image 64x32]" in lines and "[image 64x16]" in lines and "[image 32x24]" in lines
    bold, big = receipt.elements[:2]
    assert bold == PrintedLine("BOLD", bold=True)
    assert big == PrintedLine("BIG", width=2, height=2)
    images = [e for e in receipt.elements if isinstance(e, PrintedImage)]
    image = next(e for e in images if (e.width_bytes, e.height) == (8, 32))
    assert image.data == b"\xff" * 8 * 32  # black pixels arrive as set bits
    assert printer.unknown_commands == 0
    width, height = check_png(receipt, tmp_path)
    assert width == 520 and height > 300


# ----- other link backends --------------------------------------------------------------------


class TcpEndpoint:
    """The emulator's end of a socket:// link: a listening socket on 127.0.0.1, one client."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self._server.getsockname()[1]}"
        self._client: socket.socket | None = None

    def wait(self, timeout: float) -> bool:
        watch = [self._server if self._client is None else self._client]
        return bool(select.select(watch, [], [], timeout)[0])

    def read(self, timeout: float) -> bytes:
        if self._client is None:
            ready, _, _ = select.select([self._server], [], [], timeout)
            if not ready:
                return b""
            self._client, _ = self._server.accept()
        ready, _, _ = select.select([self._client], [], [], timeout)
        if not ready:
            return b""
        try:
            return self._client.recv(4096)
        except OSError as err:
            raise LinkClosed(str(err)) from err

    def write(self, data: bytes) -> None:
        if self._client is None:
            raise LinkClosed("no client")
        self._client.sendall(data)

    def close(self) -> None:
        for sock in (self._client, self._server):
            if sock is not None:
                sock.close()


def test_driver_over_socket_url(printer: ReceiptPrinterEmulator) -> None:
    with (
        LinkRunner(printer, TcpEndpoint()) as runner,
        ReceiptPrinterDriver(runner.url, timeout=0.5) as driver,
    ):
        assert runner.url.startswith("socket://")
        assert driver.status().paper == "adequate"
        driver.print_receipt(["over tcp"], title="T", qr="q")
        (receipt,) = printer.receipts
        assert receipt.text.splitlines()[1:2] == ["over tcp"] and "[QR q]" in receipt.text


def test_driver_over_loop_url_hears_no_printer() -> None:
    # loop:// echoes the query back: that is not a status byte, so the status is unknown.
    with ReceiptPrinterDriver("loop://", timeout=0.2) as driver:
        assert driver.status().paper == "unknown"
        with pytest.raises(DeviceTimeout):
            driver.print_receipt(["x"])


def test_missing_port_is_a_link_error() -> None:
    from device.drivers.base import LinkError

    with pytest.raises(LinkError):
        ReceiptPrinterDriver(f"/dev/pts/does-not-exist-{os.getpid()}")


def test_receipts_render_again_after_pygame_quit() -> None:
    import pygame

    from peripherals.receipt_render import PrintedLine, render_png

    first = render_png([PrintedLine("BEFORE QUIT")])
    pygame.quit()
    second = render_png([PrintedLine("AFTER QUIT")])
    assert first.startswith(b"\x89PNG") and second.startswith(b"\x89PNG")
