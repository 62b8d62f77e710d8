"""The base of every emulated device: bytes in from the driver, bytes out, timers and faults.

A subclass fills in `receive` (and `tick` for timers); the link runner moves the bytes.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from peripherals.faults import FaultSet

Clock = Callable[[], float]


class Emulator(ABC):
    """One emulated device. Subclasses set NAME and FAULTS and implement `receive`."""

    NAME: ClassVar[str]
    FAULTS: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.faults = FaultSet(self.NAME, self.FAULTS)
        self.lock = threading.RLock()
        self._transmit: Callable[[bytes], None] | None = None
        self._pending: list[bytes] = []

    def attach(self, transmit: Callable[[bytes], None]) -> None:
        """Connect the device's output to a link; bytes sent before this are held."""
        self._transmit = transmit
        pending, self._pending = self._pending, []
        for data in pending:
            transmit(data)

    def detach(self) -> None:
        self._transmit = None

    def send(self, data: bytes) -> None:
        """Put bytes on the wire towards the driver."""
        if not data:
            return
        if self._transmit is None:
            self._pending.append(data)
        else:
            self._transmit(data)

    @abstractmethod
    def receive(self, data: bytes) -> None:
        """Bytes arrived from the driver (any split: a frame may come in pieces)."""

    def tick(self, now: float) -> None:  # noqa: B027 - most devices have no timers
        """Called often by the link runner, so a device can act on timeouts."""

    def timer_running(self) -> bool:
        """Whether a timer of the device may fire soon without any byte on the link (the link
        runner then keeps ticking it often even while the line is quiet)."""
        return False

    def holds_partial_frame(self) -> bool:
        """Whether bytes of an unfinished frame wait for the rest, which the device gives up
        after its inter-byte timeout (the link runner then ticks it often until then)."""
        return False

    def waiting_on_link(self) -> bool:
        """Whether the device has sent a reply still unacknowledged, which it sends again after
        a link timeout of its own (in real time: bytes cross the link in real time)."""
        return False

    def status(self) -> dict[str, Any]:
        """A snapshot for operator panels and tests."""
        return {"device": self.NAME, "faults": [f.describe() for f in self.faults.active()]}
