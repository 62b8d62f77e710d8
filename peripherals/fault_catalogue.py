"""Every fault each emulated device and link knows, and the parameters each fault accepts.

One table for all: FaultSet.inject and the scenario loader both refuse a parameter not listed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from peripherals.cards import TrackDamage
from peripherals.wire.pin_pad import FUNCTION_KEYS

LINK = "link"  # the catalogue's name for every device's link ("pin_pad.link")
PIN_PAD_KEYS = (*"0123456789", "enter", "cancel", "clear", "backspace", *FUNCTION_KEYS)


@dataclass(frozen=True)
class FaultParam:
    """One parameter of a fault: its type (int, float or str), default, bounds and meaning."""

    kind: type
    default: int | float | str | None
    meaning: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    required: bool = False

    def shape(self) -> str:
        """What the parameter takes, as a person reads it."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        noun = (
            "a whole number" if self.kind is int else "a number" if self.kind is float else "text"
        )
        if self.low is not None and self.high is not None:
            return f"{noun} from {self.low:g} to {self.high:g}"
        if self.low is not None:
            return f"{noun} >= {self.low:g}"
        return noun

    def problem(self, value: Any) -> str | None:
        """Why `value` does not fit, or None if it does."""
        if self.kind is int:
            fits = isinstance(value, int) and not isinstance(value, bool)
        elif self.kind is float:
            fits = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            fits = isinstance(value, str)
        if fits and self.choices:
            fits = value in self.choices
        if fits and self.low is not None:
            fits = value >= self.low
        if fits and self.high is not None:
            fits = value <= self.high
        return None if fits else f"expects {self.shape()}, not {value!r}"


CASSETTE = FaultParam(int, 1, "the cassette (1..4)", low=1, high=4)

FAULT_CATALOGUE: Mapping[str, Mapping[str, Mapping[str, FaultParam]]] = {
    "card_reader": {
        "unreadable_track": {
            "track": FaultParam(int, 2, "the track whose next read fails", low=1, high=3),
            "damage": FaultParam(
                str, "parity", "how it fails", choices=tuple(d.value for d in TrackDamage)
            ),
        },
        "jam": {},
        "card_too_short": {},
        "card_too_long": {},
        "retain_bin_full": {},
        "card_pulled_out": {},
        "power_down": {},
    },
    "pin_pad": {
        "tamper": {},
        "key_stuck": {
            "key": FaultParam(
                str,
                None,
                "the key whose presses are never seen",
                choices=PIN_PAD_KEYS,
                required=True,
            )
        },
        "unresponsive": {},
    },
    "cash_dispenser": {
        "jam": {
            "after_notes": FaultParam(
                int, 0, "notes that reach the stacker before the next one sticks", low=0
            )
        },
        "double_pick": {
            "count": FaultParam(int, 1, "double picks, each sent to the reject bin", low=1),
            "cassette": FaultParam(int, None, "only on this cassette (any if left out)", 1, 4),
        },
        "cassette_missing": {"cassette": CASSETTE},
        "cassette_empty": {"cassette": CASSETTE},
        "shutter_jam": {},
        "notes_not_taken": {},
        "unresponsive": {},
    },
    "receipt_printer": {
        "paper_near_end": {},
        "paper_out": {},
        "jam": {},
        "cover_open": {},
        "unresponsive": {},
    },
    LINK: {
        "drop": {},
        "delay": {"seconds": FaultParam(float, 0.3, "how long the next chunk waits", low=0)},
        "corrupt": {"index": FaultParam(int, None, "the byte inverted (middle if left out)", 0)},
        "split": {
            "at": FaultParam(int, None, "where the chunk is cut (middle if left out)", low=1),
            "gap": FaultParam(float, 0.05, "seconds between the two pieces", low=0),
        },
        "disconnect": {},
    },
}


def catalogue_kind(target: str) -> str:
    """The catalogue entry of a fault target: the device name, or LINK for "NAME.link"."""
    return LINK if target.endswith(".link") else target


def fault_names(kind: str) -> frozenset[str]:
    """The faults a device (or LINK) knows."""
    return frozenset(FAULT_CATALOGUE[kind])


def fault_params(kind: str) -> Mapping[str, Mapping[str, FaultParam]] | None:
    """The accepted parameters of each fault of a device (or LINK); None for a device the
    catalogue does not list (an emulator of a test's own)."""
    return FAULT_CATALOGUE.get(kind)


def param_problem(
    accepted: Mapping[str, FaultParam], fault: str, name: str, value: Any
) -> str | None:
    """One line on what is wrong with parameter `name` of `fault`, or None if it is right."""
    spec = accepted.get(name)
    if spec is None:
        if not accepted:
            return f"{fault} takes no parameters, not {name!r}"
        return f"{fault} has no parameter {name!r}; it accepts: {', '.join(sorted(accepted))}"
    problem = spec.problem(value)
    return None if problem is None else f"{fault} parameter {name} {problem}"


def missing_params(accepted: Mapping[str, FaultParam], fault: str, given: Any) -> str | None:
    """One line naming the required parameters left out, or None."""
    missing = sorted(n for n, spec in accepted.items() if spec.required and n not in given)
    if not missing:
        return None
    return f"{fault} needs {', '.join(missing)} ({accepted[missing[0]].shape()})"
