"""Fleet cost as N grows: for N = 10, 50, 200 ATMs (4 ptys each) against one bank, sessions per
second, latency, memory per ATM, CPU per session, the idle CPU of the fleet and the host's answer
times. The ATMs run in processes of up to 25 (see fleet.sharded.SHARD_ATMS), the bank and host
in this one; each N on a fresh database. `--think-seconds T` spaces each ATM's customers by a
random wait of mean T (a fleet that is not flat out). The devices are on inline links (in the
ATM's process, answering in the driver's thread) unless `--link-backend pty` asks for ptys. Run:
.venv/bin/python -m scripts.bench.fleet_bench [--sizes N ...] [--shard-atms N]
[--think-seconds T] [--link-backend pty|socket|sim|inline]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa

from config.settings import load_settings
from device.sim.bank_stack import BankStack
from device.sim.fleet.cli import run_directory
from device.sim.fleet.in_process import FleetConfig
from device.sim.fleet.sharded import SHARD_ATMS, run_sharded
from host.database import database_url, scratch_database, stop_embedded
from peripherals.links.backends import BACKENDS
from scripts.bench.process_cpu import cpu_seconds, own_cpu_seconds
from scripts.bench.stats import percentile

SIZES = (10, 50, 200)
IDLE_SECONDS = 3.0
BENCH_ENV = {
    "SECRET_KEY": "bench-secret-key-0123456789",
    "PIN_PEPPER": "bench-pin-pepper-0123456789",
    # PIN hashes at the lowest cost, so the ATMs are measured rather than bcrypt (at the default
    # cost 12 every card request spends about 0.2 s of host CPU on the PIN check).
    "BCRYPT_ROUNDS": "4",
    "ENVIRONMENT": "testing",
}


def backend_cpu(engine: sa.Engine) -> float:
    """CPU seconds of the PostgreSQL backends serving this run's database (same machine)."""
    with engine.connect() as conn:
        pids = list(
            conn.scalars(
                sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            )
        )
    return sum(cpu_seconds(pid) or 0.0 for pid in pids)


def measure(
    atms: int, sessions: int, url: str, shard_atms: int, think_seconds: float, link_backend: str
) -> str:
    settings = load_settings({**BENCH_ENV, "DATABASE_URL": url})
    config = FleetConfig(
        atms=atms,
        sessions=sessions,
        seed=1,
        customers=min(100, atms),
        think_seconds=think_seconds,
        link_backend=link_backend,
    )
    with run_directory() as run_dir, BankStack(settings) as bank:
        host_cpu = own_cpu_seconds()
        run = run_sharded(
            config,
            bank,
            run_dir,
            out=lambda _: None,
            shard_atms=shard_atms,
            idle_seconds=IDLE_SECONDS,
        )
        host_cpu = own_cpu_seconds() - host_cpu
        db_cpu = backend_cpu(bank.engine)  # the backends live as long as the pool: all of it
        answers = bank.server.answer_seconds()
    report, shards = run.report, run.shards
    count = len(report.results)
    atm_cpu = sum(s["cpu_seconds"] for s in shards)
    atm_system = sum(s["system_cpu_seconds"] for s in shards) / max(atm_cpu, 1e-9)
    memory = sum(s["peak_rss"] - s["rss_bare"] for s in shards) / atms / 2**20
    bare = sum(s["rss_bare"] for s in shards) / len(shards) / 2**20
    idle = sum(s["idle_cpu_seconds"] for s in shards) / IDLE_SECONDS
    # The machine is full when the fleet runs flat out: its cores over the CPU of a session
    # (ATMs, host, database) bound the sessions per second, whatever the fleet does.
    session_cpu = (atm_cpu + host_cpu + db_cpu) / count
    cores = len(os.sched_getaffinity(0))
    return (
        f"{atms:>5} {count:>8} {len(shards):>5} {report.setup_seconds:>7.1f} "
        f"{count / report.seconds:>7.2f} {report.latency(50):>6.2f} {report.latency(95):>6.2f} "
        f"{report.latency(99):>6.2f} {memory:>8.2f} {bare:>7.0f} "
        f"{1000 * atm_cpu / count:>8.0f} {atm_system:>5.0%} {1000 * host_cpu / count:>8.0f} "
        f"{1000 * db_cpu / count:>6.0f} {idle:>7.0%} {'hold' if report.ok else 'VIOLATED'}\n"
        f"      host answers {len(answers)}: p50 {1000 * percentile(answers, 0.5):.1f} ms, "
        f"p99 {1000 * percentile(answers, 0.99):.1f} ms; outcomes: {dict(report.outcomes())}\n"
        f"      {cores} cores at {1000 * session_cpu:.1f} ms of CPU a session (ATM + host + DB) "
        f"allow at most {cores / session_cpu:.0f} sessions/s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--sessions-per-atm", type=float, default=2.0)
    parser.add_argument("--min-sessions", type=int, default=100)
    parser.add_argument(
        "--think-seconds",
        type=float,
        default=0.0,
        help="mean seconds before each customer arrives at an ATM (random; default 0: each "
        "session right after the last)",
    )
    parser.add_argument(
        "--shard-atms",
        type=int,
        default=SHARD_ATMS,
        help=f"ATMs per process (default {SHARD_ATMS}; 200 runs 200 ATMs in one process)",
    )
    parser.add_argument(
        "--link-backend",
        choices=BACKENDS,
        default="inline",
        help="the ATMs' device links (default inline: the fleet's cost without OS ptys)",
    )
    args = parser.parse_args()
    logging.basicConfig(level="ERROR")
    home = Path(tempfile.mkdtemp(prefix="atm-fleet-bench-"))
    home.chmod(0o755)  # the embedded PostgreSQL runs as its own user
    env = {**BENCH_ENV, "ATM_SIM_HOME": str(home)}
    if os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = os.environ["DATABASE_URL"]
    server_url = database_url(load_settings(env))
    print(
        f"fleet benchmark on {os.cpu_count()} cores; PIN hashes at bcrypt cost 4; "
        f"up to {args.shard_atms} ATMs per process; {args.link_backend} device links"
    )
    print(
        f"{'ATMs':>5} {'sessions':>8} {'procs':>5} {'setup s':>7} {'sess/s':>7} {'p50 s':>6} "
        f"{'p95 s':>6} {'p99 s':>6} {'MiB/ATM':>8} {'MiB/proc':>7} {'ATM ms':>8} {'sys':>5} "
        f"{'host ms':>8} {'DB ms':>6} {'idle':>7} invariants"
    )
    try:
        for atms in args.sizes:
            sessions = max(args.min_sessions, round(atms * args.sessions_per_atm))
            with scratch_database(server_url, "atm_fleet_bench") as url:
                line = measure(
                    atms, sessions, url, args.shard_atms, args.think_seconds, args.link_backend
                )
                print(line, flush=True)
    finally:
        stop_embedded()
        shutil.rmtree(home, ignore_errors=True)  # the embedded server's data directory
    print(
        "ms columns: CPU per session of the ATM processes (drivers, controllers, emulators, "
        "links), of this process (ISO 8583 host and bank service) and of the PostgreSQL backends. "
        "sys: the kernel's share of the ATM processes' CPU (system calls, and threads taking "
        "turns with the interpreter lock)."
    )
    print(
        "host answers: from reading each request to sending its answer, at the ISO 8583 host "
        "(queueing, the bank and the MAC included), for the whole run."
    )
    print(
        "MiB/ATM: peak resident memory of the ATM processes above a bare interpreter (MiB/proc), "
        "per ATM. idle: share of one core the started fleet uses with no customer at all."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
