"""The fleet in one process: N ATMs against one bank, one thread each, every invariant checked
at checkpoints; an AtmSlot per ATM that can crash and restart it, and the report of a run.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device.clock import VirtualClock
from device.controller.atm_controller import CUSTOMER_INPUT_STATES
from device.sim.bank_stack import BankStack
from device.sim.customers import Population, atm_profile, prepare_population
from device.sim.fleet.robot_customer import (
    HEALTH_CHECK_SECONDS,
    FleetError,
    SessionDriver,
    SessionPlan,
    SessionResult,
    classify,
    journal_since,
    last_seq,
    plan_fleet,
)
from device.sim.invariants import (
    Baseline,
    Check,
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

log = logging.getLogger(__name__)

FLEET_SETTLE_SECONDS = 0.01
# Health checks an idle ATM gets to send its advices and settle a deferred withdrawal before a
# check; the first one normally suffices once the host and the dispenser answer again.
SETTLE_HEALTH_CHECKS = 24
PROGRESS_SECONDS = 30.0  # a progress line at least this often (and at every tenth of the run)
TEST_MAC_KEY = "2B7E151628AED2A6ABF7158809CF4F3C"


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
        link_backend: str = "pty",
    ) -> None:
        self.terminal_id = terminal_id
        self.state_dir = state_dir
        self.profile = atm_profile(terminal_id, wallet).with_backend(link_backend)
        self.host = host
        # On inline links the exact settle (every link passed, nothing in flight) is cheap and
        # steps the ATM far less than a quiet spell; on ptys each of its checks is a system call
        # per link, which for hundreds of ATMs costs more than the spell (both measured).
        self.settle_seconds = 0.0 if link_backend == "inline" else settle_seconds
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
            state = sim.controller.state
            reader = sim.bay.card_reader.state.value
            if (state == "idle" and reader == "none") or state == "out_of_service":
                return
            if reader == "gate":
                sim.take("card")
            elif sim.bay.cash_dispenser.presented.notes and state == "presenting_cash":
                sim.take("cash")
            elif state in CUSTOMER_INPUT_STATES and not pressed.get(state):
                pressed[state] = True
                sim.press("cancel")
            else:
                sim.jump_to_next_timer(otherwise=HEALTH_CHECK_SECONDS)

    def settling(self) -> list[Settling]:
        """Withdrawals this ATM has not finished settling: advice queued, or deferred."""
        sim = self.atm
        return journal_settling(
            self.terminal_id, sim.journal.entries(), sim.controller.advices.pending()
        )

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
    settle_seconds: float = FLEET_SETTLE_SECONDS  # on inline links the exact rule (AtmSlot)
    host_timeout: float = 5.0
    checks_every: int = 0  # sessions per ATM between invariant checks; 0: only at the end
    # Mean real seconds before each customer arrives at an ATM (exponential, seeded per ATM);
    # 0: each session follows the last at once.
    think_seconds: float = 0.0
    # The ATMs' device links (peripherals/links/backends.py): "inline" spares a large fleet
    # the OS ptys and a thread hand-over per frame, where the pty is not what is tested.
    link_backend: str = "pty"


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
            link_backend=self.config.link_backend,
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
        arrivals = random.Random(f"{self.config.seed}/{slot.terminal_id}/{offset}")
        for number, plan in enumerate(plans, start=offset):
            if self.config.think_seconds > 0:
                time.sleep(arrivals.expovariate(1 / self.config.think_seconds))
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
            if sim.controller.state != "out_of_service":
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
            settling += journal_settling(s.terminal_id, entries, s.atm.controller.advices.pending())
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
