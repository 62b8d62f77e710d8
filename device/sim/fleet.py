"""A fleet of simulated ATMs against one bank: N ATMs on their own ptys and terminal ids, random
customers from a seed, one thread per ATM; a summary of throughput, latency and outcomes.
"""

from __future__ import annotations

import binascii
import contextlib
import dataclasses
import json
import logging
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from config.log_format import configure_logging
from config.settings import Settings
from device.clock import VirtualClock
from device.controller.ports import DriverError
from device.sim.bank_stack import BankStack
from device.sim.customers import Population, SimCustomer, atm_profile, prepare_population
from device.sim.invariants import (
    Baseline,
    Check,
    DispenserCash,
    Settling,
    Snapshot,
    Suspect,
    check_all,
    dispenser_cash,
    journal_settling,
    journal_suspects,
    read_bank,
)
from device.sim.simulated_atm import HostAddress, SimulatedAtm
from host.database import database_url, scratch_database
from peripherals.cassettes import load_cassette_file

log = logging.getLogger(__name__)

FAST_CASH_KEYS = ("F1", "F2", "F3", "F4")  # 20.00, 50.00, 100.00, 200.00
TRANSFER_AMOUNTS = (1000, 2500, 5000, 10000, 25000)
MIX = (("withdrawal", 0.6), ("balance", 0.25), ("transfer", 0.15))
SESSION_SECONDS = 30.0  # real seconds a session may take before the run calls it stuck
HEALTH_CHECK_SECONDS = 5.0  # the controller's own interval, on its clock
FLEET_SETTLE_SECONDS = 0.01
STALL_REPEATS = 4
STALL_ADVANCE_SECONDS = 30.0  # a stalled session moves on to the ATM's inactivity timeout
# Health checks an idle ATM gets to send its advices and settle a deferred withdrawal before a
# check; the first one normally suffices once the host and the dispenser answer again.
SETTLE_HEALTH_CHECKS = 24
PROGRESS_SECONDS = 30.0  # a progress line at least this often (and at every tenth of the run)
INPUT_STATES = (
    "pin_entry",
    "transaction_menu",
    "account_selection",
    "amount_entry",
    "new_pin_entry",
    "showing_result",
)
TEST_MAC_KEY = "2B7E151628AED2A6ABF7158809CF4F3C"


class FleetError(RuntimeError):
    """The fleet could not be set up or driven (no bank, an ATM that would not start)."""


# ----- what customers do --------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionPlan:
    """One customer visit: who, what, from which account, how much."""

    customer: SimCustomer
    kind: str  # withdrawal | balance | transfer
    account: str  # checking | savings
    amount: int = 0  # cents; withdrawals use a fast-cash key for it
    amount_key: str = ""


def plan_session(rng: random.Random, customers: Sequence[SimCustomer]) -> SessionPlan:
    customer = rng.choice(customers)
    roll, kind = rng.random(), MIX[-1][0]
    for name, share in MIX:
        if roll < share:
            kind = name
            break
        roll -= share
    if kind == "transfer" and len(customer.account_types) < 2:
        kind = "balance"  # a transfer goes between the card's own two accounts
    account = rng.choice(customer.account_types)
    if kind == "withdrawal":
        index = rng.randrange(len(FAST_CASH_KEYS))
        return SessionPlan(
            customer, kind, account, (2000, 5000, 10000, 20000)[index], FAST_CASH_KEYS[index]
        )
    if kind == "transfer":
        return SessionPlan(customer, kind, account, rng.choice(TRANSFER_AMOUNTS))
    return SessionPlan(customer, kind, account)


def plan_fleet(
    customers: Sequence[SimCustomer], atms: int, sessions: int, seed: int
) -> list[list[SessionPlan]]:
    """Sessions dealt to ATMs in turn; each ATM's list depends only on the seed and its index."""
    counts = [sessions // atms + (1 if i < sessions % atms else 0) for i in range(atms)]
    plans = []
    for index, count in enumerate(counts):
        rng = random.Random(f"sessions:{seed}:{index}")
        plans.append([plan_session(rng, customers) for _ in range(count)])
    return plans


# ----- one session at one ATM -------------------------------------------------------------------


class CrashNow(Exception):
    """Raised by a session hook to cut the ATM's power at this point of the session."""


@dataclass(frozen=True)
class SessionResult:
    terminal_id: str
    kind: str
    outcome: str
    seconds: float


def classify(events: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """The outcome of a session from the journal entries it wrote."""
    names = [name for name, _ in events]
    if "suspect" in names:
        return "suspect"
    if "card_captured" in names:
        return "captured"
    if "authorised" in names:
        if "reversal_queued" in names:
            return "reversed"
        if "settlement_deferred" in names:
            return "settlement deferred"  # settled later, from the dispenser's counters
        return "approved" if "completion_queued" in names else "unsettled"
    for name, fields in events:
        if name in ("authorisation", "pin_verified") and fields.get("code") not in (None, "00"):
            return f"declined {fields['code']}"
    if any(name == "authorisation" and fields.get("code") == "00" for name, fields in events):
        return "approved"
    for name in ("host_unavailable", "card_unreadable", "device_failure", "out_of_service"):
        if name in names:
            return name.replace("_", " ")
    return "no transaction" if "card_read" in names else "not served"


SessionHook = Callable[[int], None]


class SessionDriver:
    """Plays one customer at one ATM, reacting to what the ATM shows, until it is idle again."""

    def __init__(
        self,
        sim: SimulatedAtm,
        plan: SessionPlan,
        *,
        before_action: SessionHook | None = None,
        leave_cash: bool = False,
        wrong_pin_first: bool = False,
    ) -> None:
        self.sim = sim
        self.plan = plan
        self.before_action = before_action
        self.leave_cash = leave_cash
        self.wrong_pin_first = wrong_pin_first
        self.actions = 0
        self._inserted = False
        self._pin_tries = 0
        self._chosen = False
        self._amount_given = False

    def _act(self, what: Callable[[], None]) -> None:
        if self.before_action is not None:
            self.before_action(self.actions)
        self.actions += 1
        what()

    def _press(self, *keys: str) -> None:
        def press() -> None:
            for key in keys:
                self.sim.bay.pin_pad.press(key)
            self.sim.settle()

        self._act(press)

    def run(self, seconds: float = SESSION_SECONDS) -> None:
        """Drive until the customer has been and gone; AtmRunError-like FleetError if stuck."""
        sim, atm = self.sim, self.sim.atm
        deadline = time.monotonic() + seconds
        seen, repeats = ("", ""), 0
        while time.monotonic() < deadline:
            sim.settle()
            state = atm.state
            # The same screen after a few tries: the ATM does not see the keys (a faulty pad
            # or link); stop pressing and let its own timers (inactivity) end the session.
            now_seen = (state, atm.screen.name)
            repeats = repeats + 1 if now_seen == seen else 0
            seen = now_seen
            stalled = repeats >= STALL_REPEATS
            if state == "idle":
                if self._inserted and sim.bay.card_reader.state.value == "none":
                    return
                if not self._inserted:
                    self._inserted = True
                    self._act(lambda: sim.insert_card(self.plan.customer.card_id))
                    continue
            if state == "out_of_service":
                return  # not served, or the ATM failed during the session (the card may be in)
            if sim.bay.card_reader.state.value == "gate":
                self._act(lambda: sim.take("card"))
                continue
            if not stalled and self._react(state):
                continue
            if not isinstance(sim.clock, VirtualClock):
                continue
            timer = atm.next_deadline
            if timer is not None:
                sim.clock.advance(max(timer - sim.clock.monotonic(), 0.0))
            elif state in ("idle", "out_of_service"):
                sim.clock.advance(HEALTH_CHECK_SECONDS)
            elif stalled:
                sim.clock.advance(STALL_ADVANCE_SECONDS)
        raise FleetError(
            f"{sim.terminal_id}: session stuck in {atm.state} ({atm.screen.name}) "
            f"after {seconds:g} s"
        )

    def _react(self, state: str) -> bool:
        """Do what a customer does in `state`; False when there is nothing to do but wait."""
        sim, plan = self.sim, self.plan
        screen = sim.atm.screen.name
        if screen == "more_time":
            self._press("F4")
            return True
        if state == "pin_entry":
            if self._pin_tries >= 3:
                self._press("F8")
            else:
                wrong = self.wrong_pin_first and self._pin_tries == 0
                pin = plan.customer.pin if not wrong else _other_pin(plan.customer.pin)
                self._pin_tries += 1
                self._press(*pin, "enter")
            return True
        if state == "transaction_menu":
            if self._chosen:
                self._press("F8")
            else:
                self._chosen = True
                key = {"withdrawal": "F1", "balance": "F2", "transfer": "F3"}[plan.kind]
                self._press(key)
            return True
        if state == "account_selection":
            self._press("F1" if plan.account == "checking" else "F2")
            return True
        if state == "amount_entry":
            if self._amount_given:
                self._press("F8")  # "cannot be dispensed here", or a second visit
            elif plan.kind == "withdrawal":
                self._amount_given = True
                self._press(plan.amount_key)
            else:
                self._amount_given = True
                self._press("F5", *str(plan.amount // 100), "enter")
            return True
        if state == "showing_result":
            # "No" on a result screen; the cancel key on a declined one (it has no keys).
            self._press("F8" if screen == "result" else "cancel")
            return True
        if (
            state == "presenting_cash"
            and not self.leave_cash
            and sim.bay.cash_dispenser.presented.notes
        ):
            self._act(lambda: sim.take("cash"))
            return True
        return False


def _other_pin(pin: str) -> str:
    return "".join(str((int(d) + 1) % 10) for d in pin)


def journal_since(sim: SimulatedAtm, seq: int) -> list[tuple[str, dict[str, Any]]]:
    return [(e.event, e.fields) for e in sim.journal.entries() if e.seq > seq]


def last_seq(sim: SimulatedAtm) -> int:
    tail = sim.journal.tail(1)
    return tail[0].seq if tail else 0


# ----- ATMs ---------------------------------------------------------------------------------------


class AtmSlot:
    """One ATM of the fleet: its terminal id and state dir; the SimulatedAtm can be replaced."""

    def __init__(
        self,
        terminal_id: str,
        state_dir: Path,
        wallet: Path,
        host: HostAddress,
        *,
        settle_seconds: float,
        host_timeout: float,
        clock: VirtualClock | None = None,
    ) -> None:
        self.terminal_id = terminal_id
        self.state_dir = state_dir
        self.profile = atm_profile(terminal_id, wallet)
        self.host = host
        self.settle_seconds = settle_seconds
        self.host_timeout = host_timeout
        self.clock = clock or VirtualClock()
        self.sim: SimulatedAtm | None = None
        self.restarts = 0
        self.recovery: list[str] = []

    def start(self) -> SimulatedAtm:
        sim = SimulatedAtm(
            self.profile,
            self.host,
            self.state_dir,
            clock=self.clock,
            host_timeout=self.host_timeout,
            settle_seconds=self.settle_seconds,
        )
        self.recovery += sim.start()
        self.sim = sim
        return sim

    @property
    def atm(self) -> SimulatedAtm:
        if self.sim is None:
            raise FleetError(f"{self.terminal_id} is not running")
        return self.sim

    def crash_and_restart(self) -> SimulatedAtm:
        """Power cut: the ATM stops where it is (devices keep their persistent state), then a
        new one starts on the same state dir and recovery settles what was open."""
        if self.sim is not None:
            self.sim.stop()
        self.sim = None
        self.restarts += 1
        return self.start()

    def stop(self) -> None:
        if self.sim is not None:
            self.sim.stop()
            self.sim = None

    def dispenser(self) -> Any:
        return self.atm.bay.cash_dispenser

    def tidy(self, seconds: float = 10.0) -> None:
        """Bring the ATM back to idle after an odd session: take what it hands out, cancel."""
        sim = self.atm
        deadline = time.monotonic() + seconds
        pressed: dict[str, bool] = {}
        while time.monotonic() < deadline:
            sim.settle()
            state = sim.atm.state
            reader = sim.bay.card_reader.state.value
            if (state == "idle" and reader == "none") or state == "out_of_service":
                return
            if reader == "gate":
                sim.take("card")
            elif sim.bay.cash_dispenser.presented.notes and state == "presenting_cash":
                sim.take("cash")
            elif state in INPUT_STATES and not pressed.get(state):
                pressed[state] = True
                sim.press("cancel")
            else:
                timer = sim.atm.next_deadline
                self.clock.advance(
                    max(timer - self.clock.monotonic(), 0.0)
                    if timer is not None
                    else HEALTH_CHECK_SECONDS
                )

    def settling(self) -> list[Settling]:
        """Withdrawals this ATM has not finished settling: advice queued, or deferred."""
        sim = self.atm
        return journal_settling(self.terminal_id, sim.journal.entries(), sim.atm.advices.pending())

    def drain_advices(
        self, seconds: float = 20.0, health_checks: int = SETTLE_HEALTH_CHECKS
    ) -> int:
        """Let the ATM send its stored advices and settle what it deferred (it does both at each
        idle health check, once the host and the dispenser answer); returns how many
        withdrawals are still settling when `seconds` of real time or `health_checks` pass."""
        sim = self.atm
        deadline = time.monotonic() + seconds
        left = self.settling()
        for _ in range(health_checks):
            if not left or time.monotonic() >= deadline:
                break
            self.clock.advance(HEALTH_CHECK_SECONDS)
            sim.settle()
            left = self.settling()
        return len(left)


# ----- the run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetConfig:
    atms: int
    sessions: int
    seed: int = 1
    customers: int = 20  # generated, on top of the seeded three
    settle_seconds: float = FLEET_SETTLE_SECONDS
    host_timeout: float = 5.0
    checks_every: int = 0  # sessions per ATM between invariant checks; 0: only at the end


@dataclass
class FleetReport:
    results: list[SessionResult]
    seconds: float
    checks: list[Check]
    suspects: list[str]
    setup_seconds: float = 0.0
    notes: list[str] = dataclasses.field(default_factory=list)
    violations: list[str] = dataclasses.field(default_factory=list)
    checks_run: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations and all(check.ok for check in self.checks)

    def outcomes(self) -> Counter[str]:
        return Counter(result.outcome for result in self.results)

    def slowest(self, count: int = 3) -> list[SessionResult]:
        return sorted(self.results, key=lambda r: r.seconds, reverse=True)[:count]

    def latency(self, percent: float) -> float:
        times = sorted(r.seconds for r in self.results)
        if not times:
            return 0.0
        index = min(len(times) - 1, max(0, round(percent / 100 * len(times) + 0.5) - 1))
        return times[index]

    def summary(self) -> list[str]:
        count = len(self.results)
        rate = count / self.seconds if self.seconds else 0.0
        lines = [
            f"sessions {count} in {self.seconds:.1f} s: {rate:.2f} sessions/s "
            f"(setup {self.setup_seconds:.1f} s)",
            f"session latency p50 {self.latency(50):.2f} s, p95 {self.latency(95):.2f} s, "
            f"p99 {self.latency(99):.2f} s",
            "outcomes: "
            + ", ".join(
                f"{name} {n} ({100 * n / count:.0f} %)"
                for name, n in sorted(self.outcomes().items())
            ),
        ]
        lines.append(
            "slowest: "
            + ", ".join(
                f"{r.terminal_id} {r.kind} {r.outcome} {r.seconds:.1f} s" for r in self.slowest()
            )
        )
        kinds = Counter(r.kind for r in self.results)
        lines.append("kinds: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
        lines += self.notes
        lines += [check.line() for check in self.checks]
        lines += [f"SUSPECT {line}" for line in self.suspects]
        lines += [f"VIOLATION {line}" for line in self.violations]
        lines.append(self.verdict())
        return lines

    def verdict(self) -> str:
        """The last word of a run: every invariant held at every check, or how many failed."""
        checks = f"{self.checks_run} check(s)" if self.checks_run else "the final check"
        failed = self.violations or [c.line() for c in self.checks if not c.ok]
        if not failed:
            return f"every invariant held at {checks}"
        return f"VIOLATIONS: {len(failed)} failed check(s) over {checks}; see the lines above"


class Progress:
    """Progress lines while a run goes: sessions done, sessions per second, time left; one at
    every tenth of the run and at least every PROGRESS_SECONDS of real time."""

    def __init__(self, total: int, started: float, out: Callable[[str], None]) -> None:
        self.total = total
        self.started = started
        self.out = out
        self.every = max(1, total // 10)
        self._last = started
        self._lock = threading.Lock()

    def line(self, done: int, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        left = (self.total - done) / rate if rate else 0.0
        share = 100 * done // max(self.total, 1)
        return (
            f"progress: {done}/{self.total} sessions ({share} %), {rate:.2f} sessions/s, "
            f"{_duration(elapsed)} so far, about {_duration(left)} left"
        )

    def session_done(self, done: int) -> None:
        now = time.monotonic()
        with self._lock:
            if done % self.every and now - self._last < PROGRESS_SECONDS:
                return
            self._last = now
        self.out(self.line(done, now))


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


class Fleet:
    """N ATMs against one bank. `with Fleet(config, bank, run_dir) as fleet: fleet.run()`."""

    def __init__(
        self,
        config: FleetConfig,
        bank: BankStack | None,
        run_dir: Path,
        *,
        out: Callable[[str], None] = print,
    ) -> None:
        self.config = config
        self._bank = bank
        self.run_dir = run_dir
        self.out = out
        self.population: Population | None = None
        self.slots: list[AtmSlot] = []
        self.baseline = Baseline(0, 0)
        self.results: list[SessionResult] = []
        self.checks: list[Check] = []
        self.violations: list[str] = []  # every failed check at any checkpoint
        self.errors: Counter[str] = Counter()  # exceptions the ATM application let out
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._progress: Progress | None = None
        self.checks_run = 0
        self.setup_seconds = 0.0

    @property
    def bank(self) -> BankStack:
        if self._bank is None:
            raise FleetError("this part of the fleet runs without the bank in its process")
        return self._bank

    # ----- life -------------------------------------------------------------------------------

    def make_slot(self, index: int, terminal_id: str) -> AtmSlot:
        """ATM number `index` (chaos overrides it to put a host proxy in between)."""
        assert self.population is not None
        return AtmSlot(
            terminal_id,
            self.run_dir / "atms" / terminal_id,
            self.population.wallet_path,
            self.bank.address_for(TEST_MAC_KEY),
            settle_seconds=self.config.settle_seconds,
            host_timeout=self.config.host_timeout,
        )

    def __enter__(self) -> Fleet:
        started = time.monotonic()
        config = self.config
        self.population = prepare_population(
            self.bank.settings,
            self.run_dir,
            atms=config.atms,
            generated=config.customers,
            seed=config.seed,
        )
        self._pool = ThreadPoolExecutor(max_workers=config.atms, thread_name_prefix="atm")
        try:
            for index, terminal_id in enumerate(self.population.terminal_ids):
                self.slots.append(self.make_slot(index, terminal_id))
            list(self._pool.map(lambda slot: slot.start(), self.slots))
            for slot in self.slots:
                slot.atm.settle()
            self.baseline = Baseline.of(self.snapshot())
        except BaseException:
            self.__exit__()
            raise
        self.setup_seconds = time.monotonic() - started
        return self

    def __exit__(self, *exc: object) -> None:
        for slot in self.slots:
            try:
                slot.stop()
            except Exception as err:  # stopping goes on for the other ATMs
                log.warning("stopping %s: %s", slot.terminal_id, err)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # ----- running ----------------------------------------------------------------------------

    def run(self) -> FleetReport:
        assert self.population is not None and self._pool is not None
        config = self.config
        plans = plan_fleet(self.population.customers, config.atms, config.sessions, config.seed)
        rounds = max(len(p) for p in plans) if plans else 0
        step = config.checks_every or rounds or 1
        started = time.monotonic()
        self._progress = Progress(config.sessions, started, self.out)
        done = 0
        for first in range(0, rounds, step):
            batches = [p[first : first + step] for p in plans]
            offsets = [first] * len(batches)
            list(self._pool.map(self._run_batch, self.slots, batches, offsets))
            done += sum(len(b) for b in batches)
            if first + step < rounds:
                self.checkpoint(f"after {done} sessions")
        elapsed = time.monotonic() - started
        self.checkpoint("final", final=True)
        return FleetReport(
            list(self.results),
            elapsed,
            list(self.checks),
            self.suspect_lines(),
            self.setup_seconds,
            self.report_notes(),
            list(self.violations),
            self.checks_run,
        )

    def report_notes(self) -> list[str]:
        restarts = sum(slot.restarts for slot in self.slots)
        notes = [f"ATM restarts {restarts}"] if restarts else []
        notes += [f"ATM ERROR x{n}: {text}" for text, n in sorted(self.errors.items())]
        return notes

    def _run_batch(self, slot: AtmSlot, plans: list[SessionPlan], offset: int) -> None:
        for number, plan in enumerate(plans, start=offset):
            result = self.run_session(slot, plan, number)
            with self._lock:
                self.results.append(result)
                count = len(self.results)
            if self._progress is not None:
                self._progress.session_done(count)

    def run_session(self, slot: AtmSlot, plan: SessionPlan, number: int) -> SessionResult:
        started = time.monotonic()
        start_seq = last_seq(slot.atm)
        try:
            self._prepare(slot)
            SessionDriver(slot.atm, plan).run()
            outcome = classify(journal_since(slot.atm, start_seq))
        except Exception as err:  # the ATM application failed: its watchdog restarts it
            outcome = self.failed(slot, number, err)
        self.tidy(slot)
        return SessionResult(slot.terminal_id, plan.kind, outcome, time.monotonic() - started)

    def failed(self, slot: AtmSlot, number: int, err: Exception) -> str:
        """Note an ATM that failed in a session; "stuck" or "ATM error" as its outcome."""
        log.warning("%s: session %d: %s: %s", slot.terminal_id, number, type(err).__name__, err)
        if isinstance(err, FleetError):
            return "stuck"
        with self._lock:
            self.errors[f"{type(err).__name__}: {err}"] += 1
        return "ATM error"

    def tidy(self, slot: AtmSlot) -> None:
        """Back to idle; an ATM whose application fails on the way is restarted (a watchdog)."""
        for _attempt in (1, 2):
            try:
                slot.tidy()
                return
            except Exception as err:
                if not isinstance(err, FleetError):
                    with self._lock:
                        self.errors[f"{type(err).__name__}: {err}"] += 1
                log.warning("%s: restarting the ATM (%s)", slot.terminal_id, err)
                slot.crash_and_restart()

    def _prepare(self, slot: AtmSlot) -> None:
        """An ATM out of service gets its health checks until it is back (or gives up)."""
        sim = slot.atm
        for _ in range(3):
            if sim.atm.state != "out_of_service":
                return
            slot.clock.advance(HEALTH_CHECK_SECONDS)
            sim.settle()

    # ----- checking ---------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        settings = self.bank.settings
        bank = read_bank(
            self.bank.engine, settings.daily_withdrawal_limit, settings.daily_transfer_limit
        )
        dispensers = tuple(dispenser_cash(s.terminal_id, s.dispenser()) for s in self.slots)
        suspects: list[Suspect] = []
        settling: list[Settling] = []
        for s in self.slots:
            entries = list(s.atm.journal.entries())
            suspects += journal_suspects(s.terminal_id, entries)
            settling += journal_settling(s.terminal_id, entries, s.atm.atm.advices.pending())
        return Snapshot(bank, dispensers, tuple(suspects), tuple(settling))

    def settle_all(self) -> int:
        """Every ATM back to idle with its advices sent and deferred withdrawals settled, as far
        as a few health checks go; returns how many withdrawals are still settling."""
        assert self._pool is not None

        def settle(slot: AtmSlot) -> int:
            self.tidy(slot)
            try:
                return slot.drain_advices()
            except Exception as err:
                self.failed(slot, -1, err)
                slot.crash_and_restart()
                return slot.drain_advices()

        return sum(self._pool.map(settle, self.slots))

    def checkpoint(self, label: str, *, final: bool = False) -> list[Check]:
        """Check every invariant once the ATMs are idle and have settled what they could.

        What is still settling then (an advice the host has not acknowledged, a withdrawal
        deferred until the dispenser answers) is counted in the figures for exactly what it
        handed out; at the final check it is a violation. A passing check is one line; each
        failed check is a line of its own starting with VIOLATION.
        """
        self.settle_all()
        checks = check_all(self.snapshot(), self.baseline, final=final)
        self.checks_run += 1
        failed = [c for c in checks if not c.ok]
        if final:
            self.out(f"invariants {label}:")
            for check in checks:
                self.out(f"  {check.line()}")
        elif not failed:
            settling = next(c for c in checks if c.name == "withdrawals settled")
            self.out(f"invariants {label}: all {len(checks)} hold ({settling.figure})")
        else:
            self.out(f"invariants {label}: {len(failed)} of {len(checks)} FAILED")
        for check in failed:
            self.out(f"VIOLATION {label}: {check.name}: {check.figure}")
        self.violations += [f"{label}: {c.line()}" for c in failed]
        if final:
            self.checks = checks
        return checks

    def suspect_lines(self) -> list[str]:
        return [
            f"{s.terminal_id} STAN {s.stan}: {s.amount} cents, the ATM could not tell"
            for s in self.snapshot().suspects
        ]


# ----- more ATMs than one process can hold ------------------------------------------------------

# select() (used by the pty links and by pyserial) cannot watch a descriptor above 1023, and each
# ATM holds about 32 (4 ptys, and pyserial adds two pipes per port): one process serves at most
# this many ATMs; a bigger fleet runs in several processes against the same host.
SHARD_ATMS = 25
START_AT_ONCE = 4
SHARD_START_SECONDS = 300.0


@dataclass(frozen=True)
class ShardSpec:
    """What one ATM process of a sharded fleet runs (written as JSON for the child)."""

    run_dir: str
    wallet: str
    host_port: int
    indices: list[int]  # positions of this shard's ATMs in the whole fleet
    terminal_ids: list[str]
    atms: int
    sessions: int
    seed: int
    settle_seconds: float
    host_timeout: float
    customers_file: str
    result_file: str
    idle_seconds: float = 0.0


class FleetShard(Fleet):
    """Some of the fleet's ATMs in a child process: runs their sessions, settles their advices,
    and writes results, dispenser counts, SUSPECTs and its own costs for the parent to check."""

    def __init__(self, spec: ShardSpec) -> None:
        config = FleetConfig(
            atms=spec.atms,
            sessions=spec.sessions,
            seed=spec.seed,
            customers=0,
            settle_seconds=spec.settle_seconds,
            host_timeout=spec.host_timeout,
        )
        super().__init__(config, None, Path(spec.run_dir), out=lambda _: None)
        self.spec = spec
        self.rss_bare = _peak_rss()  # the interpreter and its imports, before any ATM
        raw = json.loads(Path(spec.customers_file).read_text(encoding="utf-8"))
        self.customers = [
            SimCustomer(c["card_id"], c["pin"], c["pan"], tuple(map(tuple, c["accounts"])))
            for c in raw
        ]

    def make_slot(self, index: int, terminal_id: str) -> AtmSlot:
        return AtmSlot(
            terminal_id,
            self.run_dir / "atms" / terminal_id,
            Path(self.spec.wallet),
            HostAddress("127.0.0.1", self.spec.host_port, binascii.unhexlify(TEST_MAC_KEY)),
            settle_seconds=self.config.settle_seconds,
            host_timeout=self.config.host_timeout,
        )

    def __enter__(self) -> FleetShard:
        started = time.monotonic()
        self._pool = ThreadPoolExecutor(
            max_workers=len(self.spec.indices), thread_name_prefix="atm"
        )
        try:
            for index, terminal_id in zip(self.spec.indices, self.spec.terminal_ids, strict=True):
                self.slots.append(self.make_slot(index, terminal_id))
            # A few at a time: hundreds of device handshakes at once on a busy machine miss
            # their one-second reply timeouts.
            with ThreadPoolExecutor(max_workers=START_AT_ONCE) as starter:
                list(starter.map(_start_with_retries, self.slots))
        except BaseException:
            self.__exit__()
            raise
        self.setup_seconds = time.monotonic() - started
        return self

    def run_shard(self) -> dict[str, Any]:
        assert self._pool is not None
        result_file = Path(self.spec.result_file)
        result_file.with_suffix(".ready").touch()
        _wait_for(Path(self.spec.run_dir) / "go", SHARD_START_SECONDS)
        rss_started = _peak_rss()
        idle_cpu = _cpu_seconds()
        time.sleep(self.spec.idle_seconds)  # the cost of ATMs that only wait for customers
        idle_cpu = _cpu_seconds() - idle_cpu
        plans = plan_fleet(self.customers, self.config.atms, self.config.sessions, self.config.seed)
        mine = [plans[i] for i in self.spec.indices]
        cpu, started = _cpu_seconds(), time.time()
        list(self._pool.map(self._run_batch, self.slots, mine, [0] * len(mine)))
        finished = time.time()
        left = self.settle_all()
        return {
            "results": [dataclasses.asdict(r) for r in self.results],
            "dispensers": [
                dataclasses.asdict(dispenser_cash(s.terminal_id, s.dispenser())) for s in self.slots
            ],
            "suspects": [
                dataclasses.asdict(x)
                for s in self.slots
                for x in journal_suspects(s.terminal_id, s.atm.journal.entries())
            ],
            "advices_left": left,
            "settling": [dataclasses.asdict(x) for s in self.slots for x in s.settling()],
            "errors": dict(self.errors),
            "restarts": sum(s.restarts for s in self.slots),
            "setup_seconds": self.setup_seconds,
            "started": started,
            "finished": finished,
            "cpu_seconds": _cpu_seconds() - cpu,
            "idle_cpu_seconds": idle_cpu,
            "rss_bare": self.rss_bare,
            "rss_started": rss_started,
            "peak_rss": _peak_rss(),
        }


def _start_with_retries(slot: AtmSlot, attempts: int = 3) -> None:
    for attempt in range(1, attempts + 1):
        try:
            slot.start()
            return
        except (DriverError, OSError) as err:
            if attempt == attempts:
                raise
            log.warning("%s did not start (%s); trying again", slot.terminal_id, err)
            slot.stop()
            time.sleep(0.5 * attempt)


def _wait_for(path: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise FleetError(f"waited {seconds:g} s for {path.name}")
        time.sleep(0.05)


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def loaded_cash(population: Population) -> int:
    """Cents one ATM of the run is loaded with (every ATM loads the same cassettes)."""
    profile = atm_profile(population.terminal_ids[0], population.wallet_path)
    load = load_cassette_file(Path(profile.devices["cash_dispenser"].settings["cassettes"]))
    return sum(c.count * c.denomination for c in load.cassettes)


@dataclass
class ShardedRun:
    report: FleetReport
    shards: list[dict[str, Any]]


def run_sharded(
    config: FleetConfig,
    bank: BankStack,
    run_dir: Path,
    *,
    out: Callable[[str], None] = print,
    shard_atms: int = SHARD_ATMS,
    idle_seconds: float = 0.0,
) -> ShardedRun:
    """The fleet in child processes of at most `shard_atms` ATMs each, all against this
    process's bank; invariants checked here once every child has settled its advices."""
    started = time.monotonic()
    population = prepare_population(
        bank.settings, run_dir, atms=config.atms, generated=config.customers, seed=config.seed
    )
    customers_file = run_dir / "customers.json"
    customers_file.write_text(
        json.dumps([dataclasses.asdict(c) for c in population.customers]), encoding="utf-8"
    )
    customers_file.chmod(0o600)  # the simulated cards' PINs, like the generated seed file
    settings = bank.settings
    limits = (settings.daily_withdrawal_limit, settings.daily_transfer_limit)
    at_start = Snapshot(read_bank(bank.engine, *limits), ())
    baseline = Baseline(at_start.customer_money(), loaded_cash(population) * config.atms)
    children = []
    for first in range(0, config.atms, shard_atms):
        indices = list(range(first, min(first + shard_atms, config.atms)))
        spec = ShardSpec(
            str(run_dir),
            str(population.wallet_path),
            bank.server.port,
            indices,
            [population.terminal_ids[i] for i in indices],
            config.atms,
            config.sessions,
            config.seed,
            config.settle_seconds,
            config.host_timeout,
            str(customers_file),
            str(run_dir / f"shard-{first}.json"),
            idle_seconds,
        )
        spec_file = run_dir / f"shard-{first}.spec.json"
        spec_file.write_text(json.dumps(dataclasses.asdict(spec)), encoding="utf-8")
        command = [sys.executable, "-m", "device.sim.fleet", "--shard", str(spec_file)]
        child = subprocess.Popen(command)
        children.append((spec, child))
        # One process starts its ATMs at a time; all begin their sessions together.
        ready = Path(spec.result_file).with_suffix(".ready")
        deadline = time.monotonic() + SHARD_START_SECONDS
        while not ready.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    (run_dir / "go").touch()
    out(f"{len(children)} ATM processes of up to {shard_atms} ATMs each")
    shards = []
    for spec, child in children:
        if child.wait() != 0:
            raise FleetError(f"the ATM process of {spec.terminal_ids[0]}.. failed")
        shards.append(json.loads(Path(spec.result_file).read_text(encoding="utf-8")))
        out(f"progress: {spec.terminal_ids[0]}..{spec.terminal_ids[-1]} done")
    results = [SessionResult(**r) for s in shards for r in s["results"]]
    dispensers = tuple(DispenserCash(**d) for s in shards for d in s["dispensers"])
    suspects = tuple(Suspect(**x) for s in shards for x in s["suspects"])
    settling = tuple(Settling(**x) for s in shards for x in s["settling"])
    snapshot = Snapshot(read_bank(bank.engine, *limits), dispensers, suspects, settling)
    checks = check_all(snapshot, baseline)
    out("invariants final:")
    for check in checks:
        out(f"  {check.line()}")
    errors: Counter[str] = Counter()
    for s in shards:
        errors.update(s["errors"])
    restarts = sum(int(s["restarts"]) for s in shards)
    notes = [f"ATM restarts {restarts}"] if restarts else []
    notes += [f"ATM ERROR x{n}: {text}" for text, n in sorted(errors.items())]
    span = max(s["finished"] for s in shards) - min(s["started"] for s in shards)
    setup = time.monotonic() - started - span
    report = FleetReport(
        results,
        span,
        checks,
        [
            f"{x.terminal_id} STAN {x.stan}: {x.amount} cents, the ATM could not tell"
            for x in suspects
        ],
        setup,
        notes,
        [f"final: {c.line()}" for c in checks if not c.ok],
    )
    return ShardedRun(report, shards)


def shard_main(spec_file: str) -> int:
    configure_logging(os.environ.get("LOG_LEVEL", "ERROR"), os.environ.get("LOG_FORMAT", "auto"))
    spec = ShardSpec(**json.loads(Path(spec_file).read_text(encoding="utf-8")))
    with FleetShard(spec) as shard:
        result = shard.run_shard()
    Path(spec.result_file).write_text(json.dumps(result), encoding="utf-8")
    return 0


# ----- the bank of a run ------------------------------------------------------------------------


@contextlib.contextmanager
def fleet_bank(settings: Settings, run_dir: Path) -> Iterator[BankStack]:
    """A fresh bank for one run: a new database on DATABASE_URL's server (dropped at the end),
    or an embedded PostgreSQL under the run directory."""
    if settings.database_url:
        with (
            scratch_database(database_url(settings), "atm_fleet") as url,
            BankStack(dataclasses.replace(settings, database_url=url)) as stack,
        ):
            yield stack
    else:
        from host.database import stop_embedded

        home = run_dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        try:
            with BankStack(dataclasses.replace(settings, atm_sim_home=home)) as stack:
                yield stack
        finally:
            stop_embedded()


@contextlib.contextmanager
def run_directory(keep: bool = False) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="atm-fleet-"))
    path.chmod(0o755)  # the embedded PostgreSQL runs as its own user
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def print_lines(stream: TextIO | None = None) -> Callable[[str], None]:
    def out(line: str) -> None:
        print(line, file=stream, flush=True)

    return out


def run_fleet(
    settings: Settings,
    *,
    atms: int,
    sessions: int,
    seed: int,
    customers: int | None = None,
    out: Callable[[str], None] = print,
) -> int:
    """`atm-sim fleet`: 0 when every invariant holds, 1 otherwise."""
    generated = FleetConfig.customers if customers is None else customers
    config = FleetConfig(atms=atms, sessions=sessions, seed=seed, customers=generated)
    with run_directory() as run_dir, fleet_bank(settings, run_dir) as bank:
        out(
            f"fleet: {atms} ATMs, {sessions} sessions, seed {seed}; bank on port {bank.server.port}"
        )
        if atms > SHARD_ATMS:
            report = run_sharded(config, bank, run_dir, out=out).report
        else:
            with Fleet(config, bank, run_dir, out=out) as fleet:
                out(f"set up in {fleet.setup_seconds:.1f} s")
                report = fleet.run()
    out("summary:")
    for line in report.summary():
        out(f"  {line}")
    if not report.ok:
        out(f"invariant violated; replay with --seed {seed}")
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--shard":
        sys.exit("usage: python -m device.sim.fleet --shard SPEC.json (used by run_sharded)")
    sys.exit(shard_main(sys.argv[2]))
