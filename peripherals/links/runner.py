"""A thread that joins an emulator to an endpoint, applying link faults on the way both ways.

Link faults: drop, delay, corrupt a byte, split a frame, disconnect (until cleared or reconnect).
"""

from __future__ import annotations

import logging
import threading
import time

from peripherals.emulator import Emulator
from peripherals.faults import FaultSet
from peripherals.links.endpoint import Endpoint, LinkClosed

log = logging.getLogger(__name__)

LINK_FAULTS = frozenset({"drop", "delay", "corrupt", "split", "disconnect"})


class LinkRunner:
    """Moves bytes between one emulator and one endpoint in a daemon thread."""

    POLL_SECONDS = 0.01

    def __init__(self, emulator: Emulator, endpoint: Endpoint) -> None:
        self.emulator = emulator
        self.endpoint = endpoint
        self.faults = FaultSet(f"{emulator.NAME}.link", LINK_FAULTS)
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"link-{emulator.NAME}", daemon=True)

    @property
    def url(self) -> str:
        return self.endpoint.url

    def start(self) -> LinkRunner:
        self.emulator.attach(self._to_driver)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self.emulator.detach()
        self.endpoint.close()

    def __enter__(self) -> LinkRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _apply(self, data: bytes) -> list[bytes]:
        """What of `data` crosses the link now, as the pieces written (empty if lost)."""
        if self.faults.is_armed("disconnect"):
            return []
        if self.faults.take("drop") is not None:
            return []
        delay = self.faults.take("delay")
        if delay is not None:
            time.sleep(float(delay.params.get("seconds", 0.3)))
        corrupt = self.faults.take("corrupt")
        if corrupt is not None and data:
            index = min(int(corrupt.params.get("index", len(data) // 2)), len(data) - 1)
            data = data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]
        split = self.faults.take("split")
        if split is not None and len(data) > 1:
            at = min(max(int(split.params.get("at", len(data) // 2)), 1), len(data) - 1)
            return [data[:at], data[at:]]
        return [data]

    def _to_driver(self, data: bytes) -> None:
        pieces = self._apply(data)
        with self._write_lock:
            for i, piece in enumerate(pieces):
                if i:
                    time.sleep(0.05)  # a split frame arrives in two reads
                try:
                    self.endpoint.write(piece)
                except LinkClosed:
                    log.warning("%s: link closed while sending %d bytes", self.url, len(piece))
                    return

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.endpoint.read(self.POLL_SECONDS)
            except LinkClosed:
                if self._stop.is_set():
                    return
                log.warning("%s: link closed", self.url)
                return
            if data:
                for piece in self._apply(data):
                    with self.emulator.lock:
                        try:
                            self.emulator.receive(piece)
                        except Exception:  # a device bug must not kill the link thread
                            log.exception("%s: emulator failed on input", self.emulator.NAME)
            with self.emulator.lock:
                try:
                    self.emulator.tick(self.emulator.clock())
                except Exception:
                    log.exception("%s: emulator timer failed", self.emulator.NAME)
