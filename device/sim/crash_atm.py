"""The ATM process of the crash explorer: `atm-sim` itself, with every journal append reported
as a crash boundary (`python -m device.sim.crash_atm atm run ...`).
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
    """Every Journal made in this process reports each durable append as a crash boundary."""
    original_init = Journal.__init__

    def init(self: Journal, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.listeners.append(_journal_boundary)

    setattr(Journal, "__init__", init)  # noqa: B010


if __name__ == "__main__":
    from device.sim.cli import main

    hook_journals()
    sys.exit(main(sys.argv[1:]))
