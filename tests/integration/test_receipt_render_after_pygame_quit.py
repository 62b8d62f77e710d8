"""Receipt PNGs still render after something in the process has called pygame.quit().

Fonts made before the quit are dangling afterwards (a kiosk closing, say); printers go on.
"""

from __future__ import annotations

from peripherals.receipt_render import PrintedLine, render_png


def test_receipts_render_again_after_pygame_quit() -> None:
    import pygame

    first = render_png([PrintedLine("BEFORE QUIT")])
    pygame.quit()
    second = render_png([PrintedLine("AFTER QUIT")])
    assert first.startswith(b"\x89PNG") and second.startswith(b"\x89PNG")
