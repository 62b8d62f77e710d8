"""Receipt PNGs in a printer's state folder keep their names across restarts: a printer started
again on the same folder numbers on from the highest receipt there and overwrites none.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from device.drivers.receipt_printer import ReceiptPrinterDriver
from peripherals.links.endpoint import PtyEndpoint
from peripherals.links.runner import LinkRunner
from peripherals.receipt_printer import (
    Receipt,
    ReceiptPrinterConfigError,
    ReceiptPrinterEmulator,
)


def print_receipts(
    folder: Path, texts: list[str], config: dict[str, Any] | None = None
) -> list[Receipt]:
    """A printer on `folder`, started, printing one receipt per text over a pty, stopped."""
    printer = ReceiptPrinterEmulator.from_config(config or {}, state_dir=folder)
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


def test_images_on_request_are_drawn_and_written_only_when_asked_for(tmp_path: Path) -> None:
    folder = tmp_path / "receipts"
    first, second = print_receipts(folder, ["ONE", "TWO"], {"images": "on_request"})
    assert "TWO" in second.text
    assert not folder.exists() or list(folder.iterdir()) == []  # nothing drawn yet
    assert not second.drawn.done()

    png = second.png
    assert isinstance(png, Path) and png.name == "receipt-00001.png"
    assert png.read_bytes().startswith(b"\x89PNG")
    assert second.png == png  # drawn once
    assert [p.name for p in folder.iterdir()] == ["receipt-00001.png"]
    assert not first.drawn.done()


def test_an_unknown_image_mode_is_refused_with_the_choices() -> None:
    with pytest.raises(
        ReceiptPrinterConfigError, match="images 'sometimes'; use on_cut or on_request"
    ):
        ReceiptPrinterEmulator.from_config({"images": "sometimes"})
