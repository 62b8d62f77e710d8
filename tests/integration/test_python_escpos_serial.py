"""python-escpos's own Serial class straight onto the emulated receipt printer over a pty.

A pty only: Serial opens a device path with plain pyserial, not a socket:// or sim:// URL.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PIL import Image

from peripherals.receipt_printer import Receipt, ReceiptPrinterEmulator
from peripherals.receipt_render import PrintedImage, PrintedLine


def wait_for_receipts(printer: ReceiptPrinterEmulator, count: int) -> list[Receipt]:
    # Serial writes and returns; nothing tells it when the printer has read the last byte.
    deadline = time.monotonic() + 5.0
    while len(printer.receipts) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return printer.receipts


def test_python_escpos_serial_over_a_pty(make_device_bay: Any, tmp_path: Path) -> None:
    import pygame
    from escpos.printer import Serial

    printer = ReceiptPrinterEmulator.from_config(
        {"paper_length_lines": 2000, "near_end_lines": 100}, state_dir=tmp_path / "receipts"
    )
    bay = make_device_bay(emulators={"receipt_printer": printer}, backend="pty")
    esc = Serial(devfile=bay.url("receipt_printer"), timeout=0.2)
    esc.open()
    try:
        esc.hw("INIT")
        esc.set(bold=True)
        esc.textln("BOLD")
        esc.set(bold=False, double_width=True, double_height=True)
        esc.textln("BIG")
        esc.set(normal_textsize=True, align="right")
        esc.textln("right")
        esc.set(align="left")
        esc.barcode("12345", "CODE39", pos="BELOW", align_ct=False)
        esc.ln()
        esc.qr("https://bank.example/q", native=True)
        esc.qr("picture")  # python-escpos draws this one itself and sends it as an image
        esc.image(Image.new("1", (64, 32), 0))
        esc.image(Image.new("1", (64, 16), 0), impl="graphics")
        esc.image(Image.new("1", (32, 24), 0), impl="bitImageColumn")
        esc.cut()
        assert esc.is_online() is True
        assert esc.paper_status() == 2
    finally:
        esc.close()
    (receipt,) = wait_for_receipts(printer, 1)
    lines = receipt.text.splitlines()
    assert lines[:3] == ["BOLD", "BIG", " " * 37 + "right"]
    assert "[barcode CODE39 12345]" in lines
    assert "[QR https://bank.example/q]" in lines
    assert "[image 64x32]" in lines and "[image 64x16]" in lines and "[image 32x24]" in lines
    bold, big = receipt.elements[:2]
    assert bold == PrintedLine("BOLD", bold=True)
    assert big == PrintedLine("BIG", width=2, height=2)
    images = [e for e in receipt.elements if isinstance(e, PrintedImage)]
    image = next(e for e in images if (e.width_bytes, e.height) == (8, 32))
    assert image.data == b"\xff" * 8 * 32  # black pixels arrive as set bits
    assert printer.unknown_commands == 0
    assert isinstance(receipt.png, Path) and receipt.png.parent == tmp_path / "receipts"
    data = receipt.png_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) < 200_000
    assert pygame.image.load(str(receipt.png)).get_size()[0] == 520
    assert pygame.image.load(str(receipt.png)).get_size()[1] > 300
