"""The ATM's screens as data: a YAML screen set, checked on load, rendered with placeholders.

The kiosk and the headless runner show the same rendered screens.
"""

from __future__ import annotations

import functools
import os
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from config.data_files import DataFile, parse_data_file, read_data_file

FUNCTION_KEYS = tuple(f"F{n}" for n in range(1, 9))


class ScreenError(ValueError):
    """A screen the screen set does not have (a bad screen file raises DataFileError)."""


class ScreenEvent(StrEnum):
    """What a function key can tell the controller; a screen file naming anything else is
    refused at load, since the controller would ignore the key."""

    CANCEL = "cancel"
    CHOOSE_BALANCE = "choose_balance"
    CHOOSE_CHECKING = "choose_checking"
    CHOOSE_PIN_CHANGE = "choose_pin_change"
    CHOOSE_SAVINGS = "choose_savings"
    CHOOSE_STATEMENT = "choose_statement"
    CHOOSE_TRANSFER = "choose_transfer"
    CHOOSE_WITHDRAWAL = "choose_withdrawal"
    CONFIRM = "confirm"
    FAST_CASH_1 = "fast_cash_1"
    FAST_CASH_2 = "fast_cash_2"
    FAST_CASH_3 = "fast_cash_3"
    FAST_CASH_4 = "fast_cash_4"
    OTHER_AMOUNT = "other_amount"


@dataclass(frozen=True)
class FunctionKey:
    label: str
    event: ScreenEvent


@dataclass(frozen=True)
class Screen:
    name: str
    lines: tuple[str, ...]
    keys: Mapping[str, FunctionKey] = field(default_factory=dict)

    def placeholders(self) -> set[str]:
        names: set[str] = set()
        for line in self.lines:
            names.update(p[1] for p in string.Formatter().parse(line) if p[1])
        return names


@dataclass(frozen=True)
class RenderedScreen:
    name: str
    lines: tuple[str, ...]
    keys: Mapping[str, FunctionKey]

    def text(self) -> str:
        body = [line for line in self.lines if line]
        labels = [f"[{k}] {v.label}" for k, v in sorted(self.keys.items())]
        return "\n".join(body + labels)


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


class ScreenSet:
    def __init__(self, screens: Mapping[str, Screen]) -> None:
        self.screens = dict(screens)

    def render(self, name: str, **values: Any) -> RenderedScreen:
        screen = self.screens.get(name)
        if screen is None:
            raise ScreenError(f"no screen named {name!r}")
        filled = tuple(line.format_map(_Blank(values)).strip() for line in screen.lines)
        return RenderedScreen(name, filled, screen.keys)


def load_screens(path: Path) -> ScreenSet:
    """Read and check a screen set file; DataFileError names the file and the line.

    The same text is not checked twice: every ATM of a fleet or a scenario run starts with the
    same screens (their parse cost 3-4 ms each)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ScreenSet(_checked(read_data_file(path)))  # read_data_file says why
    return ScreenSet(_screens_of(os.fspath(path), text))


@functools.lru_cache(maxsize=8)
def _screens_of(path: str, text: str) -> Mapping[str, Screen]:
    return _checked(parse_data_file(text, path))


def _checked(file: DataFile) -> dict[str, Screen]:
    raw_screens = file.data.get("screens")
    if not isinstance(raw_screens, dict) or not raw_screens:
        raise file.error(("screens",), "expected a mapping of screen names")
    screens: dict[str, Screen] = {}
    for name, body in raw_screens.items():
        where = ("screens", name)
        if not isinstance(body, dict) or not isinstance(body.get("lines"), list):
            raise file.error(where, "expected `lines:` as a list of text")
        lines = tuple(str(line) for line in body["lines"])
        raw_keys = body.get("keys") or {}
        if not isinstance(raw_keys, dict):
            raise file.error((*where, "keys"), "expected a mapping of function keys")
        keys: dict[str, FunctionKey] = {}
        for key, spec in raw_keys.items():
            if key not in FUNCTION_KEYS:
                raise file.error((*where, "keys", key), "expected one of F1..F8")
            if not isinstance(spec, dict) or not {"label", "event"} <= set(spec):
                raise file.error((*where, "keys", key), "expected label and event")
            if spec["event"] not in set(ScreenEvent):
                raise file.error(
                    (*where, "keys", key, "event"),
                    f"unknown event {spec['event']!r}; known: {', '.join(sorted(ScreenEvent))}",
                )
            keys[key] = FunctionKey(str(spec["label"]), ScreenEvent(spec["event"]))
        screens[str(name)] = Screen(str(name), lines, MappingProxyType(keys))
    return screens


DEFAULT_SCREENS = Path(__file__).resolve().parents[1] / "config" / "screens" / "default.yaml"
