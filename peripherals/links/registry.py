"""The one registry of live harness resources (endpoints, in-process ports, link runners).

Every endpoint and runner adds itself when opened and removes itself when closed, so a leak check
can name what a test left open; in-process (sim://) ports are looked up here by name.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LiveEntry:
    kind: str  # "endpoint", "port" or "runner"
    name: str  # the URL, or the device name
    resource: Any
    thread: threading.Thread | None = None

    def describe(self) -> str:
        extra = (
            f" (thread {self.thread.name} alive)" if self.thread and self.thread.is_alive() else ""
        )
        return f"{self.kind} {self.name}{extra}"


class LiveRegistry:
    """Live resources by identity; thread-safe."""

    def __init__(self) -> None:
        self._entries: dict[int, LiveEntry] = {}
        self._lock = threading.Lock()

    def add(
        self, kind: str, name: str, resource: object, thread: threading.Thread | None = None
    ) -> None:
        with self._lock:
            self._entries[id(resource)] = LiveEntry(kind, name, resource, thread)

    def add_unique(self, kind: str, name: str, resource: object) -> bool:
        """Add unless a live resource of that kind already has that name."""
        with self._lock:
            if any(e.kind == kind and e.name == name for e in self._entries.values()):
                return False
            self._entries[id(resource)] = LiveEntry(kind, name, resource)
            return True

    def remove(self, resource: object) -> None:
        with self._lock:
            self._entries.pop(id(resource), None)

    def entries(self, kind: str | None = None) -> list[LiveEntry]:
        with self._lock:
            return [e for e in self._entries.values() if kind is None or e.kind == kind]

    def find(self, kind: str, name: str) -> Any | None:
        """The live resource of that kind and name, if any."""
        for entry in self.entries(kind):
            if entry.name == name:
                return entry.resource
        return None

    def __iter__(self) -> Iterator[LiveEntry]:
        return iter(self.entries())


LIVE = LiveRegistry()

# Threads the harness starts carry this prefix, so a leak check can find them by name.
THREAD_PREFIX = "atm-sim-"


def harness_threads() -> list[threading.Thread]:
    """Harness threads still running."""
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX) and t.is_alive()]
