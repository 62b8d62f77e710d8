"""Host throughput: N terminals send withdrawals over TCP to the ISO 8583 host on real PostgreSQL.

Prints authorisations per second, p50/p99 latency, the bcrypt PIN checks the host ran, and the
bare conditional UPDATE rate measured against the same database in the same run.

Workloads: `withdrawals` (the default) sends one withdrawal after another with the card's one
fixed-key PIN block, so after the first every request is a PIN block the host already verified;
`sessions` runs customer sessions (PIN check, withdrawal, balance) each with a new format 4 PIN
block (random fill), so each session costs the host one bcrypt.
Each terminal has its own customer, card and account unless `--cards N` makes them share N.
`--host-processes N` runs the host as deployed (`atm-sim host serve --processes N`) instead of
in this process; `--profile` prints where the host's threads spend their CPU per request. Run:
.venv/bin/python -m scripts.bench.host_bench [--bcrypt-rounds 12] [--workload sessions]
[--terminals 16] [--cards N] [--host-processes N] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import re
import select
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
import yaml
from psec import des, pinblock

from config.card_numbers import luhn_check_digit
from config.settings import Settings, load_settings
from device.controller.ports import CardData, HostReply, PinBlock
from device.host_client import HostClient, HostClientError
from host import bank_admin, pin_unit
from host.crypto_keys import mac_key_lookup
from host.database import database_url, host_engine, scratch_database
from host.server import WORKERS, HostServer
from host.service import Bank
from scripts.bench.cpu_profile import CpuProfile
from scripts.bench.process_cpu import (
    CpuMeter,
    database_server_pids,
    own_cpu_seconds,
    process_tree,
)
from scripts.bench.stats import percentile

MAC_KEY = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")
PIN_KEY_TDES = bytes.fromhex("89ABCDEF0123456776543210FEDCBA98")
PIN_KEY_AES = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
WORKLOADS = ("withdrawals", "sessions")
BENCH_PIN = "1234"
BENCH_EXPIRY = "3012"


@dataclass(frozen=True)
class BenchCard:
    pan: str
    account: str


def bench_cards(count: int) -> list[BenchCard]:
    """`count` customers, each with one card and one checking account, added to the seed."""
    cards = []
    for n in range(1, count + 1):
        body = f"49900000{n:07d}"
        cards.append(BenchCard(body + luhn_check_digit(body), f"9{n:07d}"))
    return cards


BENCH_BALANCE = 10**11  # cents put in each bench account so that no withdrawal is declined


@dataclass
class TerminalResult:
    latencies: list[float]
    approved: int = 0
    sessions: int = 0
    declined: dict[str, int] | None = None
    errors: int = 0


def format0_pin_block(pin: str, pan: str) -> bytes:
    """An ISO 9564 format 0 PIN block under the test TDES PIN key, as the PIN pad makes it."""
    return bytes(des.encrypt_tdes_ecb(PIN_KEY_TDES, pinblock.encode_pinblock_iso_0(pin, pan)))


def format4_pin_block(pin: str, pan: str) -> bytes:
    """An ISO 9564 format 4 PIN block under the test AES PIN key: random fill, new each time."""
    return bytes(pinblock.encipher_pinblock_iso_4(PIN_KEY_AES, pin, pan))


def bench_settings(home: Path, bcrypt_rounds: int, url: str | None) -> Settings:
    return load_settings(bench_environment(home, bcrypt_rounds, url))


def bench_environment(home: Path, bcrypt_rounds: int, url: str | None) -> dict[str, str]:
    env = {
        "ATM_SIM_HOME": str(home),
        "BCRYPT_ROUNDS": str(bcrypt_rounds),
        "DAILY_WITHDRAWAL_LIMIT": str(10**11),
        "SECRET_KEY": "bench-secret-key-0123456789",
        "PIN_PEPPER": "bench-pin-pepper-0123456789",
        "ENVIRONMENT": "testing",
        "LOG_LEVEL": "WARNING",
    }
    if url:
        env["DATABASE_URL"] = url
    return env


@contextlib.contextmanager
def host_processes(environment: dict[str, str], processes: int) -> Iterator[tuple[int, int]]:
    """`atm-sim host serve --processes N` on a free port, as deployed; yields the port and the
    first process's pid."""
    command = [sys.executable, "-m", "device.sim.cli", "--log-format", "text", "host", "serve"]
    command += ["--port", "0", "--processes", str(processes)]
    host = subprocess.Popen(
        command, env={**os.environ, **environment}, stdout=subprocess.PIPE, text=True
    )
    try:
        assert host.stdout is not None
        ready, _, _ = select.select([host.stdout], [], [], 60.0)
        line = host.stdout.readline() if ready else ""
        found = re.search(r"listening on [^:]+:(\d+)", line)
        if found is None:
            raise SystemExit(f"host_bench: the host did not start: {line.strip() or 'silent'}")
        yield int(found.group(1)), host.pid
    finally:
        host.terminate()
        host.wait(10.0)


def bench_seed(directory: Path, count: int, cards: Sequence[BenchCard]) -> Path:
    """The sample bank's seed file with terminals ATM00001..count, all with the test keys, and
    one customer per bench card."""
    seed = yaml.safe_load(bank_admin.SEED_FILE.read_text(encoding="utf-8"))
    for n, card in enumerate(cards, start=1):
        seed["customers"].append(
            {
                "name": f"Bench Customer {n}",
                "accounts": [{"number": card.account, "type": "checking", "balance": 0}],
                "cards": [
                    {
                        "pan": card.pan,
                        "pin": BENCH_PIN,
                        "expiry": BENCH_EXPIRY,
                        "accounts": [card.account],
                    }
                ],
            }
        )
    template = seed["terminals"][0]
    known = {t["id"] for t in seed["terminals"]}
    for n in range(1, count + 1):
        if f"ATM{n:05d}" not in known:
            seed["terminals"].append({**template, "id": f"ATM{n:05d}"})
    path = directory / "bank_seed.yaml"
    path.write_text(yaml.safe_dump(seed, sort_keys=False), encoding="utf-8")
    return path


SESSION_STEPS = ("pin_verify", "withdrawal", "balance")


def send(client: HostClient, step: str, card: CardData, block: PinBlock, amount: int) -> HostReply:
    if step == "pin_verify":
        return client.verify_pin(card, block)
    if step == "balance":
        return client.balance(card, block, "checking")
    return client.withdraw(card, block, "checking", amount)


def run_terminal(
    port: int,
    terminal_id: str,
    bench_card: BenchCard,
    amount: int,
    stop_at: float,
    result: TerminalResult,
    workload: str = "withdrawals",
) -> None:
    pan, pin = bench_card.pan, BENCH_PIN
    card = CardData(pan, BENCH_EXPIRY, "201")
    block = PinBlock(format0_pin_block(pin, pan), 0)
    declined: dict[str, int] = {}
    with HostClient("127.0.0.1", port, terminal_id, MAC_KEY, timeout=30) as client:
        client.sign_on()
        while time.perf_counter() < stop_at:
            steps = SESSION_STEPS if workload == "sessions" else ("withdrawal",)
            if workload == "sessions":
                block = PinBlock(format4_pin_block(pin, pan), 4)
                result.sessions += 1
            for step in steps:
                started = time.perf_counter()
                try:
                    reply = send(client, step, card, block, amount)
                except HostClientError as err:
                    result.errors += 1
                    if result.errors == 1:
                        print(f"{terminal_id}: {err}", file=sys.stderr)
                    break
                result.latencies.append(time.perf_counter() - started)
                if reply.approved:
                    result.approved += 1
                else:
                    declined[reply.response_code] = declined.get(reply.response_code, 0) + 1
                    break
    result.declined = declined


def bare_update_rate(
    engine: sa.Engine, accounts: Sequence[str], seconds: float
) -> tuple[float, int]:
    """Committed conditional debits per second, each its own transaction, `threads` at once,
    and how many were made.

    Thread n debits the account terminal n withdraws from (`accounts[n]`), so row contention
    is the same.
    """
    # What a withdrawal's hold does to the account row: available goes down if it can.
    statement = sa.text(
        "UPDATE accounts SET available_balance = available_balance - :amount "
        "WHERE number = :number AND available_balance >= :amount RETURNING available_balance"
    )
    threads = len(accounts)
    counts = [0] * threads
    stop_at = time.perf_counter() + seconds

    def worker(index: int) -> None:
        account = accounts[index]
        with engine.connect() as conn:
            while time.perf_counter() < stop_at:
                with conn.begin():
                    conn.execute(statement, {"amount": 1, "number": account}).one()
                counts[index] += 1

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - started), sum(counts)


@dataclass(frozen=True)
class CpuSplit:
    """CPU seconds spent in one timed part of the run, by process."""

    this_process: float  # the terminals (and the host, when it runs in this process)
    host: float  # the host's own processes
    database: float  # the PostgreSQL server


def cpu_report(
    load: CpuSplit, approved: int, updates: CpuSplit, update_count: int, update_rate: float
) -> list[str]:
    """Where the cores went per authorisation and per bare UPDATE, and what that leaves: the
    most authorisations/s the machine's cores allow with a host that spent nothing."""
    cores = len(os.sched_getaffinity(0))

    def ms(seconds: float, count: int) -> str:
        return f"{seconds / max(1, count) * 1000:.2f}"

    total = load.this_process + load.host + load.database
    if load.host:
        parts = f"host {ms(load.host, approved)}, terminals (this process) "
    else:
        parts = "host and terminals (this process) "
    lines = [
        f"CPU/authorisation    {parts}{ms(load.this_process, approved)}, PostgreSQL "
        f"{ms(load.database, approved)}: {ms(total, approved)} ms in all, on {cores} cores",
        f"CPU/bare UPDATE      its client (this process) {ms(updates.this_process, update_count)}"
        f", PostgreSQL {ms(updates.database, update_count)} ms",
    ]
    if load.host and load.database:
        without_host = (load.this_process + load.database) / max(1, approved)
        ceiling = cores / without_host
        budget = cores / (0.5 * update_rate) * 1000
        lines.append(
            f"ceiling              a host spending no CPU would leave the terminals and "
            f"PostgreSQL at most {ceiling:.0f} authorisations/s (ratio "
            f"{ceiling / update_rate:.2f}); ratio 0.5 needs {budget:.2f} ms of CPU an "
            "authorisation in all"
        )
    return lines


HOST_THREADS = "iso8583-"  # the host server's event loop and workers (host/server.py)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--terminals", type=int, default=4, help="concurrent ATMs (default 4)")
    parser.add_argument("--seconds", type=float, default=8.0, help="load duration (default 8)")
    parser.add_argument(
        "--bcrypt-rounds", type=int, default=4, help="bcrypt cost of the PIN hashes (default 4)"
    )
    parser.add_argument("--amount", type=int, default=2000, help="cents per withdrawal")
    parser.add_argument(
        "--no-pin-memory",
        action="store_true",
        help="let the host forget every verified PIN block at once: bcrypt on every request, "
        "as before the host remembered them (for comparison)",
    )
    parser.add_argument(
        "--workload",
        choices=WORKLOADS,
        default="withdrawals",
        help="withdrawals with one PIN block, or sessions (PIN check, withdrawal, balance) "
        "with a new PIN block each (default withdrawals)",
    )
    parser.add_argument(
        "--cards",
        type=int,
        default=0,
        help="customers (one card, one account each) the terminals share in turn (default: one "
        "per terminal, as at real ATMs; fewer makes terminals queue on the same card and account)",
    )
    parser.add_argument(
        "--host-processes",
        type=int,
        default=0,
        help="run the host as `atm-sim host serve --processes N` (default: in this process)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the host's threads under yappi and print where their CPU goes, per "
        "request answered (host in this process only; the figures above are then slower)",
    )
    args = parser.parse_args(argv)
    if args.host_processes and args.no_pin_memory:
        parser.error("--no-pin-memory works on a host in this process only")
    if args.host_processes and args.profile:
        parser.error("--profile works on a host in this process only")
    cards = bench_cards(args.cards or args.terminals)
    card_of_terminal = [cards[n % len(cards)] for n in range(args.terminals)]
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", message=".*TripleDES")  # the test keys are double length

    with tempfile.TemporaryDirectory(prefix="atm-host-bench-") as tmp:
        scratch = contextlib.ExitStack()  # a database of its own on DATABASE_URL's server
        server_url = os.environ.get("DATABASE_URL")
        url = None
        if server_url:
            on_server = database_url(bench_settings(Path(tmp), 4, server_url))
            url = scratch.enter_context(scratch_database(on_server, "atm_bench"))
        settings = bench_settings(Path(tmp), args.bcrypt_rounds, url)
        engine = host_engine(database_url(settings), WORKERS)
        stack = contextlib.ExitStack()  # the host, in this process or in its own
        try:
            bank_admin.seed_bank(settings, bench_seed(Path(tmp), args.terminals, cards))
            with engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "UPDATE accounts SET ledger_balance = :b, available_balance = :b "
                        "WHERE customer_id IS NOT NULL"
                    ),
                    {"b": BENCH_BALANCE},
                )
            if args.host_processes:
                environment = bench_environment(
                    Path(tmp), args.bcrypt_rounds, database_url(settings)
                )
                port, host_pid = stack.enter_context(
                    host_processes(environment, args.host_processes)
                )
                host_meter = CpuMeter(lambda: process_tree(host_pid))
            else:
                host_meter = CpuMeter(list)  # the host's CPU is this process's
                bank = Bank(engine, settings)
                if args.no_pin_memory:
                    bank.verified_pins = pin_unit.VerifiedPins(settings, dt.timedelta(0))
                server = stack.enter_context(HostServer(bank, mac_key_lookup(engine, settings)))
                port = server.port
            results = [TerminalResult([]) for _ in range(args.terminals)]
            stop_at = time.perf_counter() + args.seconds
            threads = [
                threading.Thread(
                    target=run_terminal,
                    args=(
                        port,
                        f"ATM{n + 1:05d}",
                        card_of_terminal[n],
                        args.amount,
                        stop_at,
                        results[n],
                        args.workload,
                    ),
                )
                for n in range(args.terminals)
            ]
            checks_before = pin_unit.bcrypt_checks()
            profiler = CpuProfile() if args.profile else None
            if profiler is not None:
                profiler.start()
            database_meter = CpuMeter(lambda: database_server_pids(engine))
            database_meter.start()
            host_meter.start()
            own_cpu = own_cpu_seconds()
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - started
            load_cpu = CpuSplit(
                own_cpu_seconds() - own_cpu, host_meter.spent(), database_meter.spent()
            )
            if profiler is not None:
                answered = sum(len(r.latencies) for r in results)
                profiler.report(max(1, answered), "request", threads=HOST_THREADS)
            stack.close()  # the host stops before the bare rate is measured
            bcrypt_runs = pin_unit.bcrypt_checks() - checks_before
            database_meter.start()
            own_cpu = own_cpu_seconds()
            update_rate, updates = bare_update_rate(
                engine, [c.account for c in card_of_terminal], 3.0
            )
            update_cpu = CpuSplit(own_cpu_seconds() - own_cpu, 0.0, database_meter.spent())
        finally:
            stack.close()
            engine.dispose()
            scratch.close()
    latencies = [x for r in results for x in r.latencies]
    approved = sum(r.approved for r in results)
    declined: dict[str, int] = {}
    for r in results:
        for code, count in (r.declined or {}).items():
            declined[code] = declined.get(code, 0) + count
    rate = approved / elapsed
    errors = sum(r.errors for r in results)
    mean = statistics.fmean(latencies) * 1000 if latencies else float("nan")
    print(f"terminals            {args.terminals} (ATM00001..ATM{args.terminals:05d})")
    print(f"cards                {len(cards)} (one account each, shared by the terminals in turn)")
    print(
        f"bcrypt cost          {settings.bcrypt_rounds} (BCRYPT_ROUNDS; the product default is 12)"
    )
    where = "a fresh database on DATABASE_URL" if url else "embedded PostgreSQL, fresh data dir"
    print(f"database             {where}")
    memory = "off (every request hashed)" if args.no_pin_memory else "on"
    print(f"verified PIN memory  {memory}")
    if args.workload == "sessions":
        sessions = sum(r.sessions for r in results)
        print(
            f"duration             {elapsed:.1f} s of customer sessions (PIN check, "
            f"{args.amount}-cent withdrawal, balance; a new PIN block each)"
        )
        print(f"sessions             {sessions} ({sessions / elapsed:.1f}/s)")
    else:
        print(
            f"duration             {elapsed:.1f} s of {args.amount}-cent withdrawals (0200), "
            "one PIN block per card"
        )
    print(f"approved             {approved}, declined {declined or 0}, link errors {errors}")
    print(f"authorisations/s     {rate:.1f} (approved requests)")
    if args.host_processes:
        print(f"host                 {args.host_processes} process(es) of `atm-sim host serve`")
    else:
        per_approval = bcrypt_runs / max(1, approved)
        print(f"bcrypt PIN checks    {bcrypt_runs} ({per_approval:.3f} per approval)")
    print(
        f"latency p50 / p99    {percentile(latencies, 0.5) * 1000:.1f} / "
        f"{percentile(latencies, 0.99) * 1000:.1f} ms (mean {mean:.1f} ms)"
    )
    print(
        f"bare UPDATE/s        {update_rate:.1f} (conditional debit, {args.terminals} connections)"
    )
    print(f"ratio                {rate / update_rate:.3f} authorisations per bare UPDATE")
    for line in cpu_report(load_cpu, approved, update_cpu, updates, update_rate):
        print(line)
    return 0 if approved else 1


if __name__ == "__main__":
    sys.exit(main())
