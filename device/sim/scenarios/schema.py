"""The scenario file format (version 1) as typed objects, and the loader that checks a file
before anything runs: an error names the file, the line and the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from config.data_files import VERSION, DataFile, DataFileError, parse_data_file, read_data_file
from device.controller.atm_controller import STATES as CONTROLLER_STATES
from device.journal_events import JournalEvent, unknown_event_message
from device.sim.customer_script import KEYS
from peripherals.fault_catalogue import (
    FaultParam,
    catalogue_kind,
    fault_names,
    fault_params,
    missing_params,
    param_problem,
)

# The controller's states, and "power_off" for an ATM whose power a scenario has cut.
STATES = frozenset({*CONTROLLER_STATES, "power_off"})
DEVICES = ("card_reader", "pin_pad", "cash_dispenser", "receipt_printer")
FAULT_TARGETS = frozenset({*DEVICES, *(f"{d}.link" for d in DEVICES)})
FAULT_MODES = ("persistent", "once", "on_command")
HOST_MODES = ("up", "down", "slow", "declining", "reply_lost", "connection_dropped")
OPERATOR_ACTIONS = (
    "replenish",
    "clear_fault",
    "out_of_service",
    "in_service",
    "load_paper",
    "empty_retain_bin",
)
ITEMS = ("card", "cash", "receipt")
CARD_STATUSES = ("active", "locked", "blocked", "captured")
BANK_SETTINGS = (
    "daily_withdrawal_limit",
    "daily_transfer_limit",
    "max_failed_pin_attempts",
    "lockout_duration_seconds",
)
EXPECT_KEYS = (
    "state",
    "screen",
    "devices",
    "journal",
    "receipt",
    "receipts",
    "host_transactions",
    "balances",
    "ledger",
    "cash_taken",
    "advices_pending",
    "recovery",
)
MATCHER_KEYS = ("at_least", "at_most", "not")
_ACCOUNT = re.compile(r"^[0-9]{8}$")
_CODE = re.compile(r"^[0-9A-Z]{2}$")
_TRANSACTION = re.compile(r"^[a-z_]+( [0-9A-Z]{2})?( -?[0-9]+)?$")


@dataclass(frozen=True)
class Where:
    """A place in a scenario file (lines count from 1)."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


# ----- the model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AtmSetup:
    profile: str = "default"  # "default" or a path (relative: to the scenario file, then the repo)
    cassettes: tuple[dict[str, Any], ...] = ()  # a cassette load replacing the profile's
    session_timeout: float = 120.0
    host_timeout: float = 10.0


@dataclass(frozen=True)
class CardOverride:
    status: str | None = None
    failed_pin_attempts: int | None = None
    locked_for: float | None = None  # locked_until = scenario start + this (negative: ran out)


@dataclass(frozen=True)
class BankSetup:
    balances: dict[str, int] = field(default_factory=dict)  # account number -> cents
    cards: dict[str, CardOverride] = field(default_factory=dict)  # wallet card id -> override
    settings: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    where: Where


@dataclass(frozen=True)
class InsertCard(Step):
    card: str


@dataclass(frozen=True)
class Press(Step):
    keys: tuple[str, ...]


@dataclass(frozen=True)
class TypeDigits(Step):
    digits: str


@dataclass(frozen=True)
class Take(Step):
    item: str


@dataclass(frozen=True)
class Leave(Step):
    item: str


@dataclass(frozen=True)
class Wait(Step):
    state: str
    seconds: float = 10.0  # real seconds at most; virtual time jumps to the ATM's next timer


@dataclass(frozen=True)
class Advance(Step):
    seconds: float


@dataclass(frozen=True)
class DeviceFault(Step):
    target: str
    name: str
    mode: str = "persistent"
    on_command: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    on_event: str | None = None


@dataclass(frozen=True)
class HostFault(Step):
    mode: str
    seconds: float = 0.0
    code: str = "05"
    count: int = 0  # 0: until `host: up`
    how: str = "refuse"
    mtis: tuple[str, ...] = ()  # only these request types (empty: all)
    on_event: str | None = None


@dataclass(frozen=True)
class Operator(Step):
    action: str
    target: str | None = None
    fault: str | None = None
    cassettes: dict[int, int] = field(default_factory=dict)
    empty_bins: bool = False


@dataclass(frozen=True)
class PowerFailure(Step):
    on_event: str | None = None


@dataclass(frozen=True)
class Restart(Step):
    pass


@dataclass(frozen=True)
class Check:
    """One expectation: `kind` (a key of EXPECT_KEYS), `key` (a sub-key such as an account or a
    device field; "" if none) and the expected value as written."""

    where: Where
    kind: str
    key: str
    expected: Any


@dataclass(frozen=True)
class Expect(Step):
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class Scenario:
    path: Path
    name: str
    description: str
    atm: AtmSetup
    bank: BankSetup
    steps: tuple[Step, ...]
    expect: Expect | None
    known_failure: str | None = None
    version: int = VERSION

    @property
    def checks(self) -> Iterator[Check]:
        for step in (*self.steps, *([self.expect] if self.expect else [])):
            if isinstance(step, Expect):
                yield from step.checks


# ----- reading YAML with its lines ---------------------------------------------------------------


class _Reader:
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


# ----- the loader -----------------------------------------------------------------------------


def load_scenario(path: Path | str) -> Scenario:
    """Read and check one scenario file; DataFileError (file:line: reason) if it is wrong."""
    return _scenario(read_data_file(path))


def parse_scenario(text: str, path: Path | str = "<scenario>") -> Scenario:
    """The scenario in `text`; `path` names it in errors."""
    return _scenario(parse_data_file(text, path))


def _scenario(file: DataFile) -> Scenario:
    assert file.root is not None  # a file read from YAML has its nodes
    return _Parser(Path(file.path)).scenario(file.root)


class _Parser:
    def __init__(self, path: Path) -> None:
        self.r = _Reader(path)
        self.path = path

    def scenario(self, root: Node) -> Scenario:
        r = self.r
        top = r.mapping(
            root,
            "scenario",
            ("version", "name", "description", "known_failure", "atm", "bank", "steps", "expect"),
            ("version", "steps"),
        )
        name = r.text(top["name"][1], "name") if "name" in top else self.path.stem
        description = r.text(top["description"][1], "description") if "description" in top else ""
        known_failure = None
        if "known_failure" in top:
            known_failure = r.text(top["known_failure"][1], "known_failure")
            if not known_failure.strip():
                raise r.fail(top["known_failure"][1], "known_failure: give the reason")
        atm = self.atm(top["atm"][1]) if "atm" in top else AtmSetup()
        bank = self.bank(top["bank"][1]) if "bank" in top else BankSetup()
        step_nodes = r.sequence(top["steps"][1], "steps")
        if not step_nodes:
            raise r.fail(top["steps"][1], "steps: a scenario needs at least one step")
        steps = tuple(self.step(node) for node in step_nodes)
        expect = None
        if "expect" in top:
            expect = Expect(r.where(top["expect"][1]), self.checks(top["expect"][1]))
        return Scenario(self.path, name, description, atm, bank, steps, expect, known_failure)

    # ----- set-up -----------------------------------------------------------------------------

    def atm(self, node: Node) -> AtmSetup:
        r = self.r
        items = r.mapping(node, "atm", ("profile", "cassettes", "session_timeout", "host_timeout"))
        profile = r.text(items["profile"][1], "atm.profile") if "profile" in items else "default"
        cassettes: tuple[dict[str, Any], ...] = ()
        if "cassettes" in items:
            from peripherals.cassettes import parse_cassette_load

            cassette_node = items["cassettes"][1]
            raw = r.value(cassette_node)
            try:
                parse_cassette_load({"currency": "978", "cassettes": raw}, "atm.cassettes")
            except DataFileError as err:
                raise r.fail(cassette_node, f"atm.{err.message}") from err
            cassettes = tuple(dict(c) for c in raw)
        session = (
            r.number(items["session_timeout"][1], "atm.session_timeout", low=1)
            if "session_timeout" in items
            else 120.0
        )
        host_timeout = (
            r.number(items["host_timeout"][1], "atm.host_timeout", low=0.1)
            if "host_timeout" in items
            else 10.0
        )
        return AtmSetup(profile, cassettes, session, host_timeout)

    def bank(self, node: Node) -> BankSetup:
        r = self.r
        items = r.mapping(node, "bank", ("seed", "balances", "cards", "settings"))
        if "seed" in items:
            r.text(items["seed"][1], "bank.seed", ("default",))
        balances: dict[str, int] = {}
        if "balances" in items:
            balance_node = items["balances"][1]
            if not isinstance(balance_node, MappingNode):
                raise r.fail(balance_node, "bank.balances: expected a mapping of account: cents")
            for key_node, value_node in balance_node.value:
                number = r.identifier(key_node, "bank.balances", _ACCOUNT, "an 8-digit account")
                balances[number] = r.whole(value_node, f"bank.balances.{number}")
        cards: dict[str, CardOverride] = {}
        if "cards" in items:
            card_items = r.mapping(items["cards"][1], "bank.cards", ())
            for card_id, (_, value_node) in card_items.items():
                what = f"bank.cards.{card_id}"
                fields = r.mapping(
                    value_node, what, ("status", "failed_pin_attempts", "locked_for")
                )
                cards[card_id] = CardOverride(
                    status=r.text(fields["status"][1], f"{what}.status", CARD_STATUSES)
                    if "status" in fields
                    else None,
                    failed_pin_attempts=r.whole(
                        fields["failed_pin_attempts"][1], f"{what}.failed_pin_attempts"
                    )
                    if "failed_pin_attempts" in fields
                    else None,
                    locked_for=r.number(fields["locked_for"][1], f"{what}.locked_for", low=-1e9)
                    if "locked_for" in fields
                    else None,
                )
        settings: dict[str, int] = {}
        if "settings" in items:
            for key, (_, value_node) in r.mapping(
                items["settings"][1], "bank.settings", BANK_SETTINGS
            ).items():
                settings[key] = r.whole(value_node, f"bank.settings.{key}", low=1)
        return BankSetup(balances, cards, settings)

    # ----- steps ------------------------------------------------------------------------------

    def step(self, node: Node) -> Step:
        r = self.r
        verbs = (
            "insert",
            "press",
            "type",
            "take",
            "leave",
            "wait",
            "advance",
            "fault",
            "host",
            "operator",
            "power_failure",
            "restart",
            "expect",
        )
        if isinstance(node, ScalarNode) and r.value(node) == "restart":
            return Restart(r.where(node))
        items = r.mapping(node, "step", verbs)
        if len(items) != 1:
            raise r.fail(node, f"a step has exactly one action; found {', '.join(items)}")
        verb, (key_node, value) = next(iter(items.items()))
        where = r.where(key_node)
        if verb == "insert":
            return InsertCard(where, r.text(value, "insert"))
        if verb == "press":
            keys = (
                [r.text(k, "press") for k in r.sequence(value, "press")]
                if isinstance(value, SequenceNode)
                else [r.text(value, "press")]
            )
            for key in keys:
                if key not in KEYS:
                    raise r.fail(
                        value, f"press: unknown key {key!r}; keys: {', '.join(sorted(KEYS))}"
                    )
            return Press(where, tuple(keys))
        if verb == "type":
            digits = r.identifier(value, "type", re.compile(r"^[0-9]+$"), "digits")
            return TypeDigits(where, digits)
        if verb in ("take", "leave"):
            item = r.text(value, verb, ITEMS)
            return Take(where, item) if verb == "take" else Leave(where, item)
        if verb == "wait":
            if isinstance(value, ScalarNode):
                return Wait(where, r.text(value, "wait", sorted(STATES)))
            fields = r.mapping(value, "wait", ("state", "seconds"), ("state",))
            seconds = (
                r.number(fields["seconds"][1], "wait.seconds", low=0.1)
                if "seconds" in fields
                else 10.0
            )
            return Wait(where, r.text(fields["state"][1], "wait.state", sorted(STATES)), seconds)
        if verb == "advance":
            return Advance(where, r.number(value, "advance"))
        if verb == "fault":
            return self.device_fault(value, where)
        if verb == "host":
            return self.host_fault(value, where)
        if verb == "operator":
            return self.operator(value, where)
        if verb == "power_failure":
            if isinstance(value, ScalarNode):
                r.text(value, "power_failure", ("now",))
                return PowerFailure(where)
            fields = r.mapping(value, "power_failure", ("on_event",), ("on_event",))
            return PowerFailure(
                where, r.journal_event(fields["on_event"][1], "power_failure.on_event")
            )
        if verb == "restart":
            if not (isinstance(value, ScalarNode) and r.value(value) in (None, True, "now")):
                raise r.fail(value, "restart: takes no arguments (write `- restart`)")
            return Restart(where)
        return Expect(where, self.checks(value))

    def device_fault(self, node: Node, where: Where) -> DeviceFault:
        r = self.r
        f = r.mapping(
            node,
            "fault",
            ("target", "name", "mode", "on_command", "params", "on_event"),
            ("target", "name"),
        )
        target = r.text(f["target"][1], "fault.target", sorted(FAULT_TARGETS))
        mode = r.text(f["mode"][1], "fault.mode", FAULT_MODES) if "mode" in f else "persistent"
        on_command = (
            r.whole(f["on_command"][1], "fault.on_command", low=1) if "on_command" in f else 0
        )
        if (mode == "on_command") != bool(on_command):
            raise r.fail(node, "fault: mode on_command goes with on_command: N (and only then)")
        on_event = r.journal_event(f["on_event"][1], "fault.on_event") if "on_event" in f else None
        known = _fault_names(target)
        name = r.text(f["name"][1], "fault.name", sorted(known))
        # The fault catalogue, as FaultSet.inject will check it: a misspelt parameter is an
        # error here, at its own line, not a fault that fires with its default.
        accepted = _fault_params(target).get(name, {})
        params: dict[str, Any] = {}
        if "params" in f:
            for key, (key_node, value) in r.mapping(f["params"][1], "fault.params", ()).items():
                params[key] = r.value(value)
                problem = param_problem(accepted, name, key, params[key])
                if problem is not None:
                    raise r.fail(value if key in accepted else key_node, f"fault.params: {problem}")
        missing = missing_params(accepted, name, params)
        if missing is not None:
            raise r.fail(f["params"][1] if "params" in f else node, f"fault.params: {missing}")
        return DeviceFault(where, target, name, mode, on_command, params, on_event)

    def host_fault(self, node: Node, where: Where) -> HostFault:
        r = self.r
        if isinstance(node, ScalarNode):
            mode = r.text(node, "host", HOST_MODES)
            if mode in ("slow", "declining"):
                raise r.fail(
                    node, f"host: {mode} needs settings; write host: {{mode: {mode}, ...}}"
                )
            return HostFault(where, mode)
        f = r.mapping(
            node, "host", ("mode", "seconds", "code", "count", "how", "mti", "on_event"), ("mode",)
        )
        mode = r.text(f["mode"][1], "host.mode", HOST_MODES)
        seconds = r.number(f["seconds"][1], "host.seconds") if "seconds" in f else 0.0
        if mode == "slow" and "seconds" not in f:
            raise r.fail(node, "host: mode slow needs seconds (the delay of each reply)")
        code = "05"
        if "code" in f:
            code = r.identifier(f["code"][1], "host.code", _CODE, "a 2-character response code")
        elif mode == "declining":
            raise r.fail(node, 'host: mode declining needs code (e.g. code: "91")')
        how = r.text(f["how"][1], "host.how", ("refuse", "close")) if "how" in f else "refuse"
        mtis: tuple[str, ...] = ()
        if "mti" in f:
            mti_node = f["mti"][1]
            nodes = (
                r.sequence(mti_node, "host.mti")
                if isinstance(mti_node, SequenceNode)
                else [mti_node]
            )
            mtis = tuple(
                r.identifier(n, "host.mti", re.compile(r"^0[1248]00$"), 'a request MTI like "0200"')
                for n in nodes
            )
        count = r.whole(f["count"][1], "host.count", low=1) if "count" in f else 0
        on_event = r.journal_event(f["on_event"][1], "host.on_event") if "on_event" in f else None
        return HostFault(where, mode, seconds, code, count, how, mtis, on_event)

    def operator(self, node: Node, where: Where) -> Operator:
        r = self.r
        if isinstance(node, ScalarNode):
            return Operator(where, r.text(node, "operator", OPERATOR_ACTIONS))
        f = r.mapping(
            node, "operator", ("action", "target", "fault", "cassettes", "empty_bins"), ("action",)
        )
        action = r.text(f["action"][1], "operator.action", OPERATOR_ACTIONS)
        target = (
            r.text(f["target"][1], "operator.target", sorted(FAULT_TARGETS))
            if "target" in f
            else None
        )
        fault = r.text(f["fault"][1], "operator.fault") if "fault" in f else None
        cassettes: dict[int, int] = {}
        if "cassettes" in f:
            cassette_node = f["cassettes"][1]
            if not isinstance(cassette_node, MappingNode):
                raise r.fail(cassette_node, "operator.cassettes: expected cassette number: notes")
            for key_node, value_node in cassette_node.value:
                number = r.whole(key_node, "operator.cassettes", low=1)
                cassettes[number] = r.whole(value_node, f"operator.cassettes.{number}")
        if action == "replenish" and not cassettes:
            raise r.fail(node, "operator: replenish needs cassettes: {NUMBER: NOTES, ...}")
        empty_bins = (
            r.boolean(f["empty_bins"][1], "operator.empty_bins") if "empty_bins" in f else False
        )
        return Operator(where, action, target, fault, cassettes, empty_bins)

    # ----- expectations -----------------------------------------------------------------------

    def checks(self, node: Node) -> tuple[Check, ...]:
        r = self.r
        items = r.mapping(node, "expect", EXPECT_KEYS)
        if not items:
            raise r.fail(node, "expect: say what to check")
        checks: list[Check] = []
        for kind, (key_node, value) in items.items():
            where = r.where(key_node)
            if kind == "state":
                checks.append(Check(where, kind, "", r.text(value, "expect.state", sorted(STATES))))
            elif kind == "screen":
                checks += self.screen(value, where)
            elif kind == "devices":
                checks += self.devices(value)
            elif kind == "journal":
                checks += self.journal(value)
            elif kind == "receipt":
                for sub, (sub_key, sub_value) in r.mapping(
                    value, "expect.receipt", ("contains", "absent")
                ).items():
                    texts = self.texts(sub_value, f"expect.receipt.{sub}")
                    checks.append(Check(r.where(sub_key), "receipt", sub, texts))
            elif kind in ("receipts", "cash_taken", "advices_pending"):
                checks.append(Check(where, kind, "", self.matcher(value, f"expect.{kind}")))
            elif kind == "host_transactions":
                checks += self.host_transactions(value, where)
            elif kind == "balances":
                checks += self.balances(value)
            elif kind == "ledger":
                checks += self.ledger(value)
            else:
                texts = self.texts(value, "expect.recovery")
                checks.append(Check(where, "recovery", "contains", texts))
        return tuple(checks)

    def texts(self, node: Node, what: str) -> tuple[str, ...]:
        r = self.r
        if isinstance(node, SequenceNode):
            return tuple(r.text(n, what) for n in node.value)
        return (r.text(node, what),)

    def matcher(self, node: Node, what: str) -> Any:
        """An exact value, or {at_least: N}, {at_most: N}, {not: V}."""
        r = self.r
        if isinstance(node, MappingNode):
            fields = r.mapping(node, what, MATCHER_KEYS)
            if not fields:
                raise r.fail(node, f"{what}: give at_least, at_most or not")
            return {k: r.value(v) for k, (_, v) in fields.items()}
        return r.value(node)

    def screen(self, node: Node, where: Where) -> list[Check]:
        r = self.r
        if isinstance(node, ScalarNode):
            return [Check(where, "screen", "name", r.text(node, "expect.screen"))]
        checks = []
        for key, (key_node, value) in r.mapping(
            node, "expect.screen", ("name", "contains")
        ).items():
            if key == "name":
                checks.append(
                    Check(r.where(key_node), "screen", "name", r.text(value, "expect.screen.name"))
                )
            else:
                checks.append(
                    Check(
                        r.where(key_node),
                        "screen",
                        "contains",
                        self.texts(value, "expect.screen.contains"),
                    )
                )
        return checks

    def devices(self, node: Node) -> list[Check]:
        r = self.r
        checks = []
        for device, (_, fields_node) in r.mapping(node, "expect.devices", DEVICES).items():
            for name, (key_node, value) in r.mapping(
                fields_node, f"expect.devices.{device}", ()
            ).items():
                checks.append(
                    Check(
                        r.where(key_node), "devices", f"{device}.{name}", self.matcher(value, name)
                    )
                )
        return checks

    def journal(self, node: Node) -> list[Check]:
        r = self.r
        checks = []
        for sub, (key_node, value) in r.mapping(
            node, "expect.journal", ("present", "absent", "in_order", "count")
        ).items():
            if sub == "count":
                for event, (event_key, count) in r.mapping(
                    value, "expect.journal.count", ()
                ).items():
                    r.journal_event(event_key, "expect.journal.count")
                    checks.append(
                        Check(
                            r.where(event_key),
                            "journal",
                            f"count.{event}",
                            self.matcher(count, event),
                        )
                    )
            else:
                events = self.texts(value, sub)
                nodes = value.value if isinstance(value, SequenceNode) else [value]
                for event_node in nodes:
                    r.journal_event(event_node, f"expect.journal.{sub}")
                checks.append(Check(r.where(key_node), "journal", sub, events))
        return checks

    def host_transactions(self, node: Node, where: Where) -> list[Check]:
        r = self.r
        if isinstance(node, MappingNode):
            fields = r.mapping(node, "expect.host_transactions", ("exactly", "include", "absent"))
            return [
                Check(r.where(k), "host_transactions", sub, self.transactions(v, sub))
                for sub, (k, v) in fields.items()
            ]
        return [Check(where, "host_transactions", "exactly", self.transactions(node, "exactly"))]

    def transactions(self, node: Node, what: str) -> tuple[str, ...]:
        r = self.r
        found = []
        for item in r.sequence(node, f"expect.host_transactions.{what}"):
            text = r.text(item, "expect.host_transactions")
            if not _TRANSACTION.match(text):
                raise r.fail(item, f"{text!r}: expected 'KIND', 'KIND CODE' or 'KIND CODE CENTS'")
            found.append(text)
        return tuple(found)

    def balances(self, node: Node) -> list[Check]:
        r = self.r
        if not isinstance(node, MappingNode):
            raise r.fail(node, "expect.balances: expected a mapping of account: cents")
        checks = []
        for key_node, value in node.value:
            number = r.identifier(key_node, "expect.balances", _ACCOUNT, "an 8-digit account")
            if isinstance(value, MappingNode):
                fields = r.mapping(value, f"expect.balances.{number}", ("ledger", "available"))
                expected = {k: r.whole(v, k, low=None) for k, (_, v) in fields.items()}
            else:
                cents = r.whole(value, f"expect.balances.{number}", low=None)
                expected = {"ledger": cents, "available": cents}
            checks.append(Check(r.where(key_node), "balances", number, expected))
        return checks

    def ledger(self, node: Node) -> list[Check]:
        r = self.r
        if not isinstance(node, MappingNode):
            raise r.fail(node, "expect.ledger: expected a mapping of account: [amounts]")
        checks = []
        for key_node, value in node.value:
            number = r.identifier(key_node, "expect.ledger", _ACCOUNT, "an 8-digit account")
            amounts = tuple(r.whole(v, "amount", low=None) for v in r.sequence(value, "ledger"))
            checks.append(Check(r.where(key_node), "ledger", number, amounts))
        return checks


def _fault_names(target: str) -> frozenset[str]:
    return fault_names(catalogue_kind(target))


def _fault_params(target: str) -> Mapping[str, Mapping[str, FaultParam]]:
    return fault_params(catalogue_kind(target)) or {}


# ----- many files ------------------------------------------------------------------------------


def scenario_files(paths: Iterable[Path | str]) -> list[Path]:
    """Files named and *.yaml/*.yml files inside folders named, sorted within each folder."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
        else:
            files.append(path)
    return files


def load_scenarios(paths: Iterable[Path | str]) -> list[Scenario]:
    """Load every file before running any; the first wrong one raises DataFileError."""
    files = scenario_files(paths)
    if not files:
        raise DataFileError("<arguments>", None, "no scenario files found")
    return [load_scenario(path) for path in files]
