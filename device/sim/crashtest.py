"""`atm-sim crashtest`: real ATM and host processes killed at every I/O boundary of a withdrawal,
restarted on the same state, and the money checked: nothing lost, invented or silently held.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url

from config.settings import SETTING_NAMES, Settings
from device import crash_points
from device.advice_queue import AdviceQueue
from device.journal import Journal, JournalEntry
from device.sim.invariants import (
    Baseline,
    Check,
    DispenserCash,
    Snapshot,
    check_all,
    dispenser_cash,
    journal_suspects,
    read_bank,
)
from host import bank_admin
from host.database import create_database, database_url, drop_database, make_engine
from host.models import Account, Hold
from peripherals.cash_dispenser import CashDispenserEmulator
from peripherals.harness.profile import DEFAULT_PROFILE, PROJECT_ROOT, load_profile

ACCOUNT = "10000001"  # Alice's checking account in the sample bank
AMOUNT = 8000  # cents; typed as "Other amount" in whole euros
_LOGIN_AND_WITHDRAW = f"""
wait idle 15
insert alice
wait pin_entry 8
type 1234
press enter
wait transaction_menu 8
press F1
wait account_selection 8
press F1
wait amount_entry 8
press F5
type {AMOUNT // 100}
press enter
wait ejecting_card 8
take card
wait presenting_cash 8
"""
# What the customer does at a working ATM: takes the cash, or walks away and it is retracted.
SESSIONS: dict[str, str] = {
    "take": _LOGIN_AND_WITHDRAW + "take cash\nwait idle 8\n",
    "leave": _LOGIN_AND_WITHDRAW + "wait idle 8\n",
}
# After the crash: recovery and advice forwarding at start, then a health check between customers.
RECOVERY_SCRIPT = "wait idle 15\nadvance 6\nwait idle 8\n"
RECOVERY_ATTEMPTS = 3
ATM_RUN_SECONDS = 120.0
SESSION_MARKER = b"action insert"  # what `atm-sim atm run` prints as the card goes in
HOST_START_SECONDS = 30.0
OUTCOMES = ("completed", "reversed", "declined", "suspect", "VIOLATION")
# Checks a SUSPECT withdrawal may fail by design: its hold waits for the operator's count.
_SUSPECT_EXCUSED = frozenset({"money conservation", "ATM cash ledger = dispensed notes"})


class CrashTestError(RuntimeError):
    """The explorer itself could not run (a process would not start, a bad --points)."""


@dataclass(frozen=True)
class CrashTestConfig:
    points: str = "all"  # "all", "N..M", a comma list of numbers and names, or "list"
    random_kills: int = 0
    slow_links: bool = False
    kill: str = "atm"  # the process that dies: "atm" or "host"
    seed: int = 1
    sessions: tuple[str, ...] = ("take", "leave")
    keep: bool = False  # keep every run's folder, not only those with a violation


@dataclass(frozen=True)
class Point:
    """One run: a session, and where the kill lands (a boundary number or a random delay)."""

    session: str
    index: int = 0
    expected: str = ""
    delay: float | None = None

    @property
    def label(self) -> str:
        return f"{self.index}" if self.delay is None else f"~{self.delay:.2f}s"


@dataclass(frozen=True)
class RunStart:
    """What a run starts from: the money totals, and Alice's balance."""

    totals: Baseline
    account_balance: int


@dataclass
class RunResult:
    point: Point
    died_at: str
    customer: str
    outcome: str
    detail: str
    violations: list[str] = field(default_factory=list)


@dataclass
class CrashReport:
    config: CrashTestConfig
    boundaries: dict[str, list[str]]
    results: list[RunResult]
    seconds: float

    @property
    def violations(self) -> list[RunResult]:
        return [r for r in self.results if r.outcome == "VIOLATION"]


# ----- the bank: a seeded template, and a fresh copy of it per run ------------------------------


class TemplateBank:
    """A database seeded once; each run gets its own copy (CREATE DATABASE ... TEMPLATE)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server = make_url(database_url(settings))
        self.admin = sa.create_engine(self.server, isolation_level="AUTOCOMMIT")
        self.template = f"atm_crash_{uuid.uuid4().hex[:10]}"
        self._made: list[str] = []

    def _url(self, name: str) -> str:
        return self.server.set(database=name).render_as_string(hide_password=False)

    def _create(self, name: str, template: str | None = None) -> str:
        with self.admin.connect() as conn:
            create_database(conn, name, template)
        self._made.append(name)
        return self._url(name)

    def prepare(self) -> None:
        url = self._create(self.template)
        bank_admin.seed_bank(dataclasses.replace(self.settings, database_url=url))

    def fresh(self) -> str:
        return self._create(f"{self.template}_{len(self._made)}", self.template)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        assert name is not None
        with self.admin.connect() as conn:
            drop_database(conn, name)
        if name in self._made:
            self._made.remove(name)

    def close(self) -> None:
        for name in reversed(list(self._made)):
            self.drop(self._url(name))
        self.admin.dispose()


# ----- the processes ----------------------------------------------------------------------------


def child_env(settings: Settings, url: str, **extra: str) -> dict[str, str]:
    """The environment of a child process: the settings as variables, the run's bank, no crash
    variables unless given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATM_SIM_CRASH")}
    for name in SETTING_NAMES:
        value = getattr(settings, name.lower())
        if value is not None:
            env[name] = str(value)
    env.update(DATABASE_URL=url, LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1", **extra)
    return env


class HostProcess:
    """`atm-sim host serve` in its own process; restarted on the same port when it dies."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.port = 0
        self.restarts = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def _spawn(self) -> None:
        command = [sys.executable, "-m", "device.sim.cli", "host", "serve"]
        with self.log.open("ab") as log:
            log.write(f"--- start on port {self.port}\n".encode())
            log.flush()
            offset = log.tell()
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=PROJECT_ROOT,
            )
        deadline = time.monotonic() + HOST_START_SECONDS
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[offset:].decode("utf-8", "replace")
            found = re.search(r"listening on [\d.]+:(\d+)", text)
            if found:
                self.port = int(found.group(1))
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
        raise CrashTestError(f"the host did not start: {' '.join(tail) or 'no output'}")

    def start(self) -> HostProcess:
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="host-watcher", daemon=True)
        self._watcher.start()
        return self

    def _watch(self) -> None:
        while not self._stopping.wait(0.05):
            process = self.process
            if process is not None and process.poll() is not None:
                self.restarts += 1
                try:
                    self._spawn()
                except CrashTestError:
                    time.sleep(0.5)  # the port may not be free yet: try again

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)

    def stop(self) -> None:
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=HOST_START_SECONDS + 5)
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _atm_command(port: int, state_dir: Path, script: Path, profile: Path | None) -> list[str]:
    command = [sys.executable, "-m", "device.sim.crash_atm", "atm", "run", "--virtual-clock"]
    command += ["--port", str(port), "--state-dir", str(state_dir), "--script", str(script)]
    return command + (["--profile", str(profile)] if profile else [])


@dataclass(frozen=True)
class AtmExit:
    code: int
    seconds: float  # from the customer's first action to the end of the process
    killed_from_outside: bool = False


def _session_started(log: Path, offset: int, process: subprocess.Popen[bytes]) -> float | None:
    """Wait until the ATM prints the customer's first action (the card going in); when it did,
    on the monotonic clock, or None if the process ended first."""
    while process.poll() is None:
        with log.open("rb") as handle:
            handle.seek(offset)
            if SESSION_MARKER in handle.read():
                return time.monotonic()
        time.sleep(0.01)
    return None


def run_atm_process(
    command: list[str],
    env: dict[str, str],
    log: Path,
    *,
    kill_after: float | None = None,
    kill: Callable[[], None] | None = None,
    watch_session: bool = True,
) -> AtmExit:
    """Run an ATM process to its end; with `kill_after`, call `kill` that many seconds after
    the customer's session began (which `watch_session` looks for in the log)."""
    with log.open("ab") as out:
        offset = out.tell()
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT
        )
    killed = False
    session_began = None
    try:
        if watch_session:
            session_began = _session_started(log, offset, process)
        if kill_after is not None and session_began is not None:
            try:
                process.wait(timeout=max(session_began + kill_after - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                (kill or (lambda: process.send_signal(signal.SIGKILL)))()
                killed = True
        code = process.wait(timeout=ATM_RUN_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait(timeout=10)
    session = time.monotonic() - session_began if session_began is not None else 0.0
    return AtmExit(code, session, killed)


# ----- the customer, the dispenser and the checks -----------------------------------------------


def open_dispenser(state_dir: Path, profile_path: Path) -> CashDispenserEmulator:
    """The ATM's dispenser as its state file left it, read by the emulator's own code."""
    profile = load_profile(profile_path)
    settings = profile.devices["cash_dispenser"].settings
    return CashDispenserEmulator.from_config(
        settings, state_dir=state_dir / "devices" / "cash_dispenser"
    )


def loaded_notes_value(profile_path: Path) -> int:
    """Cents in a freshly loaded dispenser, as the profile loads it."""
    settings = load_profile(profile_path).devices["cash_dispenser"].settings
    return dispenser_cash("", CashDispenserEmulator.from_config(settings)).total


def customer_at_dead_atm(state_dir: Path, profile_path: Path, rng: random.Random) -> str:
    """Notes at the shutter of a dead ATM: the customer takes them in half of the cases."""
    if not (state_dir / "devices" / "cash_dispenser").exists():
        return "-"
    dispenser = open_dispenser(state_dir, profile_path)
    at_shutter = dispenser.presented
    if not at_shutter.notes:
        return "-"
    if rng.random() < 0.5:
        dispenser.take_cash()
        return f"took {_money(at_shutter.amount)}"
    return f"left {_money(at_shutter.amount)}"


def _money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def journal_entries(state_dir: Path) -> list[JournalEntry]:
    path = state_dir / "journal.jsonl"
    if not path.exists():
        return []
    journal = Journal(path)
    try:
        return list(journal.entries())
    finally:
        journal.close()


def bank_figures(url: str) -> tuple[int, list[str]]:
    """Alice's ledger balance and the status of every hold at the bank."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            balance = conn.scalar(
                sa.select(Account.ledger_balance).where(Account.number == ACCOUNT)
            )
            statuses = list(conn.scalars(sa.select(Hold.status).order_by(Hold.id)))
    finally:
        engine.dispose()
    return int(balance or 0), [str(s) for s in statuses]


def snapshot(settings: Settings, url: str, state_dir: Path, profile_path: Path) -> Snapshot:
    engine = make_engine(url)
    try:
        bank = read_bank(engine, settings.daily_withdrawal_limit, settings.daily_transfer_limit)
    finally:
        engine.dispose()
    terminal = load_profile(profile_path).terminal_id
    dispensers: tuple[DispenserCash, ...] = ()
    if (state_dir / "devices" / "cash_dispenser").exists():
        dispensers = (dispenser_cash(terminal, open_dispenser(state_dir, profile_path)),)
    suspects = tuple(journal_suspects(terminal, journal_entries(state_dir)))
    return Snapshot(bank, dispensers, suspects)


def classify(
    checks: Sequence[Check], snap: Snapshot, holds: Sequence[str], extra: Sequence[str]
) -> tuple[str, list[str]]:
    """The outcome of one run, and what was violated (empty when nothing was)."""
    suspect = bool(snap.suspects)
    failed = [c for c in checks if not c.ok and not (suspect and c.name in _SUSPECT_EXCUSED)]
    violations = [f"{c.name}: {c.figure}" for c in failed] + list(extra)
    if violations:
        return "VIOLATION", violations
    if suspect:
        return "suspect", []
    if not holds:
        return "declined", []
    if all(status == "completed" for status in holds):
        return "completed", []
    if all(status == "reversed" for status in holds):
        return "reversed", []
    return "VIOLATION", [f"holds left {', '.join(holds)}"]


# ----- the explorer -----------------------------------------------------------------------------


def parse_points(spec: str, traces: dict[str, list[str]]) -> list[Point]:
    """Kill points from "all", "N..M" or "3,7,journal:presented"; a boundary the sessions share
    (same names up to it) is run once, in the first session."""
    first = next(iter(traces.values()), [])
    chosen: list[Point] = []
    wanted_numbers: set[int] | None = None
    wanted_names: list[str] = []
    text = spec.strip()
    if text != "all":
        found = re.fullmatch(r"(\d+)\.\.(\d+)", text)
        if found:
            wanted_numbers = set(range(int(found.group(1)), int(found.group(2)) + 1))
        else:
            wanted_numbers = set()
            for item in (part.strip() for part in text.split(",")):
                if item.isdigit():
                    wanted_numbers.add(int(item))
                elif item:
                    wanted_names.append(item)
            known = {name for trace in traces.values() for name in trace}
            unknown = [name for name in wanted_names if name not in known]
            if unknown:
                raise CrashTestError(
                    f"--points: no boundary named {unknown[0]!r} in a session; "
                    "--points list shows them"
                )
    for session, trace in traces.items():
        shared = 0
        if trace is not first:
            while shared < min(len(trace), len(first)) and trace[shared] == first[shared]:
                shared += 1
        for name in wanted_names:
            if name in trace[shared:]:
                index = trace.index(name, shared) + 1
                chosen.append(Point(session, index, name))
        for index in range(shared + 1, len(trace) + 1):
            wanted = wanted_numbers is None or index in wanted_numbers
            if wanted and all(p.session != session or p.index != index for p in chosen):
                chosen.append(Point(session, index, trace[index - 1]))
    return sorted(chosen, key=lambda p: (list(traces).index(p.session), p.index))


class CrashExplorer:
    def __init__(
        self, settings: Settings, config: CrashTestConfig, out: Callable[[str], None]
    ) -> None:
        if config.kill not in ("atm", "host"):
            raise CrashTestError(f"--kill {config.kill!r}: expected atm or host")
        unknown = [s for s in config.sessions if s not in SESSIONS]
        if unknown or not config.sessions:
            raise CrashTestError(f"sessions: expected some of {', '.join(SESSIONS)}")
        self.settings = settings
        self.config = config
        self.out = out
        self.work = Path(tempfile.mkdtemp(prefix="atm-crashtest-"))
        self.bank = TemplateBank(settings)
        self.profile = DEFAULT_PROFILE
        self._runs = 0
        self.kept: list[Path] = []  # run folders left on disk

    # ----- set-up ---------------------------------------------------------------------------

    def _write_profile(self) -> None:
        if not self.config.slow_links:
            return
        document = yaml.safe_load(DEFAULT_PROFILE.read_text(encoding="utf-8"))
        for section in document["devices"].values():
            section.setdefault("link", {})["line_timing"] = True
        self.profile = self.work / "slow_links.yaml"
        self.profile.write_text(yaml.safe_dump(document), encoding="utf-8")

    def _script(self, session: str) -> Path:
        path = self.work / f"{session}.txt"
        if not path.exists():
            path.write_text(SESSIONS[session], encoding="utf-8")
        return path

    # ----- one run --------------------------------------------------------------------------

    def _run(self, point: Point, *, trace: bool = False) -> tuple[RunResult, list[str], float]:
        self._runs += 1
        run_dir = self.work / f"{self._runs:03d}-{point.session}-{point.label}"
        state_dir = run_dir / "atm"
        run_dir.mkdir(parents=True)
        url = self.bank.fresh()
        host = HostProcess(child_env(self.settings, url), run_dir / "host.log")
        # Keyed by the boundary's name, so the customer does the same when numbering shifts.
        rng = random.Random(f"{self.config.seed}:{point.session}:{point.expected or point.label}")
        try:
            host.start()
            at_start = snapshot(self.settings, url, state_dir, self.profile)
            baseline = RunStart(
                Baseline(at_start.customer_money(), loaded_notes_value(self.profile)),
                bank_figures(url)[0],
            )
            crash_log = run_dir / "crash.log"
            variables: dict[str, str] = {}
            if trace:
                variables = {crash_points.CRASH_LOG_VARIABLE: str(crash_log)}
            elif point.delay is None:
                variables = {
                    crash_points.CRASH_AT_VARIABLE: str(point.index),
                    crash_points.CRASH_LOG_VARIABLE: str(crash_log),
                }
                if self.config.kill == "host":
                    variables[crash_points.CRASH_PID_VARIABLE] = str(host.pid)
            command = _atm_command(host.port, state_dir, self._script(point.session), self.profile)
            finished = run_atm_process(
                command,
                child_env(self.settings, url, **variables),
                run_dir / "atm.log",
                kill_after=point.delay,
                kill=host.kill if self.config.kill == "host" else None,
            )
            lines = _read_lines(crash_log)
            died_at = self._died_at(point, finished, lines, trace)
            customer = customer_at_dead_atm(state_dir, self.profile, rng)
            extra = self._recover(host, state_dir, url, run_dir)
            host.stop()
            outcome, violations, detail = self._judge(url, state_dir, baseline, extra)
        finally:
            host.stop()
            self.bank.drop(url)
        if host.restarts:
            detail += f", host restarted {host.restarts}x"
        if violations:
            detail += "; " + "; ".join(violations)
        if outcome == "VIOLATION" or self.config.keep:
            self.kept.append(run_dir)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
        names = [line.split(" ", 1)[1] for line in lines if " " in line]
        result = RunResult(point, died_at, customer, outcome, detail, violations)
        return result, names, finished.seconds

    def _judge(
        self, url: str, state_dir: Path, baseline: RunStart, extra: list[str]
    ) -> tuple[str, list[str], str]:
        """Outcome, violations and a line of figures, from the bank, the journal and the notes."""
        snap = snapshot(self.settings, url, state_dir, self.profile)
        balance, holds = bank_figures(url)
        debited = baseline.account_balance - balance
        taken = sum(d.taken for d in snap.dispensers)
        if debited != taken and not snap.suspects:
            extra.append(f"balance fell {_money(debited)}, customer holds {_money(taken)}")
        outcome, violations = classify(check_all(snap, baseline.totals), snap, holds, extra)
        return outcome, violations, f"debited {_money(debited)}, cash in hand {_money(taken)}"

    def _died_at(self, point: Point, finished: AtmExit, lines: list[str], trace: bool) -> str:
        if trace:
            return "no crash (counting)"
        if point.delay is not None:
            if finished.killed_from_outside:
                return f"random kill at {point.delay:.2f}s"
            return "no crash (ended first)"
        if not lines:
            return "no crash (fewer boundaries)"
        name = lines[-1].split(" ", 1)[-1]
        if point.expected and name != point.expected:
            return f"{name} (learnt {point.expected})"
        return name

    def _recover(self, host: HostProcess, state_dir: Path, url: str, run_dir: Path) -> list[str]:
        """Restart the ATM on the same state until it is idle with no advice waiting."""
        script = self.work / "recovery.txt"
        script.write_text(RECOVERY_SCRIPT, encoding="utf-8")
        pending = -1
        code = 0
        for _attempt in range(RECOVERY_ATTEMPTS):
            command = _atm_command(host.port, state_dir, script, self.profile)
            log = run_dir / "recovery.log"
            code = run_atm_process(
                command, child_env(self.settings, url), log, watch_session=False
            ).code
            pending = len(AdviceQueue(state_dir / "advices.jsonl").pending())
            if code == 0 and pending == 0:
                return []
        problems = []
        if code != 0:
            problems.append(f"restarted ATM did not come back to idle (exit {code})")
        if pending:
            problems.append(f"{pending} advice(s) never reached the host")
        return problems

    # ----- the whole exploration ------------------------------------------------------------

    def learn(self, session: str) -> tuple[list[str], float]:
        """Run a session with boundaries counted, not firing: their names, and how long it ran."""
        result, names, seconds = self._run(Point(session), trace=True)
        if result.outcome == "VIOLATION" or not names:
            raise CrashTestError(
                f"the {session} session does not run cleanly without a crash: {result.detail}"
            )
        return names, seconds

    def explore(self) -> CrashReport:
        started = time.monotonic()
        self._write_profile()
        self.bank.prepare()
        traces: dict[str, list[str]] = {}
        lengths: dict[str, float] = {}
        for session in self.config.sessions:
            traces[session], lengths[session] = self.learn(session)
            self.out(
                f"{session} session: {len(traces[session])} boundaries, "
                f"{lengths[session]:.1f} s without a crash"
            )
        if self.config.points == "list":
            for session, trace in traces.items():
                for number, name in enumerate(trace, start=1):
                    self.out(f"{session:<7} {number:>4} {name}")
            return CrashReport(self.config, traces, [], time.monotonic() - started)
        points = parse_points(self.config.points, traces) if self.config.points else []
        rng = random.Random(self.config.seed)
        for _ in range(self.config.random_kills):
            session = rng.choice(self.config.sessions)
            points.append(Point(session, delay=round(rng.uniform(0.0, lengths[session]), 2)))
        self.out(
            f"kill {self.config.kill}: {len(points)} runs, seed {self.config.seed}, "
            f"slow links {'on' if self.config.slow_links else 'off'}"
        )
        self.out(_row("point", "session", "killed at", "customer", "outcome", "detail"))
        results = []
        for point in points:
            result = self._run(point)[0]
            results.append(result)
            self.out(
                _row(
                    point.label,
                    point.session,
                    result.died_at,
                    result.customer,
                    result.outcome,
                    result.detail,
                )
            )
        return CrashReport(self.config, traces, results, time.monotonic() - started)

    def close(self) -> None:
        self.bank.close()
        for path in self.work.iterdir():
            if path.is_dir() and path not in self.kept:
                shutil.rmtree(path, ignore_errors=True)
        if not self.kept:
            shutil.rmtree(self.work, ignore_errors=True)


def _row(*cells: str) -> str:
    widths = (6, 7, 46, 12, 10)
    return " ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)) + " " + cells[-1]


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [
        line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line
    ]


@contextlib.contextmanager
def crash_explorer(
    settings: Settings, config: CrashTestConfig, out: Callable[[str], None]
) -> Iterator[CrashExplorer]:
    explorer = CrashExplorer(settings, config, out)
    try:
        yield explorer
    finally:
        explorer.close()


def summary(report: CrashReport) -> list[str]:
    counts = Counter(r.outcome for r in report.results)
    lines = [
        f"{len(report.results)} runs in {report.seconds:.0f} s: "
        + ", ".join(f"{counts.get(o, 0)} {o}" for o in OUTCOMES)
    ]
    for result in report.violations:
        lines.append(
            f"VIOLATION at {result.point.session} {result.point.label} {result.died_at} "
            f"(customer {result.customer}): {'; '.join(result.violations)}"
        )
    return lines


def run_crashtest(
    settings: Settings, config: CrashTestConfig, out: Callable[[str], None] = print
) -> int:
    """`atm-sim crashtest`: 0 when no run lost or invented money or left a silent hold."""
    try:
        with crash_explorer(settings, config, out) as explorer:
            report = explorer.explore()
            for line in summary(report):
                out(line)
            if explorer.kept:
                out(f"state of the kept runs under {explorer.work}")
    except CrashTestError as err:
        print(f"atm-sim: crashtest: {err}", file=sys.stderr)
        return 2
    return 1 if report.violations else 0
