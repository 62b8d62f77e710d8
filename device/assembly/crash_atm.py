"""The ATM process of the crash explorer: `atm-sim` itself, with every journal append reported
as a crash boundary (`python -m device.assembly.crash_atm atm run ...`).
"""

from __future__ import annotations

import sys
from typing import Any

from device import crash_points
from device.journal import Journal, JournalEntry


def _journal_boundary(entries: list[JournalEntry]) -> None:
    """One boundary per durable append; entries written together in one fsync are one."""
    if crash_points.active and entries:
        crash_points.reached("journal:" + "+".join(entry.event for entry in entries))


def hook_journals() -> None:
    """Every Journal made in this process reports each durable append as a crash boundary:
    through its `listeners` where the journal has them, else by wrapping its writing method."""
    original_init = Journal.__init__

    def init(self: Journal, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        listeners = getattr(self, "listeners", None)
        if isinstance(listeners, list):
            listeners.append(lambda entry: _journal_boundary([entry]))
            return
        if hasattr(self, "record_many"):  # `record` writes through it: one hook sees both
            write_many = self.record_many

            def recorded_many(events: Any) -> list[JournalEntry]:
                entries = write_many(events)
                _journal_boundary(entries)
                return entries

            setattr(self, "record_many", recorded_many)  # noqa: B010 - over the method
            return
        record = self.record

        def recorded(event: str, **fields: Any) -> JournalEntry:
            entry = record(event, **fields)
            _journal_boundary([entry])
            return entry

        setattr(self, "record", recorded)  # noqa: B010 - an instance attribute over the method

    setattr(Journal, "__init__", init)  # noqa: B010


if __name__ == "__main__":
    from device.assembly.cli import main

    hook_journals()
    sys.exit(main(sys.argv[1:]))
