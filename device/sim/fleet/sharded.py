"""More ATMs than one process can hold: the fleet split over child processes against this
process's bank, each child a FleetShard; their results are joined and checked here.
"""

from __future__ import annotations

import binascii
import dataclasses
import json
import logging
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.log_format import configure_logging
from device.controller.ports import DriverError
from device.sim.bank_stack import BankStack
from device.sim.customers import Population, SimCustomer, atm_profile, prepare_population
from device.sim.fleet.in_process import TEST_MAC_KEY, AtmSlot, Fleet, FleetConfig, FleetReport
from device.sim.fleet.robot_customer import FleetError, SessionResult, plan_fleet
from device.sim.invariants import (
    Baseline,
    DispenserCash,
    Settling,
    Snapshot,
    Suspect,
    check_all,
    dispenser_cash,
    journal_suspects,
    read_bank,
)
from device.sim.simulated_atm import HostAddress
from peripherals.cassettes import load_cassette_file

log = logging.getLogger(__name__)

# select() (used by the pty links and by pyserial) cannot watch a descriptor above 1023, and each
# ATM holds about 32 (4 ptys, and pyserial adds two pipes per port): one process serves at most
# this many ATMs; a bigger fleet runs in several processes against the same host.
SHARD_ATMS = 25
START_AT_ONCE = 4
ATM_NICENESS = 10  # ATM processes yield the cores to the bank's process
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
    think_seconds: float = 0.0
    link_backend: str = "pty"
    cpu: int | None = None  # the one core the process runs on (see run_sharded), or any


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
            think_seconds=spec.think_seconds,
            link_backend=spec.link_backend,
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
            link_backend=self.config.link_backend,
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
        before, started = os.times(), time.time()
        list(self._pool.map(self._run_batch, self.slots, mine, [0] * len(mine)))
        finished = time.time()
        left = self.settle_all()
        after = os.times()  # the CPU figures take the settling in, as they always did
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
            "cpu_seconds": after.user + after.system - before.user - before.system,
            # the kernel's part: system calls, and the interpreter lock changing threads
            "system_cpu_seconds": after.system - before.system,
            "idle_cpu_seconds": idle_cpu,
            "rss_bare": self.rss_bare,
            "rss_started": rss_started,
            "peak_rss": _peak_rss(),
            "niceness": os.nice(0),
            "cores": sorted(os.sched_getaffinity(0)),
            "link_urls": sorted({s.atm.bay.url("card_reader").split(":")[0] for s in self.slots}),
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
    # Each ATM process runs on one core, the processes spread over the cores in turn: one
    # interpreter runs Python on one core at a time anyway, and its threads, which hand the
    # interpreter lock over at every blocking call, then wake each other on the same core
    # instead of across cores (200 ATMs in one process: 11 -> 9 ms of CPU a session, 85-88 ->
    # 105-110 sessions/s). The bank's process and the database keep every core.
    cores = sorted(os.sched_getaffinity(0))
    children = []
    for number, first in enumerate(range(0, config.atms, shard_atms)):
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
            config.think_seconds,
            config.link_backend,
            cores[number % len(cores)] if len(cores) > 1 else None,
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
    # The bank runs on its own machines in real life; here it shares the cores with every ATM
    # process, which must not starve it (its answers would time out at the ATMs).
    os.nice(ATM_NICENESS)
    spec = ShardSpec(**json.loads(Path(spec_file).read_text(encoding="utf-8")))
    if spec.cpu is not None:
        try:  # before any thread starts: they all inherit it
            os.sched_setaffinity(0, {spec.cpu})
        except OSError as err:
            log.warning("ATM process not kept to core %d: %s; it runs on any", spec.cpu, err)
    with FleetShard(spec) as shard:
        result = shard.run_shard()
    Path(spec.result_file).write_text(json.dumps(result), encoding="utf-8")
    return 0
