"""Store-and-forward advices (reversals and completions): queued durably, removed on host ack.
An advice is never lost across a restart: the queue is a fsynced file of checksummed JSON lines.

Line format and reading rules: device/durable_log.py. A failed or short write raises
DurableWriteError (the journal's JournalWriteError) and the queue takes no more changes.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from config.disk_calls import DiskCalls
from device.durable_log import DurableLog, DurableLogCorrupt, DurableWriteError

__all__ = ["Advice", "AdviceQueue", "AdviceQueueCorrupt", "DurableWriteError"]


class AdviceQueueCorrupt(DurableLogCorrupt):
    """A damaged advice line with whole lines after it; the message names FILE:LINE."""


@dataclass(frozen=True)
class Advice:
    kind: str  # "reversal" or "completion"
    original_stan: str
    transmitted_at: str  # of the original request, ISO 8601
    amount: int  # cents authorised by the original
    dispensed_amount: int  # cents actually handed out (0 for a full reversal)
    reason: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.original_stan}"


def _is_advice_line(record: dict[str, Any]) -> bool:
    """A line written before checksums: a plain JSON add or ack."""
    return record.get("op") in ("add", "ack")


class AdviceQueue:
    """Pending advices in the order they were queued, persisted at every change."""

    def __init__(self, path: Path, *, disk: DiskCalls | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._log = DurableLog(
            path, legacy=_is_advice_line, corrupt=AdviceQueueCorrupt, disk=disk, keep_open=False
        )
        self._pending: dict[str, Advice] = {}
        self._replay()

    def _replay(self) -> None:
        # a torn last line belongs to a write that never returned: its change never happened
        for record in self._log.scan().records:
            if record.get("op") == "add":
                advice = Advice(**record["advice"])
                self._pending[advice.key] = advice
            elif record.get("op") == "ack":
                self._pending.pop(record["key"], None)

    def _append(self, record: dict[str, object]) -> None:
        self._log.append([record])

    def add(self, advice: Advice) -> None:
        with self._lock:
            if advice.key in self._pending:
                return
            self._append({"op": "add", "advice": asdict(advice)})
            self._pending[advice.key] = advice

    def acknowledge(self, key: str) -> None:
        with self._lock:
            if key not in self._pending:
                return
            self._append({"op": "ack", "key": key})
            del self._pending[key]

    def pending(self) -> list[Advice]:
        with self._lock:
            return list(self._pending.values())
