"""The electronic journal: append-only JSON lines, fsynced at every step of the money path.

Card numbers are masked (first 6, last 4); a PIN or PIN block is refused outright.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.iso8583 import mask_pan as mask_pan  # one masking rule for host and ATM

_CARD_NUMBER = re.compile(r"\d{13,19}")
_FORBIDDEN_KEYS = frozenset({"pin", "pin_block", "new_pin", "new_pin_block", "track1", "track2"})


class JournalError(ValueError):
    """A journal entry would hold a secret, or the journal file is unreadable."""


def _mask_text(text: str) -> str:
    return _CARD_NUMBER.sub(lambda m: mask_pan(m.group(0)), text)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _mask_text(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    at: str
    event: str
    fields: dict[str, Any]


class Journal:
    """Appends entries; each write reaches the disk before `record` returns."""

    def __init__(self, path: Path, clock_now: Any = None) -> None:
        self.path = path
        self._now = clock_now or (lambda: dt.datetime.now(dt.UTC))
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._seq = sum(1 for _ in self.entries())
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def record(self, event: str, **fields: Any) -> JournalEntry:
        forbidden = _FORBIDDEN_KEYS.intersection(fields)
        if forbidden:
            raise JournalError(f"journal refuses secret field {sorted(forbidden)[0]!r}")
        if "pan" in fields and fields["pan"] is not None:
            fields["pan"] = mask_pan(str(fields["pan"]))
        clean = _clean(fields)
        with self._lock:
            self._seq += 1
            entry = JournalEntry(self._seq, self._now().isoformat(), event, clean)
            line = json.dumps(
                {"seq": entry.seq, "at": entry.at, "event": event, **clean}, sort_keys=True
            )
            os.write(self._fd, (line + "\n").encode())
            os.fsync(self._fd)
        return entry

    def entries(self) -> Iterator[JournalEntry]:
        """Every complete entry; a torn last line (power cut mid-write) is skipped."""
        try:
            handle = self.path.open(encoding="utf-8")
        except FileNotFoundError:
            return
        with handle:
            for line in handle:
                if not line.endswith("\n"):
                    return
                try:
                    data = json.loads(line)
                except json.JSONDecodeError:
                    continue
                seq, at, event = data.pop("seq"), data.pop("at"), data.pop("event")
                yield JournalEntry(seq, at, event, data)

    def tail(self, count: int) -> list[JournalEntry]:
        return list(self.entries())[-count:]

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
