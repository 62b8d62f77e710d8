"""Runs one scenario: a fresh bank database (copied from a seeded template), the ISO 8583 host
(behind a fault proxy if the scenario makes it fail), a SimulatedAtm on a VirtualClock; then
checks what was expected.
"""

from __future__ import annotations

import binascii
import dataclasses
import datetime as dt
import logging
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from config.data_files import VERSION
from config.settings import Settings
from device.clock import VirtualClock
from device.controller.controller_events import ControllerEvent
from device.journal import JournalEntry
from device.screens import RenderedScreen
from device.sim.scenarios.databases import ScenarioBank, keep_seed
from device.sim.scenarios.expectations import Failure
from device.sim.scenarios.host_faults import HostBehaviour, HostFaultProxy
from device.sim.scenarios.reader import Where
from device.sim.scenarios.schema import (
    Advance,
    DeviceFault,
    Expect,
    HostFault,
    InsertCard,
    Leave,
    Operator,
    PowerFailure,
    Press,
    Restart,
    Scenario,
    Step,
    Take,
    TypeDigits,
    Wait,
)
from device.sim.simulated_atm import AtmRunError, HostAddress, SimulatedAtm
from host import bank_admin, crypto_keys
from host.database import create_database, drop_database, make_engine
from host.server import HostServer
from host.service import Bank
from peripherals.cards import load_wallet
from peripherals.harness.profile import (
    DEFAULT_PROFILE,
    PROJECT_ROOT,
    AtmProfile,
    DeviceSection,
    load_profile,
)
from peripherals.receipt_printer import IMAGES_ON_REQUEST

log = logging.getLogger(__name__)

SCENARIO_START = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
DEFAULT_BCRYPT_ROUNDS = 4
NETWORK_KINDS = ("sign_on", "echo")


class ScenarioRunError(RuntimeError):
    """The runner itself could not set up a scenario (database, host, ATM)."""


class PowerCut(BaseException):
    """Raised from the journal hook so the controller stops where it stands."""


@dataclass
class ScenarioResult:
    scenario: Scenario
    status: str = "passed"  # passed, failed, error, xfail (known failure), xpass
    failures: list[Failure] = field(default_factory=list)
    error: str = ""
    wall_seconds: float = 0.0
    virtual_seconds: float = 0.0
    checks: int = 0
    replay: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("passed", "xfail")


class ScenarioRunner:
    """Runs scenarios against databases made on one PostgreSQL server.

    `server_url` is any database URL on that server (the runner makes its own databases
    beside it). Bank secrets come from `settings`; bcrypt runs at `bcrypt_rounds` (default 4,
    the scenarios never test bcrypt's cost, and seeding at 12 rounds takes seconds).
    """

    def __init__(
        self,
        server_url: str,
        settings: Settings,
        *,
        seed: int = 0,
        bcrypt_rounds: int = DEFAULT_BCRYPT_ROUNDS,
        work_dir: Path | None = None,
        template: str | None = None,
    ) -> None:
        self.server_url = server_url
        self.settings = dataclasses.replace(settings, bcrypt_rounds=bcrypt_rounds)
        self.seed = seed
        self._own_work_dir = work_dir is None
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="atm-scenarios-"))
        self._admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
        # A template another runner made (a parallel run's workers share the parent's) is
        # used as it is and left to its maker to drop.
        self._template: str | None = template
        self._own_template = template is None
        self._bank: ScenarioBank | None = None
        self.template_seconds = 0.0
        self.scenarios_run = 0  # by this runner (in its process)

    # ----- databases --------------------------------------------------------------------------

    def _url(self, database: str) -> str:
        return make_url(self.server_url).set(database=database).render_as_string(False)

    def _template_database(self) -> str:
        """A database migrated and seeded once per runner (its seed kept aside for resets)."""
        if self._template is None:
            started = time.perf_counter()
            name = f"atm_scenario_template_{uuid.uuid4().hex[:8]}"
            with self._admin.connect() as conn:
                create_database(conn, name)
            url = self._url(name)
            bank_admin.seed_bank(dataclasses.replace(self.settings, database_url=url))
            engine = make_engine(url)
            try:
                keep_seed(engine)
            finally:
                engine.dispose()
            self._template = name
            self.template_seconds = time.perf_counter() - started
        return self._template

    def template(self) -> str:
        """The seeded template's name (made now if need be): other runners may copy it."""
        return self._template_database()

    def _scenario_bank(self) -> ScenarioBank:
        if self._bank is None:
            self._bank = ScenarioBank(self._admin, self._template_database(), self._url)
        return self._bank

    def prepare(self) -> float:
        """Make the seeded template and this runner's bank now (else the first run does);
        returns the seconds the template took."""
        self._scenario_bank()
        return self.template_seconds

    def close(self) -> None:
        if self._bank is not None:
            self._bank.close()
            self._bank = None
        if self._template is not None and self._own_template:
            with self._admin.connect() as conn:
                drop_database(conn, self._template)
            self._template = None
        self._admin.dispose()
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> ScenarioRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- running ----------------------------------------------------------------------------

    def run(self, scenario: Scenario) -> ScenarioResult:
        result = ScenarioResult(scenario, replay=replay_command(scenario, self.seed))
        self.scenarios_run += 1
        bank = self._scenario_bank()  # made once, before the clock starts for the first
        started = time.perf_counter()
        random.seed(self.seed)
        state_dir = self.work_dir / f"{scenario.path.stem}-{uuid.uuid4().hex[:6]}"
        try:
            run = _Run(scenario, self.settings, bank.fresh(), state_dir)
            try:
                run.execute()
            finally:
                run.close()
                result.virtual_seconds = run.clock.monotonic()
            result.failures = run.failures
            result.checks = run.checks_done
        except Exception as err:  # a broken set-up is reported, and the next scenario runs
            log.exception("scenario %s could not run", scenario.name)
            result.error = f"{type(err).__name__}: {err}"
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)
        result.wall_seconds = time.perf_counter() - started
        failed = bool(result.failures or result.error)
        if scenario.known_failure:
            result.status = "xfail" if failed else "xpass"
        else:
            result.status = "error" if result.error else "failed" if failed else "passed"
        return result


def replay_command(scenario: Scenario, seed: int) -> str:
    return f"atm-sim scenario run {scenario.path} --seed {seed}"


# ----- one run ----------------------------------------------------------------------------------


@dataclass
class _Trigger:
    event: str
    where: Where
    action: Callable[[], None]
    fired: bool = False


class _Run:
    """The live pieces of one scenario and the code that drives and checks them."""

    def __init__(
        self, scenario: Scenario, settings: Settings, engine: sa.Engine, state_dir: Path
    ) -> None:
        self.scenario = scenario
        self.state_dir = state_dir
        self.clock = VirtualClock(SCENARIO_START)
        overrides: dict[str, Any] = dict(scenario.bank.settings)
        url = engine.url.render_as_string(hide_password=False)
        self.settings = dataclasses.replace(settings, database_url=url, **overrides)
        self.failures: list[Failure] = []
        self.checks_done = 0
        self.triggers: list[_Trigger] = []
        self.receipts_before: list[str] = []
        self.cash_taken = 0
        self.recovery: list[str] = []
        self.sim: SimulatedAtm | None = None
        self.engine = engine
        self.profile = self._profile()
        assert self.profile.host is not None, "the ATM profile names no host (MAC key)"
        self.mac_key = binascii.unhexlify(self.profile.host.mac_key)
        self._apply_bank_overrides()
        bank = Bank(self.engine, self.settings, clock=self.clock.now)
        self.server = HostServer(
            bank, crypto_keys.mac_key_lookup(self.engine, self.settings), now=self.clock.now
        )
        self.server.start()
        # The fault proxy stands between ATM and host only in a scenario that makes the host
        # fail; elsewhere the ATM talks to the host itself (two hops fewer per exchange).
        self.proxy: HostFaultProxy | None = None
        self.host_port = self.server.port
        if any(isinstance(step, HostFault) for step in scenario.steps):
            self.proxy = HostFaultProxy(
                ("127.0.0.1", self.server.port),
                clock=self.clock,
                mac_key=self.mac_key,
                atm_host_timeout=scenario.atm.host_timeout,
            )
            self.host_port = self.proxy.start()

    # ----- set-up -----------------------------------------------------------------------------

    def _profile(self) -> AtmProfile:
        setup = self.scenario.atm
        if setup.profile == "default":
            path = DEFAULT_PROFILE
        else:
            path = self.scenario.path.parent / setup.profile
            if not path.exists():
                path = PROJECT_ROOT / setup.profile
        profile = load_profile(path)
        devices = dict(profile.devices)
        # The checks read receipts as text; no one looks at their images (drawn if asked).
        _set_device_settings(devices, "receipt_printer", images=IMAGES_ON_REQUEST)
        if setup.cassettes:
            import yaml

            self.state_dir.mkdir(parents=True, exist_ok=True)
            cassette_file = self.state_dir / "cassettes.yaml"
            cassette_file.write_text(
                yaml.safe_dump(
                    {
                        "version": VERSION,
                        "currency": "978",
                        "cassettes": [dict(c) for c in setup.cassettes],
                    }
                )
            )
            _set_device_settings(devices, "cash_dispenser", cassettes=str(cassette_file))
        return dataclasses.replace(profile, devices=devices)

    def _apply_bank_overrides(self) -> None:
        bank = self.scenario.bank
        if not bank.balances and not bank.cards:
            return
        wallet_path = self.profile.devices["card_reader"].settings.get("wallet")
        wallet = load_wallet(Path(wallet_path)) if wallet_path else {}
        try:
            with Session(self.engine) as session, session.begin():
                for number, cents in bank.balances.items():
                    bank_admin.set_ledger_balance(
                        session, number, cents, SCENARIO_START - dt.timedelta(days=1)
                    )
                for card_id, override in bank.cards.items():
                    card = wallet.get(card_id)
                    if card is None:
                        raise ScenarioRunError(f"bank.cards: no card {card_id!r} in the wallet")
                    locked_for = override.locked_for
                    bank_admin.set_card_state(
                        session,
                        self.settings,
                        card.pan,
                        status=override.status,
                        failed_pin_attempts=override.failed_pin_attempts,
                        locked_until=None
                        if locked_for is None
                        else SCENARIO_START + dt.timedelta(seconds=locked_for),
                    )
        except bank_admin.UnknownBankObject as err:
            raise ScenarioRunError(f"bank: {err}") from err

    def _start_atm(self) -> None:
        self.sim = SimulatedAtm(
            self.profile,
            HostAddress("127.0.0.1", self.host_port, self.mac_key),
            self.state_dir / "atm",
            clock=self.clock,
            session_timeout_seconds=self.scenario.atm.session_timeout,
            host_timeout=self.scenario.atm.host_timeout,
            virtual_deadlines=True,
        )
        self.recovery = self.sim.start()
        # Each event as soon as it is on disk, inside the controller's own step: where
        # `on_event` faults and power cuts act.
        self.sim.journal.listeners.append(self._on_journal)

    def _on_journal(self, entries: list[JournalEntry]) -> None:
        for entry in entries:
            for trigger in self.triggers:
                if not trigger.fired and trigger.event == entry.event:
                    trigger.fired = True
                    trigger.action()

    def close(self) -> None:
        if self.sim is not None:
            self.sim.stop()
            self.sim = None
        if self.proxy is not None:
            self.proxy.stop()
        self.server.stop()  # the engine is the bank's, warm for the next scenario

    # ----- the timeline -----------------------------------------------------------------------

    def execute(self) -> None:
        self._start_atm()
        for step in self.scenario.steps:
            try:
                self._step(step)
            except PowerCut:
                self._cut_power()
            except (AtmRunError, ValueError, LookupError, OSError) as err:
                self.failures.append(
                    Failure(step.where, _describe(step), "the step to run", f"{err}")
                )
                return
            except Exception as err:  # the ATM itself raised: a product failure, not a set-up one
                log.warning("the ATM raised during %s", step.where, exc_info=True)
                self.failures.append(
                    Failure(
                        step.where,
                        _describe(step),
                        "the ATM to handle it",
                        f"{type(err).__name__} escaped the controller: {err}",
                    )
                )
                return
        for trigger in self.triggers:
            if not trigger.fired:
                self.failures.append(
                    Failure(trigger.where, "on_event", f"journal event {trigger.event!r}", "never")
                )
        if self.scenario.expect is not None:
            self._expect(self.scenario.expect)

    def _atm(self, step: Step) -> SimulatedAtm:
        if self.sim is None:
            raise AtmRunError("the ATM has no power; restart it first")
        return self.sim

    def _step(self, step: Step) -> None:
        if isinstance(step, Expect):
            self._expect(step)
        elif isinstance(step, InsertCard):
            self._atm(step).insert_card(step.card)
        elif isinstance(step, Press):
            for key in step.keys:
                self._atm(step).press(key)
        elif isinstance(step, TypeDigits):
            for digit in step.digits:
                self._atm(step).press(digit)
        elif isinstance(step, Take):
            self._take(step)
        elif isinstance(step, Leave):
            pass  # the item stays where it is until a timeout acts on it
        elif isinstance(step, Wait):
            self._atm(step).wait_for_state(step.state, step.seconds)
        elif isinstance(step, Advance):
            self.clock.advance(step.seconds)
            if self.sim is not None:
                self.sim.settle()
        elif isinstance(step, DeviceFault):
            self._later(step.on_event, step.where, lambda: self._inject(step))
        elif isinstance(step, HostFault):
            behaviour = HostBehaviour(
                step.mode, step.seconds, step.code, step.count, step.how, step.mtis
            )
            proxy = self.proxy
            assert proxy is not None, "a scenario with a host fault has its proxy"
            self._later(step.on_event, step.where, lambda: proxy.set(behaviour))
        elif isinstance(step, Operator):
            self._operator(step)
        elif isinstance(step, PowerFailure):
            self._later(step.on_event, step.where, _raise_power_cut)
        elif isinstance(step, Restart):
            if self.sim is not None:
                raise AtmRunError("restart: the ATM is running; cut its power first")
            self._start_atm()
            self.sim_settle()

    def sim_settle(self) -> None:
        if self.sim is not None:
            self.sim.settle()

    def _later(self, event: str | None, where: Where, action: Callable[[], None]) -> None:
        if event is None:
            action()
        else:
            self.triggers.append(_Trigger(event, where, action))

    def _inject(self, step: DeviceFault) -> None:
        sim = self.sim
        if sim is None:
            return
        extra: dict[str, Any] = {"on_command": step.on_command} if step.on_command else {}
        sim.bay.inject(step.target, step.name, mode=step.mode, **extra, **step.params)

    def _take(self, step: Take) -> None:
        sim = self._atm(step)
        if step.item == "cash":
            dispenser = sim.bay.cash_dispenser
            before = int(dispenser.taken_notes.amount)
            try:
                sim.take("cash")
            finally:  # a power cut may strike while the ATM reacts: the notes are still taken
                self.cash_taken += int(dispenser.taken_notes.amount) - before
        else:
            sim.take(step.item)

    def _operator(self, step: Operator) -> None:
        sim = self._atm(step)
        controller = sim.controller
        if step.action == "replenish":
            dispenser = sim.bay.cash_dispenser
            with dispenser.lock:
                dispenser.ledger.replenish(step.cassettes, empty_bins=step.empty_bins)
        elif step.action == "clear_fault":
            sim.bay.clear(step.target, step.fault)
        elif step.action == "load_paper":
            sim.bay.receipt_printer.load_paper()
        elif step.action == "empty_retain_bin":
            sim.bay.card_reader.empty_retain_bin()
        elif step.action == "out_of_service":
            # The controller's supervisor mode is its operator-initiated "not serving" state.
            if not controller.fire(ControllerEvent.ENTER_SUPERVISOR):
                raise AtmRunError(f"out_of_service: the ATM is in {controller.state}, not idle")
        elif step.action == "in_service" and not controller.fire(ControllerEvent.LEAVE_SUPERVISOR):
            raise AtmRunError(f"in_service: the ATM is in {controller.state}, not supervisor")
        sim.settle()

    def _cut_power(self) -> None:
        """The ATM stops where it stands: links and host link drop, nothing more is written."""
        sim, self.sim = self.sim, None
        if sim is None:
            return
        self.receipts_before += sim.receipts()
        sim.bay.stop()  # the devices go dark first, so the drivers cannot finish anything
        sim.stop()

    # ----- checks -----------------------------------------------------------------------------

    def _expect(self, step: Expect) -> None:
        for expectation in step.checks:
            self.checks_done += 1
            try:
                failure = expectation.check(self)
            except (AtmRunError, LookupError, ValueError, sa.exc.SQLAlchemyError) as err:
                failure = Failure(
                    expectation.where, expectation.name, repr(expectation.expected), str(err)
                )
            if failure is not None:
                self.failures.append(failure)

    # The checks see the run only through these (expectations.RunView).

    def atm_state(self) -> str:
        return self.sim.controller.state if self.sim is not None else "power_off"

    def screen(self) -> RenderedScreen:
        return self._live().controller.screen

    def _live(self) -> SimulatedAtm:
        if self.sim is None:
            raise AtmRunError("the ATM has no power")
        return self.sim

    def device_status(self, device: str) -> dict[str, Any]:
        status: dict[str, Any] = dict(self._live().bay.emulator(device).status())
        if device == "cash_dispenser":
            status["cassette_value"] = sum(
                int(c["count"]) * int(c["denomination"]) for c in status["cassettes"]
            )
            status["cassette_notes"] = sum(int(c["count"]) for c in status["cassettes"])
        return status

    def journal_events(self) -> list[str]:
        from device.journal import Journal

        if self.sim is not None:
            return [e.event for e in self.sim.journal.entries()]
        journal = Journal(self.state_dir / "atm" / "journal.jsonl")
        try:
            return [e.event for e in journal.entries()]
        finally:
            journal.close()

    def receipts(self) -> list[str]:
        return self.receipts_before + (self.sim.receipts() if self.sim is not None else [])

    def pending_advices(self) -> list[str]:
        return [a.kind for a in self._live().controller.advices.pending()]

    def host_transactions(self) -> list[tuple[str, str, int]]:
        return bank_admin.host_transactions(self.engine, frozenset(NETWORK_KINDS))

    def balance(self, number: str) -> tuple[int, int]:
        return bank_admin.balances(self.engine, number)

    def ledger_lines(self, number: str) -> list[int]:
        return bank_admin.posted_amounts(self.engine, number)


# ----- helpers ----------------------------------------------------------------------------------


def _set_device_settings(devices: dict[str, DeviceSection], name: str, **settings: Any) -> None:
    section = devices[name]
    devices[name] = dataclasses.replace(section, settings={**section.settings, **settings})


def _raise_power_cut() -> None:
    raise PowerCut


def _describe(step: Step) -> str:
    return type(step).__name__.lower()
