"""Links whose descriptors are above 1023, as in one process running a fleet of ATMs: select()
cannot watch them, so drivers and endpoints (pty and socket) must wait with poll()."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator

import pytest

from device.drivers.receipt_printer import ReceiptPrinterDriver
from peripherals.links.endpoint import PtyEndpoint
from peripherals.links.runner import LinkRunner
from peripherals.links.socket_endpoint import SocketEndpoint
from peripherals.receipt_printer import ReceiptPrinterEmulator

HIGH_FD = 1100


@pytest.fixture
def low_descriptors_taken() -> Iterator[None]:
    """Every descriptor below HIGH_FD in use, so what opens next gets a number above 1023."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), hard))
    filler: list[int] = []
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        while (fd := os.dup(null)) < HIGH_FD:  # dup takes the lowest free number
            filler.append(fd)
        filler.append(fd)
        yield
    finally:
        for fd in [*filler, null]:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("endpoint_class", [PtyEndpoint, SocketEndpoint])
def test_a_driver_prints_and_reads_status_over_a_link_above_fd_1023(
    low_descriptors_taken: None, endpoint_class: type[PtyEndpoint | SocketEndpoint]
) -> None:
    emulator = ReceiptPrinterEmulator()
    endpoint = endpoint_class()
    with LinkRunner(emulator, endpoint) as runner:
        driver = ReceiptPrinterDriver(runner.url)
        try:
            assert driver.port.fileno() > 1023 and endpoint.fileno() > 1023
            assert driver.status().answered
            driver.print_receipt(["WITHDRAWAL      20.00"], title="ATM")
        finally:
            driver.close()
    deadline = time.monotonic() + 2.0
    while not emulator.receipts and time.monotonic() < deadline:
        time.sleep(0.01)  # the last bytes may still be crossing the link
    receipt = emulator.receipts[-1]
    assert receipt.cut and "WITHDRAWAL      20.00" in receipt.text
