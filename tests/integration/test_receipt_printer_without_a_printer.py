"""The receipt printer driver with no printer behind its port: an echoing loop://, a missing port.

Neither needs an emulator or a link backend: what is checked is the driver's side alone.
"""

from __future__ import annotations

import os

import pytest

from device.controller.ports import DeviceTimeout, LinkError
from device.drivers.receipt_printer import ReceiptPrinterDriver


def test_driver_over_loop_url_hears_no_printer() -> None:
    # loop:// echoes the query back: that is not a status byte, so the status is unknown.
    with ReceiptPrinterDriver("loop://", timeout=0.2) as driver:
        assert driver.status().paper == "unknown"
        with pytest.raises(DeviceTimeout):
            driver.print_receipt(["x"])


def test_missing_port_is_a_link_error() -> None:
    with pytest.raises(LinkError):
        ReceiptPrinterDriver(f"/dev/pts/does-not-exist-{os.getpid()}")
