"""Fault injection for one device or link: which faults are armed, and when they fire.

A fault is one-shot (fires once), persistent (fires until cleared) or triggered on the Nth command;
its parameters are checked against peripherals.fault_catalogue before it is armed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from peripherals.fault_catalogue import (
    FaultParam,
    catalogue_kind,
    fault_params,
    missing_params,
    param_problem,
)


class FaultError(ValueError):
    """An unknown fault name or bad fault parameters."""


class FaultMode(StrEnum):
    ONCE = "once"
    PERSISTENT = "persistent"
    ON_COMMAND = "on_command"


@dataclass
class Fault:
    name: str
    mode: FaultMode = FaultMode.PERSISTENT
    on_command: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        extra = f" on command {self.on_command}" if self.mode is FaultMode.ON_COMMAND else ""
        args = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.name} ({self.mode.value}{extra}{'; ' + args if args else ''})"


Accepted = Mapping[str, Mapping[str, FaultParam]]


class FaultSet:
    """The armed faults of one target. Thread-safe: the operator arms, the device consults.

    `accepted` gives each fault's parameters; by default the catalogue's entry for the target
    ("pin_pad", or the links' for "pin_pad.link"). A fault it does not list takes none.
    """

    def __init__(
        self, target: str, known: frozenset[str], accepted: Accepted | None = None
    ) -> None:
        self.target = target
        self.known = known
        self.accepted: Accepted = (
            accepted if accepted is not None else fault_params(catalogue_kind(target)) or {}
        )
        self._armed: dict[str, Fault] = {}
        self._commands_seen = 0
        self._lock = threading.Lock()
        self._on_inject: list[Callable[[], None]] = []

    def watch(self, on_inject: Callable[[], None]) -> None:
        """Call `on_inject` after each fault armed (a link thread asleep must act on it)."""
        with self._lock:
            self._on_inject.append(on_inject)

    def unwatch(self, on_inject: Callable[[], None]) -> None:
        with self._lock:
            if on_inject in self._on_inject:
                self._on_inject.remove(on_inject)

    def inject(
        self,
        name: str,
        *,
        mode: str | FaultMode = FaultMode.PERSISTENT,
        on_command: int = 0,
        **params: Any,
    ) -> Fault:
        if name not in self.known:
            raise FaultError(
                f"{self.target}: unknown fault {name!r}; known: {', '.join(sorted(self.known))}"
            )
        try:
            fault_mode = FaultMode(mode)
        except ValueError:
            raise FaultError(
                f"{self.target}: fault mode {mode!r} is not one of "
                f"{', '.join(m.value for m in FaultMode)}"
            ) from None
        if fault_mode is FaultMode.ON_COMMAND and (
            isinstance(on_command, bool) or not isinstance(on_command, int) or on_command < 1
        ):
            raise FaultError(f"{self.target}: {name} on_command needs a command number >= 1")
        self.check_params(name, params)
        with self._lock:
            fault = Fault(name, fault_mode, self._commands_seen + on_command, dict(params))
            self._armed[name] = fault
            watchers = list(self._on_inject)
        for on_inject in watchers:
            on_inject()
        return fault

    def check_params(self, name: str, params: Mapping[str, Any]) -> None:
        """Refuse a parameter the fault does not take, or a value it cannot use: one line
        naming the fault and what it accepts (a misspelt `after_note` would otherwise be
        ignored and the fault fire with its default)."""
        accepted = self.accepted.get(name, {})
        for key, value in params.items():
            problem = param_problem(accepted, name, key, value)
            if problem is not None:
                raise FaultError(f"{self.target}: {problem}")
        missing = missing_params(accepted, name, params)
        if missing is not None:
            raise FaultError(f"{self.target}: {missing}")

    def clear(self, name: str | None = None) -> None:
        with self._lock:
            if name is None:
                self._armed.clear()
            else:
                self._armed.pop(name, None)

    # Every byte and every command asks whether a fault is armed, and almost always none is: the
    # questions below look at the dict without the lock first. A dict operation is atomic, so the
    # answer is the dict's at one instant; a fault armed just after it acts from the next question,
    # as it would had it been armed a moment later.

    def active(self) -> list[Fault]:
        if not self._armed:
            return []
        with self._lock:
            return list(self._armed.values())

    def command_seen(self) -> None:
        """Count one command received by the device, for faults triggered on the Nth command."""
        with self._lock:
            self._commands_seen += 1

    @property
    def commands_seen(self) -> int:
        return self._commands_seen

    def take(self, name: str) -> Fault | None:
        """The fault if it fires now; a one-shot or triggered fault is used up by firing."""
        if name not in self._armed:
            return None
        with self._lock:
            fault = self._armed.get(name)
            if fault is None:
                return None
            if fault.mode is FaultMode.ON_COMMAND:
                if self._commands_seen < fault.on_command:
                    return None
                del self._armed[name]
            elif fault.mode is FaultMode.ONCE:
                del self._armed[name]
            return fault

    def is_armed(self, name: str) -> bool:
        """Whether a fault is armed, without using it up."""
        return name in self._armed
