"""Receipt PNGs in a printer's state folder keep their names across restarts: a printer started
again on the same folder numbers on from the highest receipt there and overwrites none.
"""

from __future__ import annotations

import time
from pathlib import Path

from device.drivers.receipt_printer import ReceiptPrinterDriver
from peripherals.links.endpoint import PtyEndpoint
from peripherals.links.runner import LinkRunner
from peripherals.receipt_printer import Receipt, ReceiptPrinterEmulator


def print_receipts(folder: Path, texts: list[str]) -> list[Receipt]:
    """A printer on `folder`, started, printing one receipt per text over a pty, stopped."""
    printer = ReceiptPrinterEmulator.from_config({}, state_dir=folder)
    runner = LinkRunner(printer, PtyEndpoint()).start()
    try:
        with ReceiptPrinterDriver(runner.url, timeout=0.5) as driver:
            for text in texts:
                driver.print_receipt([text], title="ATM RECEIPT")
        deadline = time.monotonic() + 5.0
        while len(printer.receipts) < len(texts) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        runner.stop()
    return printer.receipts


def test_a_restarted_printer_numbers_on_and_overwrites_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "receipts"
    first_run = print_receipts(folder, ["FIRST RUN ONE", "FIRST RUN TWO"])
    before = {r.png: r.png_bytes() for r in first_run if isinstance(r.png, Path)}
    assert [p.name for p in before] == ["receipt-00001.png", "receipt-00002.png"]

    second_run = print_receipts(folder, ["SECOND RUN"])
    (receipt,) = second_run
    assert isinstance(receipt.png, Path)
    assert receipt.png.name == "receipt-00003.png"
    for path, data in before.items():
        assert path.read_bytes() == data  # the first run's receipts are untouched
    assert sorted(p.name for p in folder.iterdir()) == [
        "receipt-00001.png",
        "receipt-00002.png",
        "receipt-00003.png",
    ]


def test_numbering_goes_on_after_the_highest_even_with_gaps(tmp_path: Path) -> None:
    folder = tmp_path / "receipts"
    folder.mkdir()
    (folder / "receipt-00007.png").write_bytes(b"kept by the operator")
    (receipt,) = print_receipts(folder, ["AFTER A GAP"])
    assert isinstance(receipt.png, Path) and receipt.png.name == "receipt-00008.png"
    assert (folder / "receipt-00007.png").read_bytes() == b"kept by the operator"
