"""Customer actions as a small line-based script, for `atm-sim atm run` and the demo.

One action per line: insert CARD, type DIGITS, press KEY..., take card|cash|receipt,
leave cash|card, wait STATE [SECONDS], advance SECONDS, pause SECONDS (hold the ATM still
for that long in real time, e.g. to cut its power from outside); `#` starts a comment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

KEYS = frozenset(
    {*"0123456789", "enter", "cancel", "clear", "backspace", *(f"F{n}" for n in range(1, 9))}
)
WAIT_DEFAULT_SECONDS = 10.0
MASKED_DIGITS = "****"  # fixed length: the number of stars says nothing about the PIN either


class ScriptError(ValueError):
    """A customer script line that cannot be run; says the line number and why."""


@dataclass(frozen=True)
class Action:
    line: int
    verb: str
    args: tuple[str, ...]

    def __str__(self) -> str:
        """The action as it may be printed or put in a file name: digits typed or pressed are
        shown as `*`, because a runner cannot know in advance whether the PIN pad takes them
        as a PIN, and a PIN must never leave the pad in clear."""
        if self.verb == "type":
            return f"type {MASKED_DIGITS}"
        if self.verb == "press":
            return " ".join(("press", *("*" if key.isdigit() else key for key in self.args)))
        return " ".join((self.verb, *self.args))


class Customer(Protocol):
    """What a script drives: the simulated ATM's fascia."""

    def insert_card(self, card_id: str) -> None: ...
    def press(self, key: str) -> None: ...
    def take(self, item: str) -> None: ...
    def wait_for_state(self, state: str, seconds: float) -> None: ...
    def advance(self, seconds: float) -> None: ...
    def pause(self, seconds: float) -> None: ...


def _number(text: str, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ScriptError(f"line {line}: {text!r} is not a number of seconds") from None
    if value < 0:
        raise ScriptError(f"line {line}: seconds cannot be negative")
    return value


def _valid(verb: str, args: tuple[str, ...], number: int) -> bool:
    if verb == "press" and args:
        unknown = [a for a in args if a not in KEYS]
        if unknown:
            raise ScriptError(f"line {number}: unknown key {unknown[0]!r}")
        return True
    if verb in ("wait", "advance", "pause") and args:
        for seconds in args[1:] if verb == "wait" else args:
            _number(seconds, number)
        return len(args) <= (2 if verb == "wait" else 1)
    if len(args) != 1:
        return False
    if verb == "type":
        return args[0].isdigit()
    if verb in ("take", "leave"):
        return args[0] in ("card", "cash", "receipt")
    return verb == "insert"


def parse_script(lines: Iterable[str]) -> list[Action]:
    """Check every line before anything runs; raise ScriptError on the first bad one."""
    actions: list[Action] = []
    for number, raw in enumerate(lines, start=1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        verb, args = words[0].lower(), tuple(words[1:])
        if not _valid(verb, args, number):
            raise ScriptError(
                f"line {number}: cannot understand {raw.strip()!r}; expected insert CARD, "
                "type DIGITS, press KEY..., take/leave card|cash|receipt, wait STATE [SECONDS], "
                "advance SECONDS, pause SECONDS"
            )
        actions.append(Action(number, verb, args))
    return actions


def run_action(customer: Customer, action: Action) -> None:
    verb, args = action.verb, action.args
    if verb == "insert":
        customer.insert_card(args[0])
    elif verb == "type":
        for digit in args[0]:
            customer.press(digit)
    elif verb == "press":
        for key in args:
            customer.press(key)
    elif verb == "take":
        customer.take(args[0])
    elif verb == "wait":
        seconds = float(args[1]) if len(args) == 2 else WAIT_DEFAULT_SECONDS
        customer.wait_for_state(args[0], seconds)
    elif verb == "advance":
        customer.advance(float(args[0]))
    elif verb == "pause":
        customer.pause(float(args[0]))
    # "leave" does nothing on purpose: the item stays where it is until a timeout acts on it.
