"""The scenario file format (version 1) as typed objects, and the loader that checks a file
before anything runs: an error names the file, the line and the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from config.data_files import VERSION, DataFile, DataFileError, parse_data_file, read_data_file
from device.sim.customer_script import KEYS
from device.sim.scenarios.expectations import EXPECTATIONS, Expectation
from device.sim.scenarios.reader import ACCOUNT, DEVICES, STATES, Reader, Where
from peripherals.fault_catalogue import (
    FaultParam,
    catalogue_kind,
    fault_names,
    fault_params,
    missing_params,
    param_problem,
)

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
_CODE = re.compile(r"^[0-9A-Z]{2}$")


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
class Expect(Step):
    checks: tuple[Expectation, ...]


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
    def checks(self) -> Iterator[Expectation]:
        for step in (*self.steps, *([self.expect] if self.expect else [])):
            if isinstance(step, Expect):
                yield from step.checks


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
        self.r = Reader(path)
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
                number = r.identifier(key_node, "bank.balances", ACCOUNT, "an 8-digit account")
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

    def checks(self, node: Node) -> tuple[Expectation, ...]:
        r = self.r
        items = r.mapping(node, "expect", EXPECTATIONS)
        if not items:
            raise r.fail(node, "expect: say what to check")
        return tuple(
            check
            for kind, (key_node, value) in items.items()
            for check in EXPECTATIONS[kind].parse(r, key_node, value)
        )


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
