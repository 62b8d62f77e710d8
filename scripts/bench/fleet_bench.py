"""Fleet cost as N grows: for N = 10, 50, 200 ATMs (4 ptys each) against one bank, sessions per
second, peak memory per ATM, CPU per session, idle CPU of the fleet. Each N runs in its own
process on a fresh database. Run: .venv/bin/python -m scripts.bench.fleet_bench
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from config.settings import load_settings
from device.assembly.bank_stack import BankStack
from device.assembly.fleet import Fleet, FleetConfig
from host.database import database_url, stop_embedded

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


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def backend_cpu(engine: sa.Engine) -> float:
    """CPU seconds of the PostgreSQL backends serving this run's database (same machine)."""
    with engine.connect() as conn:
        pids = list(
            conn.scalars(
                sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            )
        )
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


class PeakRss:
    """Samples the process's resident memory in the background; `peak` is the highest seen."""

    def __init__(self) -> None:
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_one(atms: int, sessions: int, url: str) -> dict[str, Any]:
    """One fleet of `atms` ATMs in this process; its figures as a dict."""
    settings = load_settings({**BENCH_ENV, "DATABASE_URL": url})
    run_dir = Path(tempfile.mkdtemp(prefix="atm-fleet-bench-"))
    with BankStack(settings) as bank:
        rss_bank = rss_bytes()
        config = FleetConfig(atms=atms, sessions=sessions, seed=1, customers=min(100, atms))
        with PeakRss() as memory, Fleet(config, bank, run_dir, out=lambda _: None) as fleet:
            rss_started = rss_bytes()
            threads = threading.active_count()
            idle_cpu = cpu_seconds()
            time.sleep(IDLE_SECONDS)  # nothing to do: what the ATMs cost by just being there
            idle_cpu = cpu_seconds() - idle_cpu
            db_cpu = backend_cpu(bank.engine)
            cpu = cpu_seconds()
            report = fleet.run()
            cpu = cpu_seconds() - cpu
            db_cpu = backend_cpu(bank.engine) - db_cpu
    return {
        "atms": atms,
        "sessions": len(report.results),
        "setup_s": report.setup_seconds,
        "run_s": report.seconds,
        "rate": len(report.results) / report.seconds,
        "p50": report.latency(50),
        "p95": report.latency(95),
        "p99": report.latency(99),
        "idle_cpu_share": idle_cpu / IDLE_SECONDS,
        "cpu_per_session_ms": 1000 * cpu / len(report.results),
        "db_cpu_per_session_ms": 1000 * db_cpu / len(report.results),
        "mem_per_atm_mib": (memory.peak - rss_bank) / atms / 2**20,
        "started_mem_per_atm_mib": (rss_started - rss_bank) / atms / 2**20,
        "threads": threads,
        "ok": report.ok,
        "outcomes": dict(report.outcomes()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--sessions-per-atm", type=float, default=2.0)
    parser.add_argument("--min-sessions", type=int, default=100)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sessions", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level="ERROR")
    if args.one:
        print(json.dumps(run_one(args.one, args.sessions, args.url)), flush=True)
        return 0
    home = Path(tempfile.mkdtemp(prefix="atm-fleet-bench-"))
    home.chmod(0o755)  # the embedded PostgreSQL runs as its own user
    env = {**BENCH_ENV, "ATM_SIM_HOME": str(home)}
    if os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = os.environ["DATABASE_URL"]
    server = make_url(database_url(load_settings(env)))
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    print(f"fleet benchmark on {os.cpu_count()} cores; PIN hashes at bcrypt cost 4")
    print(
        f"{'ATMs':>5} {'sessions':>8} {'setup s':>8} {'sess/s':>7} {'p50 s':>6} {'p95 s':>6} "
        f"{'p99 s':>6} {'MiB/ATM':>8} {'CPU ms/sess':>11} {'DB ms/sess':>10} "
        f"{'idle CPU':>8} {'threads':>7} invariants"
    )
    try:
        for atms in args.sizes:
            sessions = max(args.min_sessions, round(atms * args.sessions_per_atm))
            name = f"atm_fleet_bench_{uuid.uuid4().hex[:8]}"
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            url = server.set(database=name).render_as_string(hide_password=False)
            try:
                command = [sys.executable, "-m", "scripts.bench.fleet_bench", "--one", str(atms)]
                child = subprocess.run(
                    [*command, "--sessions", str(sessions), "--url", url],
                    capture_output=True,
                    text=True,
                    timeout=900,
                    check=False,
                )
            finally:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            if child.returncode != 0:
                print(f"{atms:>5} failed: {child.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(child.stdout.strip().splitlines()[-1])
            print(
                f"{r['atms']:>5} {r['sessions']:>8} {r['setup_s']:>8.1f} {r['rate']:>7.2f} "
                f"{r['p50']:>6.2f} {r['p95']:>6.2f} {r['p99']:>6.2f} "
                f"{r['mem_per_atm_mib']:>8.2f} {r['cpu_per_session_ms']:>11.0f} "
                f"{r['db_cpu_per_session_ms']:>10.1f} {r['idle_cpu_share']:>7.0%} "
                f"{r['threads']:>7} {'hold' if r['ok'] else 'VIOLATED'}",
                flush=True,
            )
            print(f"      outcomes: {r['outcomes']}", flush=True)
    finally:
        admin.dispose()
        stop_embedded()
    print(
        "idle CPU: share of one core the started fleet uses with no customer at all "
        "(every emulator link polls at 100 Hz)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
