"""A fleet across machines: `atm-sim fleet --distributed` seeds a fresh bank and serves its host,
Celery workers anywhere run shards of the ATMs against that host address, and the money
invariants are checked here on the bank's database once every shard has settled.
"""

from __future__ import annotations

import binascii
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

from config.settings import Settings
from device.sim import customers as population_code
from device.sim.bank_stack import BankStack
from device.sim.customers import SimCustomer, prepare_population
from device.sim.fleet import (
    SHARD_ATMS,
    TEST_MAC_KEY,
    AtmSlot,
    FleetConfig,
    FleetError,
    FleetReport,
    FleetShard,
    SessionResult,
    ShardSpec,
    fleet_bank,
    loaded_cash,
    run_directory,
)
from device.sim.invariants import (
    Baseline,
    DispenserCash,
    Settling,
    Snapshot,
    Suspect,
    check_all,
    read_bank,
)
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


# ----- on the worker --------------------------------------------------------------------------


def shard_population(run_dir: Path, *, generated: int, seed: int) -> tuple[list[SimCustomer], Path]:
    """The run's customers and card wallet, rebuilt from its seed exactly as prepare_population
    made them on the coordinator, without touching the bank."""
    rng = random.Random(f"customers:{seed}")
    base_seed = yaml.safe_load(bank_admin.SEED_FILE.read_text(encoding="utf-8"))
    base_wallet = yaml.safe_load(population_code.WALLET_FILE.read_text(encoding="utf-8"))
    wallet_doc: dict[str, Any] = {"cards": dict(base_wallet["cards"])}
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
        with RemoteShard(local, spec.host) as shard:
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
        out(
            f"progress: {spec.terminal_ids[0]}..{spec.terminal_ids[-1]} done "
            f"on {shard.get('worker', '?')}"
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


def run_distributed_fleet(
    settings: Settings,
    *,
    atms: int,
    sessions: int,
    seed: int,
    customers: int | None = None,
    options: DistributedOptions | None = None,
    out: Callable[[str], None] = print,
) -> int:
    """`atm-sim fleet --distributed`: 0 when every invariant holds, 1 otherwise."""
    options = options or DistributedOptions()
    transport = task_transport(settings)
    out(f"fleet --distributed: tasks through {transport.description}")
    app = make_celery(settings, transport)
    workers = workers_answering(app, can_broadcast=transport.can_broadcast)
    shards = shard_count(atms, options.shards, workers)
    if options.shards is None and not transport.can_broadcast:
        out("this transport cannot count the workers: pass --shards N to spread over N of them")
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
            f"fleet: {atms} ATMs, {sessions} sessions, seed {seed}; host at "
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
        out(f"invariant violated; replay with --seed {seed}")
        return 1
    return 0
