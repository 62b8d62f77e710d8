"""The job queue the bank's routes hand long work to (statement PDFs): what a job reports and
what a queue offers, so an in-process pool or a worker process can stand behind it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class JobOutcome:
    """What finished work hands back: a JSON-able result and the files it made, by name."""

    result: Mapping[str, Any] = field(default_factory=dict)
    files: Mapping[str, Path] = field(default_factory=dict)


class JobFailed(Exception):
    """Work that ends with a message for the person who asked (not a traceback)."""


@dataclass(frozen=True)
class JobInfo:
    id: str
    kind: str
    status: str  # queued, running, succeeded, failed
    submitted_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    result: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    files: tuple[str, ...] = ()


Work = Callable[[], JobOutcome]


class JobQueue(Protocol):
    def submit(self, kind: str, work: Work, args: Mapping[str, Any] | None = None) -> JobInfo:
        """Queue the work and return at once. `args` are the work's JSON-able arguments: a
        queue whose workers run in other processes sends `kind` and `args` instead of `work`."""
        ...

    def get(self, job_id: str) -> JobInfo | None: ...

    def file(self, job_id: str, name: str) -> Path | None:
        """The path of a file a finished job made, or None."""
        ...
