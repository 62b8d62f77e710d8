"""The MAC keys the ISO 8583 server checks terminals' messages with: read from the key store and
kept for a few seconds per terminal, instead of read again for every message (a round trip each).

A message that fails its MAC check is checked again against the key read at once, so a key
changed in the bank is taken up by its first message; an old key is refused at the latest
`keep_seconds` after the change. A terminal the store lacks is never kept: it is asked again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

MacKeyLookup = Callable[[str], bytes | None]

KEEP_SECONDS = 5.0
MAX_KEPT = 100_000  # terminals; a store with more is read more often, never grown without bound


class MacKeys:
    def __init__(
        self,
        lookup: MacKeyLookup,
        *,
        keep_seconds: float = KEEP_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self.keep_seconds = keep_seconds
        self._clock = clock
        self._kept: dict[str, tuple[bytes, float]] = {}  # terminal id -> (key, read at)
        self._lock = threading.Lock()

    def key(self, terminal_id: str) -> bytes | None:
        """The terminal's key, as read at most `keep_seconds` ago; None for an unknown one."""
        with self._lock:
            kept = self._kept.get(terminal_id)
        if kept is not None and self._clock() - kept[1] < self.keep_seconds:
            return kept[0]
        return self.read(terminal_id)

    def read(self, terminal_id: str) -> bytes | None:
        """The terminal's key read from the store now (and kept from now on)."""
        read_at = self._clock()
        key = self._lookup(terminal_id)
        with self._lock:
            if key is None:
                self._kept.pop(terminal_id, None)
            else:
                if len(self._kept) >= MAX_KEPT:
                    self._kept.clear()
                self._kept[terminal_id] = (key, read_at)
        return key
