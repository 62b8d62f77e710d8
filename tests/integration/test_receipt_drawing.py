"""A receipt is drawn after its cut, off the printer's wire: the status query after printing is
answered at once however long the drawing takes, and the receipts list waits for the drawing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

import peripherals.receipt_printer as receipt_printer
from device.drivers.receipt_printer import ReceiptPrinterDriver
from peripherals.links.endpoint import PtyEndpoint
from peripherals.links.runner import LinkRunner
from peripherals.receipt_printer import ReceiptPrinterEmulator
from peripherals.receipt_render import Element, render_png


def test_status_after_printing_does_not_wait_for_the_drawing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    def slow_render(elements: Sequence[Element], columns: int = 42, *, cut: bool = True) -> bytes:
        release.wait(10)  # a drawing far slower than the driver's 0.5 s status timeout
        return render_png(elements, columns, cut=cut)

    monkeypatch.setattr(receipt_printer, "render_png", slow_render)
    printer = ReceiptPrinterEmulator.from_config({}, state_dir=tmp_path / "receipts")
    runner = LinkRunner(printer, PtyEndpoint()).start()
    try:
        with ReceiptPrinterDriver(runner.url, timeout=0.5) as driver:
            started = time.monotonic()
            driver.print_receipt(["WITHDRAWAL EUR 50.00"], title="ATM RECEIPT")
            assert time.monotonic() - started < 2.0
        assert not (tmp_path / "receipts" / "receipt-00001.png").exists()  # still drawing
        threading.Timer(0.2, release.set).start()
        (receipt,) = printer.receipts  # waits for the drawing
    finally:
        release.set()
        runner.stop()
    assert "WITHDRAWAL EUR 50.00" in receipt.text
    assert isinstance(receipt.png, Path) and receipt.png.name == "receipt-00001.png"
    assert receipt.png.read_bytes().startswith(b"\x89PNG")


def test_a_drawing_that_fails_is_logged_and_raised_where_the_image_is_asked_for(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_render(elements: Sequence[Element], columns: int = 42, *, cut: bool = True) -> bytes:
        raise RuntimeError("no surface")

    monkeypatch.setattr(receipt_printer, "render_png", broken_render)
    printer = ReceiptPrinterEmulator.from_config({})
    runner = LinkRunner(printer, PtyEndpoint()).start()
    try:
        with ReceiptPrinterDriver(runner.url, timeout=0.5) as driver:
            driver.print_receipt(["BALANCE"])
        (receipt,) = printer.receipts
    finally:
        runner.stop()
    assert "BALANCE" in receipt.text
    with pytest.raises(RuntimeError, match="no surface"):
        receipt.png_bytes()
    assert "a receipt could not be drawn" in caplog.text
