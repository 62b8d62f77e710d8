"""A fleet across machines: `atm-sim fleet --distributed` seeds a fresh bank and serves its host,
Celery workers anywhere run shards of the ATMs against that host address, and the money
invariants are checked here on the bank's database once every shard has settled.

`atm-sim chaos --distributed` sends the same shards with chaos on: each worker puts a host fault
proxy of its own in front of the host address for each ATM and plays the faults and power cuts
one-process chaos plans for that ATM; the invariants are checked once, at the end.
"""

from __future__ import annotations

import binascii
import contextlib
import dataclasses
import json
import math
import os
import random
import shutil
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from celery import Celery

from config.data_files import VERSION
from config.settings import Settings
from device.clock import VirtualClock
from device.sim import customers as population_code
from device.sim.bank_stack import BankStack
from device.sim.chaos import (
    CHAOS_BCRYPT_ROUNDS,
    ChaosFleet,
    chaos_customers,
    chaos_host_timeout,
    plan_run,
)
from device.sim.customers import SimCustomer, prepare_population
from device.sim.fleet.cli import fleet_bank, run_directory
from device.sim.fleet.in_process import TEST_MAC_KEY, AtmSlot, FleetConfig, FleetReport
from device.sim.fleet.robot_customer import FleetError, SessionPlan, SessionResult
from device.sim.fleet.sharded import SHARD_ATMS, FleetShard, ShardSpec, loaded_cash
from device.sim.invariants import (
    Baseline,
    DispenserCash,
    Settling,
    Snapshot,
    Suspect,
    check_all,
    read_bank,
)
from device.sim.scenarios.host_faults import HostFaultProxy
from device.sim.simulated_atm import HostAddress
from device.sim.worker.celery_app import make_celery
from device.sim.worker.tasks import FLEET_SHARD_TASK
from device.sim.worker.transport import task_transport
from host import bank_admin
from host.crypto_keys import mac_key_lookup
from host.server import HostServer
from peripherals.cards import load_wallet

SHARD_TIMEOUT_SECONDS = 3600.0
PING_SECONDS = 2.0
# Sessions of one ATM between the engineer's visits to its retain bin in a chaos shard (in one
# process the visits come with the invariant checks, every 5 sessions by default).
ENGINEER_SESSIONS = 5


@dataclass(frozen=True)
class RemoteShardSpec:
    """What a worker needs to run its ATMs; no PIN travels: it rebuilds customers from the seed."""

    host: str
    port: int
    indices: list[int]
    terminal_ids: list[str]
    atms: int
    sessions: int
    seed: int
    customers: int  # generated customers of the run, besides the seeded ones
    settle_seconds: float
    host_timeout: float
    chaos: bool = False  # faults and power cuts as `atm-sim chaos` plans them for these ATMs


# ----- on the worker --------------------------------------------------------------------------


def shard_population(run_dir: Path, *, generated: int, seed: int) -> tuple[list[SimCustomer], Path]:
    """The run's customers and card wallet, rebuilt from its seed exactly as prepare_population
    made them on the coordinator, without touching the bank."""
    rng = random.Random(f"customers:{seed}")
    base_seed = yaml.safe_load(bank_admin.SEED_FILE.read_text(encoding="utf-8"))
    base_wallet = yaml.safe_load(population_code.WALLET_FILE.read_text(encoding="utf-8"))
    wallet_doc: dict[str, Any] = {"version": VERSION, "cards": dict(base_wallet["cards"])}
    found = population_code._seeded_customers(base_seed, base_wallet)
    for index in range(1, generated + 1):
        seed_entry, wallet_entry = population_code._generated_customer(index, rng)
        card_id = f"fleet{index:05d}"
        wallet_doc["cards"][card_id] = wallet_entry
        card = seed_entry["cards"][0]
        accounts = tuple((a["type"], a["number"]) for a in seed_entry["accounts"])
        found.append(SimCustomer(card_id, card["pin"], card["pan"], accounts))
    wallet_path = run_dir / "wallet.yaml"
    wallet_path.write_text(yaml.safe_dump(wallet_doc, sort_keys=False), encoding="utf-8")
    load_wallet(wallet_path)
    return found, wallet_path


class RemoteShard(FleetShard):
    """A FleetShard whose ATMs dial a host by address instead of this machine's loopback."""

    def __init__(self, spec: ShardSpec, host: str) -> None:
        super().__init__(spec)
        self.host_name = host

    def make_slot(self, index: int, terminal_id: str) -> AtmSlot:
        return AtmSlot(
            terminal_id,
            self.run_dir / "atms" / terminal_id,
            Path(self.spec.wallet),
            HostAddress(self.host_name, self.spec.host_port, binascii.unhexlify(TEST_MAC_KEY)),
            settle_seconds=self.config.settle_seconds,
            host_timeout=self.config.host_timeout,
        )


class ChaosShard(ChaosFleet, RemoteShard):
    """A RemoteShard under chaos: each ATM reaches the remote host through a HostFaultProxy on
    this machine and meets the device, link and host faults and power cuts that one-process
    chaos plans for its position in the fleet. The bank keeps its own (real) time."""

    def make_slot(self, index: int, terminal_id: str) -> AtmSlot:
        clock = VirtualClock(self.epoch)
        key = binascii.unhexlify(TEST_MAC_KEY)
        proxy = HostFaultProxy(
            (self.host_name, self.spec.host_port),
            clock=clock,
            mac_key=key,
            atm_host_timeout=self.config.host_timeout,
        )
        self.proxies.append(proxy)
        port = proxy.start()
        return AtmSlot(
            terminal_id,
            self.run_dir / "atms" / terminal_id,
            Path(self.spec.wallet),
            HostAddress("127.0.0.1", port, key),
            settle_seconds=self.config.settle_seconds,
            host_timeout=self.config.host_timeout,
            clock=clock,
        )

    def __enter__(self) -> ChaosShard:
        super().__enter__()
        return self

    def run_shard(self) -> dict[str, Any]:
        events, arrivals = plan_run(self.config.atms, self.config.sessions, self.config.seed)
        self.events = [events[i] for i in self.spec.indices]
        self.arrivals = [arrivals[i] for i in self.spec.indices]
        result = super().run_shard()
        result["chaos"] = {
            "kinds": dict(self.kinds_applied),
            "faults": dict(self.applied),
            "reboots": dict(self.reboots),
            "cards_retrieved": self.cards_retrieved,
        }
        return result

    def run_session(self, slot: AtmSlot, plan: SessionPlan, number: int) -> SessionResult:
        result = super().run_session(slot, plan, number)
        if (number + 1) % ENGINEER_SESSIONS == 0:  # a full retain bin would refuse captures
            with contextlib.suppress(ValueError, RuntimeError):
                retrieved = int(slot.atm.bay.card_reader.empty_retain_bin())
                with self._lock:
                    self.cards_retrieved += retrieved
        return result


def run_remote_shard(raw: dict[str, Any]) -> dict[str, Any]:
    """The body of the fleet-shard task: start the ATMs, run their sessions, settle, report."""
    spec = RemoteShardSpec(**raw)
    run_dir = Path(tempfile.mkdtemp(prefix="atm-shard-"))
    try:
        customers, wallet = shard_population(run_dir, generated=spec.customers, seed=spec.seed)
        customers_file = run_dir / "customers.json"
        customers_file.touch(mode=0o600)  # the simulated cards' PINs, as the one-machine fleet
        customers_file.write_text(
            json.dumps([dataclasses.asdict(c) for c in customers]), encoding="utf-8"
        )
        (run_dir / "go").touch()  # no other shard on this machine to wait for
        local = ShardSpec(
            str(run_dir),
            str(wallet),
            spec.port,
            spec.indices,
            spec.terminal_ids,
            spec.atms,
            spec.sessions,
            spec.seed,
            spec.settle_seconds,
            spec.host_timeout,
            str(customers_file),
            str(run_dir / "result.json"),
        )
        kind = ChaosShard if spec.chaos else RemoteShard
        with kind(local, spec.host) as shard:
            result = shard.run_shard()
        result["worker"] = f"{socket.gethostname()}:{os.getpid()}"
        return result
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


# ----- on the coordinator ---------------------------------------------------------------------


@dataclass(frozen=True)
class DistributedOptions:
    shards: int | None = None  # None: one per worker answering a ping, 25 ATMs at most each
    bind: str = "127.0.0.1"  # where this run's host listens
    advertise: str | None = None  # the host's address as workers dial it (default: bind)
    timeout: float = SHARD_TIMEOUT_SECONDS


def workers_answering(app: Celery, *, can_broadcast: bool) -> int:
    """How many workers answer a ping (0 when the transport has no broadcast, as the database)."""
    if not can_broadcast:
        return 0
    try:
        replies = app.control.ping(timeout=PING_SECONDS)
    except Exception:  # the broker not reachable yet: the tasks will wait in the queue
        return 0
    return len(replies or [])


def shard_count(atms: int, requested: int | None, workers: int) -> int:
    least = math.ceil(atms / SHARD_ATMS)  # one process holds at most SHARD_ATMS ATMs
    wanted = requested if requested is not None else max(workers, 1)
    return max(1, min(atms, max(wanted, least)))


def deal(atms: int, shards: int) -> list[list[int]]:
    """ATM positions split into `shards` near-equal runs of consecutive ATMs."""
    base, extra = divmod(atms, shards)
    out, first = [], 0
    for shard in range(shards):
        size = base + (1 if shard < extra else 0)
        out.append(list(range(first, first + size)))
        first += size
    return [s for s in out if s]


def run_shards(
    app: Celery,
    config: FleetConfig,
    bank: BankStack,
    run_dir: Path,
    *,
    address: tuple[str, int],
    shards: int,
    timeout: float = SHARD_TIMEOUT_SECONDS,
    chaos: bool = False,
    out: Callable[[str], None] = print,
) -> tuple[FleetReport, list[dict[str, Any]]]:
    """Seed the run's customers and ATMs, send one task per shard, gather, check invariants."""
    started = time.monotonic()
    population = prepare_population(
        bank.settings, run_dir, atms=config.atms, generated=config.customers, seed=config.seed
    )
    settings = bank.settings
    limits = (settings.daily_withdrawal_limit, settings.daily_transfer_limit)
    at_start = Snapshot(read_bank(bank.engine, *limits), ())
    baseline = Baseline(at_start.customer_money(), loaded_cash(population) * config.atms)
    pending = []
    for indices in deal(config.atms, shards):
        spec = RemoteShardSpec(
            address[0],
            address[1],
            indices,
            [population.terminal_ids[i] for i in indices],
            config.atms,
            config.sessions,
            config.seed,
            config.customers,
            config.settle_seconds,
            config.host_timeout,
            chaos,
        )
        task = app.send_task(FLEET_SHARD_TASK, args=[dataclasses.asdict(spec)])
        pending.append((spec, task))
    out(f"{len(pending)} shard task(s) sent; waiting for workers (atm-sim worker)")
    results = []
    deadline = time.monotonic() + timeout
    for spec, task in pending:
        try:
            shard = task.get(timeout=max(deadline - time.monotonic(), 1.0), propagate=True)
        except Exception as err:
            raise FleetError(
                f"shard {spec.terminal_ids[0]}..{spec.terminal_ids[-1]} failed: "
                f"{type(err).__name__}: {err}"
            ) from err
        results.append(shard)
        faults = shard.get("chaos", {}).get("kinds")
        out(
            f"progress: {spec.terminal_ids[0]}..{spec.terminal_ids[-1]} done "
            f"on {shard.get('worker', '?')}"
            + (f"; faults by kind: {_counts(faults)}" if faults is not None else "")
        )
    report = _report(results, bank, baseline, limits, started)
    return report, results


def _report(
    shards: list[dict[str, Any]],
    bank: BankStack,
    baseline: Baseline,
    limits: tuple[int, int],
    started: float,
) -> FleetReport:
    results = [SessionResult(**r) for s in shards for r in s["results"]]
    dispensers = tuple(DispenserCash(**d) for s in shards for d in s["dispensers"])
    suspects = tuple(Suspect(**x) for s in shards for x in s["suspects"])
    settling = tuple(Settling(**x) for s in shards for x in s["settling"])
    snapshot = Snapshot(read_bank(bank.engine, *limits), dispensers, suspects, settling)
    checks = check_all(snapshot, baseline)
    errors: Counter[str] = Counter()
    for s in shards:
        errors.update(s["errors"])
    restarts = sum(int(s["restarts"]) for s in shards)
    workers = sorted({str(s.get("worker", "?")) for s in shards})
    notes = [f"shards {len(shards)} on {len(workers)} worker(s): {', '.join(workers)}"]
    notes += [f"ATM restarts {restarts}"] if restarts else []
    notes += [f"ATM ERROR x{n}: {text}" for text, n in sorted(errors.items())]
    notes += _chaos_notes([s["chaos"] for s in shards if "chaos" in s])
    # Workers' wall clocks: the span from the first shard's first session to the last's end.
    span = max(s["finished"] for s in shards) - min(s["started"] for s in shards)
    return FleetReport(
        results,
        span,
        checks,
        [
            f"{x.terminal_id} STAN {x.stan}: {x.amount} cents, the ATM could not tell"
            for x in suspects
        ],
        time.monotonic() - started - span,
        notes,
        [f"final: {c.line()}" for c in checks if not c.ok],
    )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "none"


def _chaos_notes(shards: list[dict[str, Any]]) -> list[str]:
    """The faults the shards played, added up as one-process chaos reports them."""
    if not shards:
        return []
    totals: dict[str, Counter[str]] = {name: Counter() for name in ("kinds", "faults", "reboots")}
    for shard in shards:
        for name, counter in totals.items():
            counter.update(shard[name])
    notes = [
        f"faults by kind: {_counts(totals['kinds'])}",
        f"faults: {_counts(totals['faults'])}",
    ]
    notes += [
        f"restarted by the engineer x{n}, out of service after the faults were cleared: {reason}"
        for reason, n in sorted(totals["reboots"].items())
    ]
    retrieved = sum(int(s["cards_retrieved"]) for s in shards)
    notes.append(f"{retrieved} card(s) taken from the retain bins")
    return notes


def run_distributed_fleet(
    settings: Settings,
    *,
    atms: int,
    sessions: int,
    seed: int,
    customers: int | None = None,
    options: DistributedOptions | None = None,
    chaos: bool = False,
    out: Callable[[str], None] = print,
) -> int:
    """`atm-sim fleet --distributed` (and `atm-sim chaos --distributed` with `chaos`): 0 when
    every invariant holds at the final check, 1 otherwise."""
    options = options or DistributedOptions()
    command = "chaos" if chaos else "fleet"
    transport = task_transport(settings)
    out(f"{command} --distributed: tasks through {transport.description}")
    app = make_celery(settings, transport)
    workers = workers_answering(app, can_broadcast=transport.can_broadcast)
    shards = shard_count(atms, options.shards, workers)
    if options.shards is None and not transport.can_broadcast:
        out("this transport cannot count the workers: pass --shards N to spread over N of them")
    if chaos:
        generated = chaos_customers(sessions) if customers is None else customers
        biggest = max(len(s) for s in deal(atms, shards))  # the ATMs of one worker process
        config = FleetConfig(
            atms=atms,
            sessions=sessions,
            seed=seed,
            customers=generated,
            host_timeout=chaos_host_timeout(biggest),
        )
        settings = dataclasses.replace(
            settings, bcrypt_rounds=min(settings.bcrypt_rounds, CHAOS_BCRYPT_ROUNDS)
        )
    else:
        generated = FleetConfig.customers if customers is None else customers
        config = FleetConfig(atms=atms, sessions=sessions, seed=seed, customers=generated)
    with run_directory() as run_dir, fleet_bank(settings, run_dir) as bank:
        server = bank.server
        public: HostServer | None = None
        if options.bind != "127.0.0.1":
            # The run's host listens on loopback; workers on other machines need another socket.
            public = HostServer(
                bank.bank, mac_key_lookup(bank.engine, bank.settings), host=options.bind
            )
            public.start()
            server = public
        address = (options.advertise or options.bind, server.port)
        out(
            f"{command}: {atms} ATMs, {sessions} sessions, seed {seed}; host at "
            f"{address[0]}:{address[1]}; {shards} shard(s), {workers or 'unknown'} worker(s) seen"
        )
        try:
            report, _ = run_shards(
                app,
                config,
                bank,
                run_dir,
                address=address,
                shards=shards,
                timeout=options.timeout,
                chaos=chaos,
                out=out,
            )
        finally:
            if public is not None:
                public.stop()
    out("invariants final:")
    for check in report.checks:
        out(f"  {check.line()}")
    out("summary:")
    for line in report.summary():
        out(f"  {line}")
    if not report.ok:
        if chaos:
            out(
                f"INVARIANT VIOLATED; replay with: atm-sim chaos --distributed --atms {atms} "
                f"--sessions {sessions} --seed {seed}"
            )
        else:
            out(f"invariant violated; replay with --seed {seed}")
        return 1
    return 0
