"""The in-process link: an emulator and a driver in one process, joined by `sim://NAME`.

No OS link at all; the driver's side is the pyserial URL handler in protocol_sim.py.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

import serial

from peripherals.links.endpoint import LinkClosed, LinkInUse
from peripherals.links.registry import LIVE

SCHEME = "sim"
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_HANDLER_PACKAGE = "peripherals.links"


def register_url_handler() -> None:
    """Let serial.serial_for_url open sim:// URLs (idempotent; done when an endpoint opens)."""
    if _HANDLER_PACKAGE not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(_HANDLER_PACKAGE)


def sim_url(name: str) -> str:
    return f"{SCHEME}://{name}"


class SimEndpoint:
    """Two in-memory byte queues; like a pty, bytes sent before a driver opens the port wait."""

    BUFFER_LIMIT = 1 << 20  # a driver that never reads must not grow memory without bound

    def __init__(self, name: str, *, inline: bool = False) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"sim link name {name!r}: use 1-64 letters, digits, '_', '.', '-'")
        register_url_handler()
        self.name = name
        self.url = sim_url(name)
        # Inline: the link runner may pass bytes in the driver's thread (LinkRunner.start).
        self.inline = inline
        self._lock = threading.Lock()
        # Each side waits on its own condition: bytes for one side do not wake the other.
        self._for_emulator = threading.Condition(self._lock)
        self._for_driver = threading.Condition(self._lock)
        self._to_emulator = bytearray()
        self._to_driver = bytearray()
        self._driver: object | None = None
        self._interrupted = False
        self._closed = False
        self._after_driver_write: Callable[[], bool] | None = None
        if not LIVE.add_unique("endpoint", self.url, self):
            raise LinkInUse(f"{self.url} is already served by another emulator")

    # the emulator's side (the Endpoint protocol)

    def wait(self, timeout: float) -> bool:
        with self._lock:
            self._for_emulator.wait_for(
                lambda: self._to_emulator or self._closed or self._interrupted, timeout
            )
            self._interrupted = False
            if self._closed:
                raise LinkClosed(self.url)
            return bool(self._to_emulator)

    def interrupt(self) -> None:
        with self._lock:
            self._interrupted = True
            self._for_emulator.notify_all()

    def read(self, timeout: float) -> bytes:
        with self._lock:
            if timeout > 0:  # a link pass reads with 0: take what is there, no waiting
                self._for_emulator.wait_for(lambda: self._to_emulator or self._closed, timeout)
            if self._closed:
                raise LinkClosed(self.url)
            data = bytes(self._to_emulator)
            self._to_emulator.clear()
            return data

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._closed:
                raise LinkClosed(self.url)
            if len(self._to_driver) + len(data) > self.BUFFER_LIMIT:
                raise LinkClosed(f"{self.url}: driver is not reading (buffer full)")
            self._to_driver += data
            self._for_driver.notify_all()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._for_emulator.notify_all()
            self._for_driver.notify_all()
        LIVE.remove(self)

    @property
    def connected(self) -> bool:
        return self._driver is not None

    # the driver's side (used by the sim:// port)

    def connect(self, port: object) -> None:
        with self._lock:
            if self._closed:
                raise LinkClosed(f"{self.url}: the device end of the link is closed")
            if self._driver is not None and self._driver is not port:
                raise LinkInUse(f"{self.url} is already open by another driver")
            self._driver = port

    def disconnect(self, port: object) -> None:
        with self._lock:
            if self._driver is port:
                self._driver = None

    def driver_read(self, size: int, timeout: float | None) -> bytes:
        """Up to `size` bytes, waiting at most `timeout` seconds (None: until some arrive)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._to_driver:
                if self._closed:
                    raise LinkClosed(f"{self.url}: the device end of the link is closed")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return b""
                self._for_driver.wait(remaining)
            data = bytes(self._to_driver[:size])
            del self._to_driver[:size]
            return data

    def after_driver_write(self, link_pass: Callable[[], bool]) -> None:
        """Run `link_pass` in the driver's thread after each of its writes (the link runner's
        pass_in_caller), so that a command need not wait for the emulator's thread; the
        emulator's side is woken only when the pass did not run (it returned False)."""
        self._after_driver_write = link_pass

    def driver_write(self, data: bytes) -> None:
        link_pass = self._after_driver_write
        with self._lock:
            if self._closed:
                raise LinkClosed(f"{self.url}: the device end of the link is closed")
            self._to_emulator += data
            if link_pass is None:
                self._for_emulator.notify_all()
        if link_pass is not None and not link_pass():
            with self._lock:
                self._for_emulator.notify_all()

    def driver_waiting(self) -> int:
        with self._lock:
            if self._closed and not self._to_driver:
                raise LinkClosed(f"{self.url}: the device end of the link is closed")
            return len(self._to_driver)

    def driver_reset_input(self) -> None:
        with self._lock:
            self._to_driver.clear()
