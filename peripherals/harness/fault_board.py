"""One fault-injection interface over every device and link of a bay.

Targets are device names ("pin_pad") and their links ("pin_pad.link"); faults are each target's own.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from peripherals.faults import FaultError, FaultSet

Clearer = Callable[[str | None], None]


class UnknownTarget(FaultError, LookupError):
    """A fault target that is not a device or link of this bay."""


@dataclass(frozen=True)
class ArmedFault:
    """One armed fault: where, which, and how it is armed ("jam (once; after_notes=2)")."""

    target: str
    fault: str
    description: str

    def __str__(self) -> str:
        return f"{self.target}: {self.description}"


class FaultBoard:
    """inject / clear / list over named FaultSets."""

    def __init__(self) -> None:
        self._targets: dict[str, FaultSet] = {}
        self._clearers: dict[str, Clearer] = {}

    def add(self, target: str, faults: FaultSet, clear: Clearer | None = None) -> None:
        """Add a target; `clear` (if given) also resets state a device latched from a fault."""
        self._targets[target] = faults
        self._clearers[target] = clear if clear is not None else faults.clear

    def targets(self) -> builtins.list[str]:
        return sorted(self._targets)

    def known(self, target: str) -> builtins.list[str]:
        """The fault names `target` knows."""
        return sorted(self._set(target).known)

    def _set(self, target: str) -> FaultSet:
        try:
            return self._targets[target]
        except KeyError:
            raise UnknownTarget(
                f"unknown fault target {target!r}; valid targets: {', '.join(self.targets())}"
            ) from None

    def inject(self, target: str, fault: str, **params: Any) -> str:
        """Arm `fault` on `target`; `mode` (once, persistent, on_command) and `on_command` (N)
        choose when it fires, other params go to the fault. Returns its description."""
        return self._set(target).inject(fault, **params).describe()

    def clear(self, target: str | None = None, fault: str | None = None) -> None:
        """Clear one fault, every fault of a target, a fault on every target, or everything."""
        names = [target] if target is not None else self.targets()
        sets = [(name, self._set(name)) for name in names]
        if fault is not None:
            if not any(fault in faults.known for _, faults in sets):
                where = target if target is not None else "any target"
                known = sorted({f for _, s in sets for f in s.known})
                raise FaultError(f"{where}: unknown fault {fault!r}; known: {', '.join(known)}")
            sets = [(name, faults) for name, faults in sets if fault in faults.known]
        for name, _ in sets:
            self._clearers[name](fault)

    def armed(self) -> builtins.list[ArmedFault]:
        """Every armed fault, sorted by target then name."""
        return [
            ArmedFault(target, fault.name, fault.describe())
            for target in self.targets()
            for fault in sorted(self._targets[target].active(), key=lambda f: f.name)
        ]
