"""The ATM's clock: every timeout reads it, so a scenario can jump 120 seconds in a microsecond.

SystemClock follows the machine; VirtualClock only moves when told to.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences matter."""
        ...

    def now(self) -> dt.datetime:
        """The wall-clock time, timezone-aware."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class VirtualClock:
    """A clock that stands still until `advance` moves it."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._start = start or dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
        self._elapsed = 0.0
        self._lock = threading.Lock()

    # Reads take no lock: `_elapsed` is one float, replaced whole by `advance` (which locks so
    # that two advances add up), and every device tick and controller step reads it.
    def monotonic(self) -> float:
        return self._elapsed

    def now(self) -> dt.datetime:
        return self._start + dt.timedelta(seconds=self._elapsed)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot go back")
        with self._lock:
            self._elapsed += seconds
