"""Receipt printer contract: the same conversation through ReceiptPrinterDriver on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from device.controller.device_status import PrinterStatus
from device.controller.ports import DeviceTimeout
from device.drivers.receipt_printer import PrinterError, ReceiptPrinterDriver
from tests.contract.conftest import OneDeviceBay

Printer = tuple[Any, Any, ReceiptPrinterDriver]


@pytest.fixture
def printer(one_device_bay: OneDeviceBay) -> Iterator[Printer]:
    bay = one_device_bay("receipt_printer")
    # The product's status timeout: the first status after a cut waits for the emulator to
    # render the receipt, which a loaded machine stretches past a shorter one.
    with ReceiptPrinterDriver(bay.url("receipt_printer"), timeout=1.0) as driver:
        yield bay, bay.receipt_printer, driver


def test_status_of_a_ready_printer(printer: Printer) -> None:
    _, _, driver = printer
    assert driver.status() == PrinterStatus(
        online=True, cover_open=False, paper="adequate", jammed=False
    )


def test_a_receipt_is_printed_and_cut(printer: Printer) -> None:
    _, emulator, driver = printer
    before = emulator.status()["remaining_lines"]
    driver.print_receipt(
        ["CASH WITHDRAWAL", "CARD  476173******0010", "AMOUNT      100.00"],
        title="ATM00001",
        qr="ATM00001-000123",
    )
    receipts = emulator.receipts
    assert len(receipts) == 1
    assert receipts[0].cut
    for text in ("ATM00001", "CASH WITHDRAWAL", "476173******0010", "AMOUNT      100.00"):
        assert text in receipts[0].text
    assert receipts[0].png_bytes().startswith(b"\x89PNG")
    assert emulator.status()["remaining_lines"] < before
    assert driver.status().paper == "adequate"


def test_paper_out_refuses_to_print_until_cleared(printer: Printer) -> None:
    bay, emulator, driver = printer
    bay.inject("receipt_printer", "paper_out")
    assert driver.status().paper == "out"
    with pytest.raises(PrinterError) as caught:
        driver.print_receipt(["NOT PRINTED"])
    assert caught.value.code == "paper_out"
    assert emulator.receipts == []
    bay.clear("receipt_printer")
    driver.print_receipt(["PRINTED"])
    assert len(emulator.receipts) == 1


def test_a_cut_link_reads_as_unknown_never_adequate(printer: Printer) -> None:
    bay, _, driver = printer
    bay.inject("receipt_printer.link", "disconnect")
    assert driver.status() == PrinterStatus(
        online=None, cover_open=None, paper="unknown", jammed=None
    )
    with pytest.raises(DeviceTimeout):
        driver.print_receipt(["NOT PRINTED"])
    bay.clear("receipt_printer.link")
    assert driver.status().paper == "adequate"
