"""The kinds of check a scenario's `expect:` holds, one class each: how it is written in the file
(parse, errors as FILE:LINE) and how it is judged against the run (check, a Failure or None).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from device.screens import RenderedScreen
from device.sim.scenarios.reader import ACCOUNT, DEVICES, STATES, Reader, Where

MATCHER_KEYS = ("at_least", "at_most", "not")
_TRANSACTION = re.compile(r"^[a-z_]+( [0-9A-Z]{2})?( -?[0-9]+)?$")


@dataclass(frozen=True)
class Failure:
    """A check that did not hold, or a step that could not run."""

    where: Where
    what: str
    expected: str
    seen: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}: expected {self.expected}, seen {self.seen}"


class RunView(Protocol):
    """What the checks read of a scenario run. A reading may raise (no power, no such account):
    the runner reports that as the check's failure."""

    @property
    def cash_taken(self) -> int: ...

    @property
    def recovery(self) -> Sequence[str]: ...

    def atm_state(self) -> str: ...

    def screen(self) -> RenderedScreen: ...

    def device_status(self, device: str) -> dict[str, Any]: ...

    def journal_events(self) -> list[str]: ...

    def receipts(self) -> list[str]: ...

    def pending_advices(self) -> list[str]: ...

    def host_transactions(self) -> list[tuple[str, str, int]]: ...

    def balance(self, number: str) -> tuple[int, int]: ...

    def ledger_lines(self, number: str) -> list[int]: ...


@dataclass(frozen=True)
class Expectation(ABC):
    """One check at one line. `key` narrows the kind (an account, a device field, "present"; ""
    if none); `expected` is as written, so a check that cannot be made can still show it."""

    kind: ClassVar[str]  # its key under `expect:`
    where: Where
    key: str
    expected: Any

    @property
    def name(self) -> str:
        return f"{self.kind}.{self.key}" if self.key else self.kind

    @classmethod
    @abstractmethod
    def parse(cls, r: Reader, key_node: Node, node: Node) -> list[Expectation]:
        """The checks `kind: node` asks for (one entry may hold several)."""

    @abstractmethod
    def check(self, run: RunView) -> Failure | None: ...

    def failure(self, expected: str, seen: object) -> Failure:
        return Failure(self.where, self.name, expected, _short(seen))


@dataclass(frozen=True)
class State(Expectation):
    kind = "state"
    expected: str

    @classmethod
    def parse(cls, r: Reader, key_node: Node, node: Node) -> list[Expectation]:
        return [cls(r.where(key_node), "", r.text(node, "expect.state", sorted(STATES)))]

    def check(self, run: RunView) -> Failure | None:
        seen = run.atm_state()
        return None if seen == self.expected else self.failure(repr(self.expected), seen)


@dataclass(frozen=True)
class Screen(Expectation):
    kind = "screen"
    expected: str | tuple[str, ...]  # the name, or the texts it contains

    @classmethod
    def parse(cls, r: Reader, key_node: Node, node: Node) -> list[Expectation]:
        if isinstance(node, ScalarNode):
            return [cls(r.where(key_node), "name", r.text(node, "expect.screen"))]
        return [
            cls(
                r.where(sub_key),
                sub,
                r.text(value, "expect.screen.name")
                if sub == "name"
                else _texts(r, value, "expect.screen.contains"),
            )
            for sub, (sub_key, value) in r.mapping(
                node, "expect.screen", ("name", "contains")
            ).items()
        ]

    def check(self, run: RunView) -> Failure | None:
        screen = run.screen()
        if self.key == "name":
            if screen.name == self.expected:
                return None
            return self.failure(repr(self.expected), screen.name)
        text = screen.text()
        missing = [t for t in self.expected if t not in text]
        return self.failure(f"screen text containing {missing!r}", text) if missing else None


@dataclass(frozen=True)
class Devices(Expectation):
    kind = "devices"  # key: "DEVICE.FIELD", the field a dotted path into the status

    @classmethod
    def parse(cls, r: Reader, key_node: Node, node: Node) -> list[Expectation]:
        return [
            cls(r.where(field_key), f"{device}.{name}", _matcher(r, value, name))
            for device, (_, fields) in r.mapping(node, "expect.devices", DEVICES).items()
            for name, (field_key, value) in r.mapping(
                fields, f"expect.devices.{device}", ()
            ).items()
        ]

    def check(self, run: RunView) -> Failure | None:
        device, path = self.key.split(".", 1)
        seen = _dig(run.device_status(device), path)
        if _matches(seen, self.expected):
            return None
        return self.failure(_describe_matcher(self.expected), seen)


@dataclass(frozen=True)
class Journal(Expectation):
    kind = "journal"  # key: present, absent, in_order (events) or count.EVENT (a matcher)

    @classmethod
    def parse(cls, r: Reader, key_node: Node, node: Node) -> list[Expectation]:
        checks: list[Expectation] = []
        for sub, (sub_key, value) in r.mapping(
            node, "expect.journal", ("present", "absent", "in_order", "count")
        ).items():
            if sub == "count":
                for event, (event_key, count) in r.mapping(
                    value, "expect.journal.count", ()
                ).items():
                    r.journal_event(event_key, "expect.journal.count")
                    checks.append(
                        cls(r.where(event_key), f"count.{event}", _matcher(r, count, event))
                    )
            else:
                events = _texts(r, value, sub)
                for event_node in value.value if isinstance(value, SequenceNode) else [value]:
                    r.journal_event(event_node, f"expect.journal.{sub}")
                checks.append(cls(r.where(sub_key), sub, events))
        return checks

    def check(self, run: RunView) -> Failure | None:
        events = run.journal_events()
        expected = self.expected
        if self.key == "present":
            missing = [e for e in expected if e not in events]
            if not missing:
                return None
            return self.failure(
                f"events {list(expected)} present", f"missing {missing} in {events}"
            )
        if self.key == "absent":
            found = [e for e in expected if e in events]
            return self.failure(f"no {list(expected)}", f"{found} in {events}") if found else None
        if self.key == "in_order":
            position = 0
            for event in events:
                if position < len(expected) and event == expected[position]:
                    position += 1
            if position < len(expected):
                return self.failure(
                    f"in order {list(expected)}", f"stopped at {expected[position]!r} in {events}"
                )
            return None
        event = self.key.removeprefix("count.")
        count = events.count(event)
        if _matches(count, expected):
            return None
        return self.failure(f"{event} x {_describe_matcher(expected)}", count)


@dataclass(frozen=True)
class Receipt(Expectation):
    kind = "receipt"  # key: contains or absent
    expected: tuple[str, ...]

    @classmethod
    def parse(cls, r: Reader, key_node: Node, node: Node) -> list[Expectation]:
        return [
            cls(r.where(sub_key), sub, _texts(r, value, f"expect.receipt.{sub}"))
            for sub, (sub_key, value) in r.mapping(
                node, "expect.receipt", ("contains", "absent")
            ).items()
        ]

    def check(self, run: RunView) -> Failure | None:
        receipts = run.receipts()
        last = receipts[-1] if receipts else ""
        if self.key == "contains":
            missing = [t for t in self.expected if t not in last]
            return (
                self.failure(f"the last receipt to contain {missing!r}", last) if missing else None
            )
        present = [t for t in self.expected if t in last]
        return self.failure(f"the last receipt without {present!r}", last) if present else None


@dataclass(frozen=True)
class _Matched(Expectation):
    """A kind written as one value or matcher ({at_least: N}, {at_most: N}, {not: V})."""

    @classmethod
    def parse(cls, r: Reader, key_node: Node, node: Node) -> list[Expectation]:
        return [cls(r.where(key_node), "", _matcher(r, node, f"expect.{cls.kind}"))]

    def measure(self, run: RunView) -> tuple[int, object]:
        """The number the matcher judges, and what a failure shows as seen."""
        raise NotImplementedError

    def check(self, run: RunView) -> Failure | None:
        count, shown = self.measure(run)
        if _matches(count, self.expected):
            return None
        return self.failure(_describe_matcher(self.expected), shown)


@dataclass(frozen=True)
class Receipts(_Matched):
    kind = "receipts"

    def measure(self, run: RunView) -> tuple[int, object]:
        printed = len(run.receipts())
        return printed, printed


@dataclass(frozen=True)
class CashTaken(_Matched):
    kind = "cash_taken"

    def measure(self, run: RunView) -> tuple[int, object]:
        return run.cash_taken, run.cash_taken


@dataclass(frozen=True)
class AdvicesPending(_Matched):
    kind = "advices_pending"

    def measure(self, run: RunView) -> tuple[int, object]:
        pending = run.pending_advices()
        return len(pending), pending


@dataclass(frozen=True)
class HostTransactions(Expectation):
    kind = "host_transactions"  # key: exactly, include (in order) or absent
    expected: tuple[str, ...]  # "KIND", "KIND CODE" or "KIND CODE CENTS"

    @classmethod
    def parse(cls, r: Reader, key_node: Node, node: Node) -> list[Expectation]:
        if isinstance(node, MappingNode):
            fields = r.mapping(node, "expect.host_transactions", ("exactly", "include", "absent"))
            return [
                cls(r.where(k), sub, _transactions(r, v, sub)) for sub, (k, v) in fields.items()
            ]
        return [cls(r.where(key_node), "exactly", _transactions(r, node, "exactly"))]

    def check(self, run: RunView) -> Failure | None:
        seen = run.host_transactions()
        expected = self.expected
        shown = [f"{kind} {code} {amount}" for kind, code, amount in seen]
        if self.key == "exactly":
            ok = len(seen) == len(expected) and all(
                _transaction_matches(p, s) for p, s in zip(expected, seen, strict=True)
            )
            return None if ok else self.failure(repr(list(expected)), shown)
        if self.key == "absent":
            found = [p for p in expected if any(_transaction_matches(p, s) for s in seen)]
            return self.failure(f"none of {found}", shown) if found else None
        position = 0
        for item in seen:
            if position < len(expected) and _transaction_matches(expected[position], item):
                position += 1
        if position == len(expected):
            return None
        return self.failure(f"including in order {list(expected)}", shown)


@dataclass(frozen=True)
class Balances(Expectation):
    kind = "balances"  # key: the account
    expected: dict[str, int]  # ledger and/or available cents

    @classmethod
    def parse(cls, r: Reader, key_node: Node, node: Node) -> list[Expectation]:
        if not isinstance(node, MappingNode):
            raise r.fail(node, "expect.balances: expected a mapping of account: cents")
        checks: list[Expectation] = []
        for account_node, value in node.value:
            number = r.identifier(account_node, "expect.balances", ACCOUNT, "an 8-digit account")
            if isinstance(value, MappingNode):
                fields = r.mapping(value, f"expect.balances.{number}", ("ledger", "available"))
                expected = {k: r.whole(v, k, low=None) for k, (_, v) in fields.items()}
            else:
                cents = r.whole(value, f"expect.balances.{number}", low=None)
                expected = {"ledger": cents, "available": cents}
            checks.append(cls(r.where(account_node), number, expected))
        return checks

    def check(self, run: RunView) -> Failure | None:
        ledger, available = run.balance(self.key)
        seen = {"ledger": ledger, "available": available}
        wrong = {k: v for k, v in self.expected.items() if seen[k] != v}
        return self.failure(repr(self.expected), seen) if wrong else None


@dataclass(frozen=True)
class Ledger(Expectation):
    kind = "ledger"  # key: the account
    expected: tuple[int, ...]

    @classmethod
    def parse(cls, r: Reader, key_node: Node, node: Node) -> list[Expectation]:
        if not isinstance(node, MappingNode):
            raise r.fail(node, "expect.ledger: expected a mapping of account: [amounts]")
        checks: list[Expectation] = []
        for account_node, value in node.value:
            number = r.identifier(account_node, "expect.ledger", ACCOUNT, "an 8-digit account")
            amounts = tuple(r.whole(v, "amount", low=None) for v in r.sequence(value, "ledger"))
            checks.append(cls(r.where(account_node), number, amounts))
        return checks

    def check(self, run: RunView) -> Failure | None:
        amounts = run.ledger_lines(self.key)
        if tuple(amounts) == self.expected:
            return None
        return self.failure(repr(list(self.expected)), amounts)


@dataclass(frozen=True)
class Recovery(Expectation):
    kind = "recovery"
    expected: tuple[str, ...]

    @classmethod
    def parse(cls, r: Reader, key_node: Node, node: Node) -> list[Expectation]:
        return [cls(r.where(key_node), "contains", _texts(r, node, "expect.recovery"))]

    def check(self, run: RunView) -> Failure | None:
        text = "\n".join(run.recovery)
        missing = [t for t in self.expected if t not in text]
        if not missing:
            return None
        return self.failure(f"recovery report containing {missing!r}", run.recovery)


# In the order the schema's "unknown key" error lists them.
EXPECTATIONS: dict[str, type[Expectation]] = {
    kind.kind: kind
    for kind in (
        State,
        Screen,
        Devices,
        Journal,
        Receipt,
        Receipts,
        HostTransactions,
        Balances,
        Ledger,
        CashTaken,
        AdvicesPending,
        Recovery,
    )
}


# ----- parsing ----------------------------------------------------------------------------------


def _texts(r: Reader, node: Node, what: str) -> tuple[str, ...]:
    if isinstance(node, SequenceNode):
        return tuple(r.text(n, what) for n in node.value)
    return (r.text(node, what),)


def _matcher(r: Reader, node: Node, what: str) -> Any:
    """An exact value, or {at_least: N}, {at_most: N}, {not: V}."""
    if isinstance(node, MappingNode):
        fields = r.mapping(node, what, MATCHER_KEYS)
        if not fields:
            raise r.fail(node, f"{what}: give at_least, at_most or not")
        return {k: r.value(v) for k, (_, v) in fields.items()}
    return r.value(node)


def _transactions(r: Reader, node: Node, what: str) -> tuple[str, ...]:
    found = []
    for item in r.sequence(node, f"expect.host_transactions.{what}"):
        text = r.text(item, "expect.host_transactions")
        if not _TRANSACTION.match(text):
            raise r.fail(item, f"{text!r}: expected 'KIND', 'KIND CODE' or 'KIND CODE CENTS'")
        found.append(text)
    return tuple(found)


# ----- checking ---------------------------------------------------------------------------------


def _short(value: object, limit: int = 400) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.replace("\n", " | ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dig(status: dict[str, Any], path: str) -> Any:
    value: Any = status
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise LookupError(f"no field {path!r} in the status ({', '.join(map(str, status))})")
    return value


def _matches(seen: Any, expected: Any) -> bool:
    if isinstance(expected, dict):
        if "at_least" in expected and not seen >= expected["at_least"]:
            return False
        if "at_most" in expected and not seen <= expected["at_most"]:
            return False
        return not ("not" in expected and seen == expected["not"])
    return bool(seen == expected)


def _describe_matcher(expected: Any) -> str:
    if isinstance(expected, dict):
        return " and ".join(f"{k.replace('_', ' ')} {v!r}" for k, v in expected.items())
    return repr(expected)


def _transaction_matches(pattern: str, seen: tuple[str, str, int]) -> bool:
    parts = pattern.split()
    if parts[0] != seen[0]:
        return False
    if len(parts) > 1 and parts[1] != seen[1]:
        return False
    return not (len(parts) > 2 and int(parts[2]) != seen[2])
