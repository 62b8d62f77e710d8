"""`atm-sim devices serve`: the emulated devices of an ATM profile on their links, in this process.

Prints one line per device ("card_reader /dev/pts/5"), then serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from config.data_files import DataFileError
from peripherals.harness.bay import BayError, DeviceBay

log = logging.getLogger(__name__)


def serve_devices(config: Path, *, stop: threading.Event | None = None) -> int:
    """Run the bay until interrupted (or `stop` is set); 0 on a clean stop, 2 on a bad profile."""
    try:
        bay = DeviceBay.from_profile(config)
    except (DataFileError, BayError) as err:
        print(f"atm-sim: {err}", file=sys.stderr)
        return 2
    stop = stop or threading.Event()
    previous: dict[signal.Signals, Any] = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    on_main_thread = threading.current_thread() is threading.main_thread()
    if on_main_thread:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        try:
            bay.start()
        except BayError as err:
            print(f"atm-sim: {err}", file=sys.stderr)
            return 1
        terminal = f" of {bay.terminal_id}" if bay.terminal_id else ""
        width = max(len(name) for name in bay.names)
        for name in bay.names:
            print(f"{name:<{width}}  {bay.url(name)}", flush=True)
        print(f"serving {len(bay.names)} devices{terminal}; Ctrl-C to stop", flush=True)
        while not stop.wait(0.5):
            pass
        print("stopping devices", flush=True)
        return 0
    finally:
        bay.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
