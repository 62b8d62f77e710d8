"""`atm-sim devices serve` as its own process: port paths, a driver served, SIGINT stops it."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.drivers.card_reader import CardReaderDriver
from device.drivers.receipt_printer import ReceiptPrinterDriver
from peripherals.harness.profile import PROJECT_ROOT


def start_serve(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "device.sim.cli", "devices", "serve", "--config", str(config)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


class LineReader:
    """Lines of a child's stdout, each read with a deadline (no read blocks past it)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self.fd = process.stdout.fileno()
        self.buffer = b""

    def until(self, marker: str, seconds: float) -> list[str]:
        """Lines up to and including the first that starts with `marker`."""
        lines: list[str] = []
        deadline = time.monotonic() + seconds
        with selectors.DefaultSelector() as selector:
            selector.register(self.fd, selectors.EVENT_READ)
            while True:
                while b"\n" in self.buffer:
                    raw, self.buffer = self.buffer.split(b"\n", 1)
                    lines.append(raw.decode())
                    if lines[-1].startswith(marker):
                        return lines
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    break
                chunk = os.read(self.fd, 4096)
                if not chunk:
                    break
                self.buffer += chunk
        raise AssertionError(f"no line starting {marker!r} within {seconds} s; got {lines}")


@pytest.fixture
def served() -> Iterator[tuple[subprocess.Popen[bytes], LineReader]]:
    process = start_serve(Path("config/atm_profiles/default.yaml"))  # as run from the repo root
    try:
        yield process, LineReader(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def test_serve_prints_ports_serves_a_driver_and_stops_on_sigint(
    served: tuple[subprocess.Popen[bytes], LineReader],
) -> None:
    process, stdout = served
    lines = stdout.until("serving", 20)
    assert lines[-1] == "serving 4 devices of ATM00001; Ctrl-C to stop"
    ports = dict(line.split() for line in lines[:-1])
    assert list(ports) == ["card_reader", "pin_pad", "cash_dispenser", "receipt_printer"]
    assert all(port.startswith("/dev/pts/") for port in ports.values())
    with CardReaderDriver(ports["card_reader"], timeout=2.0) as reader:
        reader.initialise()
        assert reader.status().media == "none"
    with ReceiptPrinterDriver(ports["receipt_printer"], timeout=2.0) as printer:
        assert printer.status().paper == "adequate"
    process.send_signal(signal.SIGINT)
    assert stdout.until("stopping devices", 10) == ["stopping devices"]
    assert process.wait(10) == 0


def test_serve_refuses_a_bad_profile_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "version: 1\nterminal_id: ATM00001\ndevices: {toaster: {}}\n", encoding="utf-8"
    )
    process = start_serve(config)
    try:
        _, raw = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2
    assert raw.decode().strip().splitlines() == [
        f"atm-sim: {config}:3: devices.toaster: unknown key; known: card_reader, cash_dispenser,"
        " pin_pad, receipt_printer"
    ]
