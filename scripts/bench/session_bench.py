"""Full withdrawal sessions end to end (devices on ptys, ISO 8583 host, PostgreSQL), against the
bare I/O floor of one session, sampled between the sessions. Run: python -m
scripts.bench.session_bench [--sessions N] [--profile | --parts]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.settings import load_settings
from device.advice_queue import AdviceQueue
from device.clock import VirtualClock
from device.drivers.base import SerialDriver
from device.drivers.pin_pad import PinPadDriver
from device.drivers.receipt_printer import ReceiptPrinterDriver
from device.host_client import HostClient
from device.journal import Journal
from device.sim.bank_stack import BankStack
from device.sim.customer_script import parse_script, run_action
from device.sim.simulated_atm import SimulatedAtm
from host.database import stop_embedded
from host.messages import HostRequest, HostResponse
from host.service import Bank
from peripherals.harness.profile import DEFAULT_PROFILE, load_profile
from scripts.bench.cpu_profile import CpuProfile
from scripts.bench.io_floor import IoFloor
from scripts.bench.wall_parts import WallParts

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

# (card, PIN, account key), taken in turn: the seeded accounts with money for many 20.00
# withdrawals (Charlie's checking holds 120.00). The bench lifts the daily limit; Bob's 750.00
# then bounds a run at 37 withdrawals from each account.
CUSTOMERS = [
    ("alice", "1234", "F1"),
    ("alice", "1234", "F2"),
    ("bob", "4321", "F1"),
    ("charlie", "0852", "F2"),
]
MAX_SESSIONS = 37 * len(CUSTOMERS)
WITHDRAWAL_CENTS = 2000  # fast cash F1, as session_script chooses
ACCOUNT_TYPES = {"F1": "checking", "F2": "savings"}  # the account selection screen's keys


# The writes a withdrawal needs on disk before its next step, so that a power cut at any moment
# loses no money (docs/durable-files.md): the journal's intents withdrawal_requested,
# present_started and the outcome, the completion advice queued and acknowledged, and the
# dispenser's note counts after it moves notes to the stacker, presents them and sees them taken.
DURABLE_WRITES = 8
WARM_SESSIONS = 2  # not profiled
# The parts of a session's wall time that --parts times, in the ATM's thread.
SESSION_PARTS = [
    (SerialDriver, "exchange", "device exchanges"),
    (ReceiptPrinterDriver, "status", "device exchanges"),
    (ReceiptPrinterDriver, "print_receipt", "device exchanges"),
    # numbering, the request's own journal line, ISO 8583 and MAC, and the bank's answer
    (HostClient, "_send", "host exchanges"),
    (Journal, "record_many", "journal writes"),
    (AdviceQueue, "add", "advice queue writes"),
    (AdviceQueue, "acknowledge", "advice queue writes"),
    (PinPadDriver, "poll_events", "PIN pad key reads"),
]


def session_script(card: str, pin: str, account_key: str) -> str:
    return f"""
wait idle
insert {card}
wait pin_entry
type {pin}
press enter
wait transaction_menu
press F1
wait account_selection
press {account_key}
wait amount_entry
press F1
wait ejecting_card
take card
wait presenting_cash
take cash
wait idle
"""


def timed_bank(bank: Bank) -> list[float]:
    """Make `bank` add the seconds each answer takes to the returned one-item list."""
    total = [0.0]
    answer = bank.handle

    def handle(request: HostRequest) -> HostResponse:
        started = time.perf_counter()
        try:
            return answer(request)
        finally:
            total[0] += time.perf_counter() - started

    bank.handle = handle  # type: ignore[method-assign]
    return total


# Thread names by part of the simulator, for the CPU each spends (the first match names it).
THREAD_PARTS = (
    ("MainThread", "ATM (controller, drivers, journal, host client)"),
    ("atm-sim-", "device links and emulators"),
    ("iso8583-", "ISO 8583 host and bank"),
    ("receipt-drawer", "receipt drawing"),
)


def thread_cpu() -> dict[str, float]:
    """CPU seconds so far of the threads alive now, summed by part of the simulator."""
    spent: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        part = next((p for prefix, p in THREAD_PARTS if thread.name.startswith(prefix)), "other")
        try:
            seconds = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (OSError, ProcessLookupError):  # the thread ended meanwhile
            continue
        spent[part] = spent.get(part, 0.0) + seconds
    return spent


class Spent:
    """The wall time, process CPU and CPU by part of the simulator's threads spent in the blocks
    run under it, summed."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.threads: dict[str, float] = {}

    def __enter__(self) -> None:
        self._started = time.perf_counter(), time.process_time(), thread_cpu()

    def __exit__(self, *exc: object) -> None:
        wall, cpu, threads = self._started
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        for part, seconds in thread_cpu().items():
            self.threads[part] = self.threads.get(part, 0.0) + seconds - threads.get(part, 0.0)


class FsyncCounter:
    """Counts the fsyncs this process makes (the ATM's journal and advices, the devices' state)."""

    def __init__(self) -> None:
        self.count = 0
        self._real = os.fsync

    def __enter__(self) -> FsyncCounter:
        def counted(fd: FileDescriptorLike) -> None:
            self.count += 1
            self._real(fd)

        os.fsync = counted
        return self

    def __exit__(self, *exc: object) -> None:
        os.fsync = self._real


class RoundTripCounter:
    """Counts the device round trips the ATM's drivers make: each frame sent to the card reader,
    PIN pad or cash dispenser to wait for its answer (resends too), and each printer status (its
    four questions in one write). Printing is one-way: the printer answers none of its commands.
    """

    def __init__(self) -> None:
        self.count = 0
        self._exchange = SerialDriver.exchange
        self._ask = ReceiptPrinterDriver._ask

    def __enter__(self) -> RoundTripCounter:
        exchange, ask = self._exchange, self._ask

        def counted_exchange(driver: SerialDriver, *args: Any, **kwargs: Any) -> Any:
            sends = driver.stats.sends
            try:
                return exchange(driver, *args, **kwargs)
            finally:
                self.count += driver.stats.sends - sends

        def counted_ask(driver: ReceiptPrinterDriver) -> list[int | None]:
            self.count += 1
            return ask(driver)

        SerialDriver.exchange = counted_exchange  # type: ignore[method-assign,assignment]
        ReceiptPrinterDriver._ask = counted_ask  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        SerialDriver.exchange = self._exchange  # type: ignore[method-assign]
        ReceiptPrinterDriver._ask = self._ask  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--bcrypt-rounds", type=int, default=4)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the sessions under yappi and print where the CPU goes (times above then slow)",
    )
    parser.add_argument(
        "--parts",
        action="store_true",
        help="time the device and host exchanges, journal and advice writes and key reads of "
        "each session, and print what each takes of its wall time",
    )
    args = parser.parse_args()
    if not 1 <= args.sessions <= MAX_SESSIONS:
        parser.error(f"--sessions must be 1..{MAX_SESSIONS}: the seeded accounts run dry after")
    if args.profile and args.sessions <= WARM_SESSIONS:
        parser.error(f"--profile needs more than {WARM_SESSIONS} sessions")
    if args.profile and args.parts:
        parser.error("--profile and --parts each slow the other's figures: choose one")
    home = Path(tempfile.mkdtemp(prefix="atm-sim-bench-"))
    env = {
        "ATM_SIM_HOME": str(home),
        "BCRYPT_ROUNDS": str(args.bcrypt_rounds),
        "SECRET_KEY": "bench-secret-key-0123456789",
        "PIN_PEPPER": "bench-pin-pepper-0123456789",
        "DAILY_WITHDRAWAL_LIMIT": str(MAX_SESSIONS * WITHDRAWAL_CENTS),
    }
    if os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = os.environ["DATABASE_URL"]
    settings = load_settings(env)
    profile = load_profile(DEFAULT_PROFILE)
    assert profile.host is not None
    with BankStack(settings) as bank:
        host_seconds = timed_bank(bank.bank)
        atm = SimulatedAtm(
            profile,
            bank.address_for(profile.host.mac_key),
            home / "atm",
            clock=VirtualClock(),
        )
        profiler = CpuProfile() if args.profile else None
        parts = WallParts(SESSION_PARTS if args.parts else [])
        floor_io = IoFloor(bank.engine, home)
        with atm, floor_io, FsyncCounter() as counter, RoundTripCounter() as round_trips:
            devices = [atm.bay.emulator(name) for name in atm.bay.names]
            durations, commands, trips, fsyncs, host_times = [], [], [], [], []
            spent, sampling = Spent(), Spent()  # the floor's samples, left out of the figures
            with spent, parts:  # the sessions only, not the ATM's start
                for number in range(args.sessions):
                    # the first two pay for imports (pygame's, at the first receipt image)
                    if profiler is not None and number == WARM_SESSIONS:
                        profiler.start()
                    script = parse_script(
                        session_script(*CUSTOMERS[number % len(CUSTOMERS)]).splitlines()
                    )
                    seen = sum(d.faults.commands_seen for d in devices)
                    tripped = round_trips.count
                    synced = counter.count
                    host_before = host_seconds[0]
                    begin = time.perf_counter()
                    for action in script:
                        run_action(atm, action)
                    durations.append(time.perf_counter() - begin)
                    commands.append(sum(d.faults.commands_seen for d in devices) - seen)
                    trips.append(round_trips.count - tripped)
                    fsyncs.append(counter.count - synced)
                    host_times.append(host_seconds[0] - host_before)
                    with sampling, profiler.paused() if profiler else contextlib.nullcontext():
                        floor_io.sample()
            wall = spent.wall - sampling.wall
            cpu = spent.cpu - sampling.cpu
            threads_spent = {
                part: seconds - sampling.threads.get(part, 0.0)
                for part, seconds in spent.threads.items()
            }
            if profiler is not None:
                profiler.report(args.sessions - WARM_SESSIONS, "session")
        pty, tcp, database, disk = floor_io.medians()
    stop_embedded()
    shutil.rmtree(home, ignore_errors=True)  # the embedded server's data directory
    device_commands = statistics.median(commands)
    device_round_trips = statistics.median(trips)
    host_exchanges = 3  # PIN verification, withdrawal, completion advice
    floor = device_round_trips * pty + host_exchanges * (tcp + database) + DURABLE_WRITES * disk
    median = statistics.median(durations)
    print(f"sessions:                 {args.sessions} (bcrypt cost {args.bcrypt_rounds})")
    print(f"sessions per second:      {args.sessions / wall:.2f}")
    print(f"median session time:      {median * 1000:.1f} ms")
    print(
        f"device round trips/session: {device_round_trips:.0f} for {device_commands:.0f} "
        f"commands (printing is one-way; pty round trip {pty * 1e6:.0f} us)"
    )
    print(
        f"host exchanges/session:   {host_exchanges} (TCP round trip {tcp * 1e6:.0f} us, "
        f"PostgreSQL transaction {database * 1e6:.0f} us)"
    )
    print(
        f"durable writes/session:   {DURABLE_WRITES} needed (fsync {disk * 1e6:.0f} us); "
        f"{statistics.median(fsyncs):.0f} made"
    )
    print(f"bare I/O floor/session:   {floor * 1000:.2f} ms")
    print(f"ratio session / floor:    {median / floor:.1f}x")
    print(
        f"CPU/session:              {cpu / args.sessions * 1000:.1f} ms of this process (ATM, "
        f"drivers, emulators, host, bank; all threads) in {wall / args.sessions * 1000:.1f} ms "
        "of wall time"
    )
    by_part = sorted(
        (
            (part, seconds)
            for part, seconds in threads_spent.items()
            if seconds > 0.00005 * args.sessions
        ),
        key=lambda item: -item[1],
    )
    print(
        "CPU by thread/session:    "
        + "; ".join(f"{part} {seconds / args.sessions * 1000:.1f} ms" for part, seconds in by_part)
    )
    host_median = statistics.median(host_times)
    print(
        f"where it goes:            bank service {host_median * 1000:.1f} ms "
        f"(answering the 3 requests, in this process); the other "
        f"{(median - host_median) * 1000:.1f} ms in the ATM, its drivers and emulators"
    )
    if args.parts:
        mean = wall / args.sessions
        timed = sum(parts.seconds.values()) / args.sessions
        print(
            "wall time by part/session: "
            + "; ".join(
                f"{part} {seconds / args.sessions * 1000:.1f} ms "
                f"({parts.calls[part] / args.sessions:.0f})"
                for part, seconds in parts.seconds.items()
            )
            + f"; the rest (state machine, screens, the simulator settling between the "
            f"customer's actions) {(mean - timed) * 1000:.1f} ms; of a mean session of "
            f"{mean * 1000:.1f} ms"
        )


if __name__ == "__main__":
    main()
