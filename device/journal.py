"""The electronic journal: append-only JSON lines, fsynced at every step of the money path.
Card numbers are masked (first 6, last 4); a PIN or PIN block is refused outright.

Each line carries a CRC-32 that proves it is whole (format and reading rules in
device/durable_log.py and docs/durable-files.md). A write that fails or is short raises
JournalWriteError and the journal takes no more entries until `reopen`; a damaged line in the
middle of the file raises JournalCorrupt naming FILE:LINE; a torn last line is skipped and
truncated away on the next append.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.card_numbers import mask_card_numbers, mask_pan
from config.disk_calls import DiskCalls
from device.durable_log import (
    CRC_KEY,
    DurableLog,
    DurableLogCorrupt,
    DurableWriteError,
    TornTail,
)
from device.journal_events import JournalEvent, unknown_event_message

log = logging.getLogger(__name__)

RECENT_ENTRIES = 64  # kept in memory: a customer session writes about twenty
NewEntry = tuple[JournalEvent, Mapping[str, Any]]  # what record_many takes: event and fields

_FORBIDDEN_KEYS = frozenset({"pin", "pin_block", "new_pin", "new_pin_block", "track1", "track2"})


class JournalError(ValueError):
    """A journal entry would hold a secret, or the journal file is unreadable."""


#: An entry did not reach the disk whole (short write, full disk, I/O error, read-only folder).
JournalWriteError = DurableWriteError


class JournalCorrupt(DurableLogCorrupt, JournalError):
    """A damaged journal line with whole lines after it; the message names FILE:LINE."""


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return mask_card_numbers(value)
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


def _is_journal_line(record: dict[str, Any]) -> bool:
    """A line written before checksums: a plain JSON entry with its seq, time and event."""
    return (
        isinstance(record.get("seq"), int)
        and isinstance(record.get("at"), str)
        and isinstance(record.get("event"), str)
    )


def _entry(record: dict[str, Any]) -> JournalEntry:
    """The entry of a freshly read record (the record becomes its fields)."""
    seq, at, event = record.pop("seq"), record.pop("at"), record.pop("event")
    return JournalEntry(seq, at, event, record)


class Journal:
    """Appends entries; each write reaches the disk before `record` returns, or raises."""

    def __init__(self, path: Path, clock_now: Any = None, *, disk: DiskCalls | None = None) -> None:
        self.path = path
        self._now = clock_now or (lambda: dt.datetime.now(dt.UTC))
        self._lock = threading.Lock()
        self._log = DurableLog(path, legacy=_is_journal_line, corrupt=JournalCorrupt, disk=disk)
        self._log.create()
        self._seq = self._last_seq()
        # The last entries this object wrote (on disk, as read back): tail() and entries_since()
        # answer from them instead of reading the whole file, which grows with every session.
        self._recent: deque[JournalEntry] = deque(maxlen=RECENT_ENTRIES)
        # Called with the entries of each write once they are on disk, in the writing thread
        # (scenario triggers, crash points); an exception raised by one reaches the caller.
        self.listeners: list[Callable[[list[JournalEntry]], None]] = []

    def _last_seq(self) -> int:
        scan = self._log.scan()
        if scan.torn is not None:
            log.warning("%s", scan.torn.describe(self.path))
        return max((int(record["seq"]) for record in scan.records), default=0)

    @property
    def write_error(self) -> JournalWriteError | None:
        """The failure that stopped the journal, until `reopen`."""
        return self._log.failure

    @property
    def torn_tail(self) -> TornTail | None:
        """The cut last line the file holds now, if any (skipped by `entries`)."""
        return self._log.scan().torn

    def record(self, event: JournalEvent, **fields: Any) -> JournalEntry:
        return self.record_many([(event, fields)])[0]

    def record_many(self, events: Iterable[NewEntry]) -> list[JournalEntry]:
        """Several entries in one write and one fsync: all reach the disk, or none is taken.
        An event name outside JournalEvent is refused before anything is written."""
        cleaned = [(_known(event), self._cleaned(dict(fields))) for event, fields in events]
        with self._lock:
            now = self._now().isoformat()
            entries = [
                JournalEntry(self._seq + offset, now, event, clean)
                for offset, (event, clean) in enumerate(cleaned, start=1)
            ]
            self._log.append(
                {**e.fields, "seq": e.seq, "at": e.at, "event": e.event} for e in entries
            )
            self._seq += len(entries)
            self._recent.extend(entries)
        for listener in self.listeners:
            listener(entries)
        return entries

    @staticmethod
    def _cleaned(fields: dict[str, Any]) -> dict[str, Any]:
        forbidden = _FORBIDDEN_KEYS.intersection(fields)
        if forbidden:
            raise JournalError(f"journal refuses secret field {sorted(forbidden)[0]!r}")
        if CRC_KEY in fields:
            raise JournalError(f"journal field name {CRC_KEY!r} is reserved for the checksum")
        if "pan" in fields and fields["pan"] is not None:
            fields["pan"] = mask_pan(str(fields["pan"]))
        clean: dict[str, Any] = _clean(fields)
        return clean

    def entries(self) -> Iterator[JournalEntry]:
        """Every whole entry; a torn last line (power cut mid-write) is skipped, damage raises."""
        for record in self._log.scan().records:
            yield _entry(record)

    @property
    def last_seq(self) -> int:
        """The number of the last entry on disk (0: none)."""
        with self._lock:
            return self._seq

    def entries_since(self, seq: int) -> list[JournalEntry]:
        """The entries after number `seq`, in order: from memory when this object wrote them
        all, else from the file."""
        with self._lock:
            if seq >= self._seq:
                return []
            if self._recent and self._recent[0].seq <= seq + 1:
                return [e for e in self._recent if e.seq > seq]
        return [e for e in self.entries() if e.seq > seq]

    def tail(self, count: int) -> list[JournalEntry]:
        with self._lock:
            if 0 < count <= len(self._recent):
                return list(self._recent)[-count:]
        return list(self.entries())[-count:]

    def reopen(self) -> None:
        """After the disk is fixed: take entries again, cutting whatever was not written whole."""
        with self._lock:
            self._log.reopen()
            self._seq = self._last_seq()
            self._recent.clear()

    def close(self) -> None:
        with self._lock:
            self._log.close()


def _known(event: str) -> str:
    try:
        return JournalEvent(event).value
    except ValueError:
        raise JournalError(unknown_event_message(event)) from None
