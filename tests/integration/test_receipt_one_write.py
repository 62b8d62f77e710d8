"""A receipt goes to the printer as one job: one write of all its commands, between the status
asked before printing and the one asked after, over a real pty to the emulated printer."""

from __future__ import annotations

import pytest

from device.drivers.receipt_printer import ReceiptPrinterDriver
from peripherals.links.endpoint import PtyEndpoint
from peripherals.links.runner import LinkRunner
from peripherals.receipt_printer import ReceiptPrinterEmulator
from peripherals.wire import escpos as wire

INIT, CUT = b"\x1b@", b"\x1dV"


def test_a_receipt_is_one_write_and_prints_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    printer = ReceiptPrinterEmulator.from_config({"images": "on_request"})
    lines = [f"LINE {number:02d}" for number in range(60)]  # more than one pty read's worth
    with LinkRunner(printer, PtyEndpoint()) as link, ReceiptPrinterDriver(link.url) as driver:
        writes: list[bytes] = []
        write = driver.port.write

        def recorded(data: bytes) -> int | None:
            writes.append(bytes(data))
            return write(data)

        monkeypatch.setattr(driver.port, "write", recorded)
        driver.print_receipt(lines, title="ATM RECEIPT", qr="https://example.com/r/1")
        (receipt,) = printer.receipts
    status = b"".join(wire.real_time_query(kind) for kind in wire.StatusKind)
    assert len(writes) == 3 and writes[0] == writes[2]  # status, the job, status
    assert set(writes[0]) <= set(status)
    job = writes[1]
    assert job.startswith(INIT) and CUT in job[-8:]
    printed = [line.strip() for line in receipt.text.splitlines()]
    assert receipt.cut and printed == ["ATM RECEIPT", *lines, "[QR https://example.com/r/1]"]
