"""Typed reading of a scenario file's YAML nodes (every failure a DataFileError at the node's
line), and the names that steps and expectations alike are checked against.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from config.data_files import DataFileError
from device.controller.atm_controller import STATES as CONTROLLER_STATES
from device.journal_events import JournalEvent, unknown_event_message

# The controller's states, and "power_off" for an ATM whose power a scenario has cut.
STATES = frozenset({*CONTROLLER_STATES, "power_off"})
DEVICES = ("card_reader", "pin_pad", "cash_dispenser", "receipt_printer")
ACCOUNT = re.compile(r"^[0-9]{8}$")


@dataclass(frozen=True)
class Where:
    """A place in a scenario file (lines count from 1)."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class Reader:
    """Typed access to composed YAML nodes; every failure is a DataFileError at the node."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._constructor = SafeConstructor()

    def fail(self, node: Node, reason: str) -> DataFileError:
        return DataFileError(self.path, node.start_mark.line + 1, reason)

    def where(self, node: Node) -> Where:
        return Where(str(self.path), node.start_mark.line + 1)

    def value(self, node: Node) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError as err:
            raise self.fail(node, f"cannot read this value: {err}") from err

    def mapping(
        self, node: Node, what: str, known: Iterable[str], required: Iterable[str] = ()
    ) -> dict[str, tuple[Node, Node]]:
        if not isinstance(node, MappingNode):
            raise self.fail(node, f"{what}: expected a mapping")
        known = tuple(known)
        items: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node)
            if not isinstance(key, str):
                raise self.fail(key_node, f"{what}: key {key!r} must be a quoted string")
            if known and key not in known:
                raise self.fail(key_node, f"{what}: unknown key {key!r}; known: {', '.join(known)}")
            if key in items:
                raise self.fail(key_node, f"{what}: {key!r} given twice")
            items[key] = (key_node, value_node)
        for key in required:
            if key not in items:
                raise self.fail(node, f"{what}: {key!r} is missing")
        return items

    def sequence(self, node: Node, what: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            raise self.fail(node, f"{what}: expected a list")
        return list(node.value)

    def text(self, node: Node, what: str, choices: Iterable[str] = ()) -> str:
        value = self.value(node)
        if not isinstance(value, str):
            raise self.fail(node, f"{what}: expected text, found {value!r}")
        choices = tuple(choices)
        if choices and value not in choices:
            raise self.fail(node, f"{what}: {value!r} is not one of {', '.join(choices)}")
        return value

    def journal_event(self, node: Node, what: str) -> str:
        """A journal event name; a misspelt one would make `absent` pass and `on_event` wait
        for ever, so it is refused here."""
        value = self.text(node, what)
        if value not in set(JournalEvent):
            raise self.fail(node, f"{what}: {unknown_event_message(value)}")
        return value

    def identifier(self, node: Node, what: str, pattern: re.Pattern[str], shape: str) -> str:
        """An identifier (PIN, card or account number): a quoted string, never a YAML number."""
        value = self.value(node)
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise self.fail(
                node,
                f"{what}: {node.value} must be a quoted string (YAML read it as the number "
                f'{value!r}, which loses leading zeros); write "{node.value}"',
            )
        if isinstance(node, ScalarNode) and node.style not in ('"', "'"):
            # Unquoted, 0852 happens to stay text but 0123 becomes 83: quote every identifier.
            raise self.fail(
                node, f'{what}: {node.value} must be a quoted string; write "{node.value}"'
            )
        if not isinstance(value, str) or not pattern.match(value):
            raise self.fail(node, f"{what}: expected {shape}, found {value!r}")
        return value

    def number(self, node: Node, what: str, *, low: float = 0.0) -> float:
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(node, f"{what}: expected a number, found {value!r}")
        if value < low:
            raise self.fail(node, f"{what}: expected at least {low:g}, found {value!r}")
        return float(value)

    def whole(self, node: Node, what: str, *, low: int | None = 0) -> int:
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(node, f"{what}: expected a whole number, found {value!r}")
        if low is not None and value < low:
            raise self.fail(node, f"{what}: expected at least {low}, found {value}")
        return value

    def boolean(self, node: Node, what: str) -> bool:
        value = self.value(node)
        if not isinstance(value, bool):
            raise self.fail(node, f"{what}: expected true or false, found {value!r}")
        return value
