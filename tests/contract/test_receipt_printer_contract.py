"""Receipt printer contract: the same conversation through ReceiptPrinterDriver on every backend.

Receipts and what is printed on them, paper and cover faults, a silent printer and a cut link.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from device.controller.device_status import PaperLevel, PrinterStatus
from device.controller.ports import DeviceTimeout
from device.drivers.receipt_printer import PrinterError, ReceiptPrinterDriver
from peripherals.receipt_printer import Receipt, ReceiptPrinterEmulator
from peripherals.receipt_render import PrintedLine, PrintedSymbol
from peripherals.wire.escpos import Align
from tests.contract.conftest import OneDeviceBay

Printer = tuple[Any, Any, ReceiptPrinterDriver]

UNKNOWN = PrinterStatus(online=None, cover_open=None, paper=PaperLevel.UNKNOWN, jammed=None)
# The product's status timeout: the first status after a cut waits for the emulator to render
# the receipt, which a loaded machine stretches past a shorter one.
STATUS_TIMEOUT = 1.0
# A silent printer costs a whole timeout per question; nothing is rendered while it is silent.
SILENT_TIMEOUT = 0.2


@pytest.fixture
def printer(one_device_bay: OneDeviceBay) -> Iterator[Printer]:
    bay = one_device_bay("receipt_printer")  # a 2000-line roll, near its end at 100
    with ReceiptPrinterDriver(bay.url("receipt_printer"), timeout=STATUS_TIMEOUT) as driver:
        yield bay, bay.receipt_printer, driver


def png_size(receipt: Receipt, emulator: ReceiptPrinterEmulator) -> tuple[int, int]:
    """The size of the receipt's PNG, which the printer keeps in its state directory."""
    import pygame

    assert isinstance(receipt.png, Path) and receipt.png.parent == emulator.state_dir
    data = receipt.png_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) < 200_000
    size: tuple[int, int] = pygame.image.load(str(receipt.png)).get_size()
    return size


def test_status_of_a_ready_printer(printer: Printer) -> None:
    _, _, driver = printer
    assert driver.status() == PrinterStatus(
        online=True, cover_open=False, paper=PaperLevel.ADEQUATE, jammed=False
    )


def test_status_questions_leave_the_port_settings_alone(
    printer: Printer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four questions a status, each read in the port's own slices: no read rewrites the line's
    settings (on a tty each rewrite is system calls), so a status costs its four round trips."""
    _, _, driver = printer
    rewrites: list[object] = []
    real = type(driver.port)._reconfigure_port
    monkeypatch.setattr(
        type(driver.port),
        "_reconfigure_port",
        lambda port, *args, **kwargs: rewrites.append(port) or real(port, *args, **kwargs),
    )
    for _ in range(3):
        assert driver.status().answered
    assert rewrites == []


def test_a_status_asks_its_four_questions_in_one_write(
    printer: Printer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A printer answers each DLE EOT as it comes: one round trip for the four, not four."""
    _, _, driver = printer
    writes: list[bytes] = []
    real = driver.port.write
    monkeypatch.setattr(driver.port, "write", lambda data: writes.append(bytes(data)) or real(data))
    assert driver.status() == PrinterStatus(
        online=True, cover_open=False, paper=PaperLevel.ADEQUATE, jammed=False
    )
    assert writes == [b"\x10\x04\x01\x10\x04\x02\x10\x04\x03\x10\x04\x04"]


def test_a_printer_that_answers_only_the_first_question_is_partly_unknown(
    printer: Printer,
) -> None:
    _, emulator, driver = printer
    original = emulator.send
    answered: list[bytes] = []

    def first_only(data: bytes) -> None:
        if not answered:
            answered.append(data)
            original(data)

    emulator.send = first_only
    driver.timeout = SILENT_TIMEOUT
    status = driver.status()
    assert status.online is True
    assert (status.cover_open, status.paper, status.jammed) == (None, PaperLevel.UNKNOWN, None)


def test_a_receipt_renders_title_lines_qr_and_cut(printer: Printer) -> None:
    _, emulator, driver = printer
    before = emulator.status()["remaining_lines"]
    driver.print_receipt(
        ["2026-11-28 10:15:00", "CARD 476173******0010", "WITHDRAWAL 100.00", "Caf\u00e9 \u20ac5"],
        title="ATM RECEIPT",
        qr="https://bank.example/r/42",
    )
    (receipt,) = emulator.receipts
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
    assert receipt.elements[0] == PrintedLine(
        "ATM RECEIPT", Align.CENTER, bold=True, width=2, height=2
    )
    assert PrintedSymbol(49, b"https://bank.example/r/42", 4, Align.CENTER) in receipt.elements
    width, height = png_size(receipt, emulator)
    assert width == 42 * 12 + 16 and height > 8 * 24
    assert emulator.status()["remaining_lines"] < before
    assert driver.status().paper == "adequate"


def test_receipts_in_a_row_each_end_at_their_cut(printer: Printer) -> None:
    _, emulator, driver = printer
    for n in range(3):
        driver.print_receipt([f"receipt {n}"])
    assert [r.text.split()[:2] for r in emulator.receipts] == [
        ["receipt", str(n)] for n in range(3)
    ]
    assert all(r.cut for r in emulator.receipts)
    assert emulator.remaining_lines < 2000


def test_paper_near_end_still_prints(printer: Printer) -> None:
    bay, emulator, driver = printer
    bay.inject("receipt_printer", "paper_near_end")
    assert driver.status().paper == "near_end"
    driver.print_receipt(["ok"])
    assert emulator.receipts[-1].text.startswith("ok")


def test_paper_out_refuses_to_print_until_cleared(printer: Printer) -> None:
    bay, emulator, driver = printer
    bay.inject("receipt_printer", "paper_out")
    status = driver.status()
    assert (status.online, status.paper) == (False, "out")
    with pytest.raises(PrinterError) as caught:
        driver.print_receipt(["NOT PRINTED"])
    assert caught.value.code == "paper_out"
    assert emulator.receipts == []
    bay.clear("receipt_printer")
    driver.print_receipt(["PRINTED"])
    assert len(emulator.receipts) == 1


def test_paper_running_out_during_a_receipt_is_reported(one_device_bay: OneDeviceBay) -> None:
    emulator = ReceiptPrinterEmulator(paper_length_lines=5, near_end_lines=2)
    bay = one_device_bay("receipt_printer", emulator)
    with ReceiptPrinterDriver(bay.url("receipt_printer"), timeout=STATUS_TIMEOUT) as driver:
        with pytest.raises(PrinterError) as caught:
            driver.print_receipt([f"line {n}" for n in range(10)])
        assert caught.value.code == "paper_out"
    (receipt,) = emulator.receipts
    assert receipt.cut is False
    assert receipt.text.splitlines() == [f"line {n}" for n in range(5)]


@pytest.mark.parametrize(
    ("fault", "code", "field"),
    [("jam", "jam", "jammed"), ("cover_open", "cover_open", "cover_open")],
)
def test_jam_and_cover_open_stop_printing(
    printer: Printer, fault: str, code: str, field: str
) -> None:
    bay, emulator, driver = printer
    bay.inject("receipt_printer", fault)
    status = driver.status()
    assert status.online is False and getattr(status, field) is True
    assert status.paper == "adequate"
    with pytest.raises(PrinterError) as caught:
        driver.print_receipt(["lost"])
    assert caught.value.code == code
    bay.clear("receipt_printer", fault)
    driver.print_receipt(["after repair"])
    assert [r.text.split("\n")[0] for r in emulator.receipts] == ["after repair"]


def test_an_unresponsive_printer_is_unknown_never_adequate(printer: Printer) -> None:
    bay, emulator, driver = printer
    bay.inject("receipt_printer", "unresponsive")
    driver.timeout = SILENT_TIMEOUT
    started = time.monotonic()
    assert driver.status() == UNKNOWN
    assert time.monotonic() - started < 3 * SILENT_TIMEOUT  # one timeout, not four
    with pytest.raises(DeviceTimeout):
        driver.print_receipt(["lost"])
    bay.clear("receipt_printer")
    driver.timeout = STATUS_TIMEOUT
    assert driver.status().paper == "adequate"
    assert emulator.receipts == []


def test_a_cut_link_reads_as_unknown_never_adequate(printer: Printer) -> None:
    bay, _, driver = printer
    bay.inject("receipt_printer.link", "disconnect")
    driver.timeout = SILENT_TIMEOUT
    assert driver.status() == UNKNOWN
    with pytest.raises(DeviceTimeout):
        driver.print_receipt(["NOT PRINTED"])
    bay.clear("receipt_printer.link")
    driver.timeout = STATUS_TIMEOUT
    assert driver.status().paper == "adequate"
