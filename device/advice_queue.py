"""Store-and-forward advices (reversals and completions): queued durably, removed on host ack.

An advice is never lost across a restart: the queue is a fsynced JSON-lines file.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path


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


class AdviceQueue:
    """Pending advices in the order they were queued, persisted at every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._pending: dict[str, Advice] = {}
        self._replay()

    def _replay(self) -> None:
        if not self.path.exists():
            return
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line: the write it belongs to never returned
            if record.get("op") == "add":
                advice = Advice(**record["advice"])
                self._pending[advice.key] = advice
            elif record.get("op") == "ack":
                self._pending.pop(record["key"], None)

    def _append(self, record: dict[str, object]) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

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

    def forward(self, send: Callable[[Advice], bool]) -> int:
        """Send each pending advice; `send` returns True when the host acknowledged it.

        Stops at the first failure, so advices reach the host in order. Returns how many left.
        """
        for advice in self.pending():
            if not send(advice):
                break
            self.acknowledge(advice.key)
        return len(self.pending())
