"""session_bench's floor counts device round trips, not commands: over real ptys, a command that
waits for its answer is one, a resend another, and a receipt's one-way printing none."""

from __future__ import annotations

from pathlib import Path

from device.drivers.card_reader import CardReaderDriver
from device.drivers.receipt_printer import ReceiptPrinterDriver
from peripherals.card_reader import CardReaderEmulator
from peripherals.links.endpoint import PtyEndpoint
from peripherals.links.runner import LinkRunner
from peripherals.receipt_printer import ReceiptPrinterEmulator
from scripts.bench.session_bench import RoundTripCounter

CONFIG = Path(__file__).parents[2] / "config"


def test_a_receipt_is_two_round_trips_however_many_commands_print_it() -> None:
    printer = ReceiptPrinterEmulator.from_config({"images": "on_request"})
    with (
        LinkRunner(printer, PtyEndpoint()) as link,
        ReceiptPrinterDriver(link.url) as driver,
        RoundTripCounter() as round_trips,
    ):
        driver.print_receipt(["TERMINAL ATM00001", "WITHDRAWAL EUR 20.00"], title="RECEIPT")
    # the status before and after printing, each four questions in one write
    assert round_trips.count == 2
    assert printer.faults.commands_seen > 2 * 4 + 5  # the statuses' questions and the printing


def test_each_send_of_a_command_is_a_round_trip() -> None:
    reader = CardReaderEmulator.from_config({"wallet": str(CONFIG / "wallet.yaml")})
    with LinkRunner(reader, PtyEndpoint()) as link:
        driver = CardReaderDriver(link.url, timeout=1.0)
        try:
            with RoundTripCounter() as round_trips:
                # Armed before anything is on the wire, so that the command is what it drops (an
                # ACK still on its way would be, armed after an exchange).
                link.faults.inject("drop", mode="once")
                driver.status()  # the driver sends it again after its ACK timeout
                assert (round_trips.count, driver.stats.retries) == (2, 1)
                driver.status()
        finally:
            driver.close()
    assert round_trips.count == 3
