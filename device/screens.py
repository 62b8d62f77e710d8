"""The ATM's screens as data: a YAML screen set, checked on load, rendered with placeholders.

The kiosk and the headless runner show the same rendered screens.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

FUNCTION_KEYS = tuple(f"F{n}" for n in range(1, 9))


class ScreenError(ValueError):
    """The screen set is invalid, or a screen is unknown."""


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


def _fail(path: Path, where: str, reason: str, line: int | None = None) -> ScreenError:
    return ScreenError(f"{path}{f':{line}' if line else ''}: {where}: {reason}")


def _line_of(path: Path, keys: tuple[str, ...]) -> int | None:
    """The 1-based line of the value at `keys` in a YAML mapping file, if it can be found."""
    node: yaml.Node | None = yaml.compose(path.read_text(encoding="utf-8"))
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            return None
        node = next((v for k, v in node.value if k.value == key), None)
    return node.start_mark.line + 1 if node is not None else None


def load_screens(path: Path) -> ScreenSet:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ScreenError(f"{path}: cannot read screen set ({err})") from err
    if not isinstance(data, dict) or data.get("version") != 1:
        raise _fail(path, "version", "expected a mapping with version: 1")
    raw_screens = data.get("screens")
    if not isinstance(raw_screens, dict) or not raw_screens:
        raise _fail(path, "screens", "expected a mapping of screen names")
    screens: dict[str, Screen] = {}
    for name, body in raw_screens.items():
        if not isinstance(body, dict) or not isinstance(body.get("lines"), list):
            raise _fail(path, f"screens.{name}", "expected `lines:` as a list of text")
        lines = tuple(str(line) for line in body["lines"])
        keys: dict[str, FunctionKey] = {}
        for key, spec in (body.get("keys") or {}).items():
            if key not in FUNCTION_KEYS:
                raise _fail(path, f"screens.{name}.keys.{key}", "expected one of F1..F8")
            if not isinstance(spec, dict) or not {"label", "event"} <= set(spec):
                raise _fail(path, f"screens.{name}.keys.{key}", "expected label and event")
            if spec["event"] not in set(ScreenEvent):
                line = _line_of(path, ("screens", name, "keys", key, "event"))
                raise _fail(
                    path,
                    f"screens.{name}.keys.{key}.event",
                    f"unknown event {spec['event']!r}; known: {', '.join(sorted(ScreenEvent))}",
                    line,
                )
            keys[key] = FunctionKey(str(spec["label"]), ScreenEvent(spec["event"]))
        screens[str(name)] = Screen(str(name), lines, keys)
    return ScreenSet(screens)


DEFAULT_SCREENS = Path(__file__).resolve().parents[1] / "config" / "screens" / "default.yaml"
