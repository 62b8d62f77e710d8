"""HTTP service overhead: an account read and a lab step, by 16 concurrent clients over HTTP to a
real `atm-sim api serve` process, next to the same operations called in-process in the same run.

Prints requests per second and p50/p99 latency of each, and the in-process / HTTP ratio (the
cost of HTTP, JSON and the token check). Run: .venv/bin/python -m scripts.bench.api_bench
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from config.settings import Settings, load_settings
from device.sim.api.lab import Lab, LabAtmSpec
from device.sim.bank_stack import BankStack
from host import bank_admin
from host.api import bank_queries
from host.api.operators import create_operator
from host.database import database_url, make_engine, scratch_database
from scripts.bench.stats import percentile

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = "10000001"
OPERATOR = ("bench", "bench-password-1")
START_SECONDS = 90.0


@dataclass
class Measured:
    operation: str
    mode: str
    latencies: list[float]
    seconds: float
    errors: int

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        return percentile(self.latencies, fraction) * 1000


def hammer(
    operation: str,
    mode: str,
    clients: int,
    seconds: float,
    make_call: Callable[[], Callable[[], None]],
) -> Measured:
    """`clients` threads each call their own `make_call()` result until `seconds` pass."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client() -> None:
        call = make_call()
        mine: list[float] = []
        start.wait()
        while time.perf_counter() < stop_at[0]:
            began = time.perf_counter()
            try:
                call()
            except Exception:  # a failed call is counted, the run goes on
                with lock:
                    errors[0] += 1
                continue
            mine.append(time.perf_counter() - began)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join(seconds + 60)
    return Measured(operation, mode, latencies, time.perf_counter() - began, errors[0])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "device.sim.cli", "api", "serve", "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=sink, env=env, cwd=REPO)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the API server ended: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the API server did not answer in {START_SECONDS:g} s")


def measure_http(url: str, clients: int, seconds: float) -> list[Measured]:
    with httpx.Client(base_url=url, timeout=30) as setup:
        token = setup.post("/auth/token", json={"name": OPERATOR[0], "password": OPERATOR[1]})
        token.raise_for_status()
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        made = setup.post("/lab/atms", json={"auto_step": False}, headers=headers)
        made.raise_for_status()
        terminal = made.json()["terminal_id"]

    def reader() -> Callable[[], None]:
        client = httpx.Client(base_url=url, headers=headers, timeout=30)

        def read() -> None:
            client.get(f"/bank/accounts/{ACCOUNT}").raise_for_status()

        return read

    def stepper() -> Callable[[], None]:
        client = httpx.Client(base_url=url, headers=headers, timeout=30)

        def step() -> None:
            client.post(f"/lab/atms/{terminal}/step", json={"count": 1}).raise_for_status()

        return step

    results = [
        hammer("account read", "HTTP", clients, seconds, reader),
        hammer("lab step", "HTTP", clients, seconds, stepper),
    ]
    with httpx.Client(base_url=url, headers=headers, timeout=30) as cleanup:
        cleanup.delete(f"/lab/atms/{terminal}")
    return results


def measure_in_process(settings: Settings, clients: int, seconds: float) -> list[Measured]:
    with BankStack(settings) as stack:
        engine = make_engine(
            stack.engine.url.render_as_string(hide_password=False), pool_size=clients + 2
        )
        lab = Lab(
            settings,
            default_host=("127.0.0.1", stack.server.port),
            state_root=settings.atm_sim_home / "bench-lab",
        )
        atm = lab.create(LabAtmSpec(auto_step=False))

        def read() -> None:
            if bank_queries.get_account(engine, ACCOUNT) is None:
                raise LookupError(ACCOUNT)

        def step() -> None:
            atm.step(1)
            atm.view()  # the HTTP answer carries the ATM's view too

        try:
            return [
                hammer("account read", "in-process", clients, seconds, lambda: read),
                hammer("lab step", "in-process", clients, seconds, lambda: step),
            ]
        finally:
            lab.stop_all()
            engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (16)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement (5)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="atm-api-bench-") as tmp:
        home = Path(tmp)
        base = {
            "ATM_SIM_HOME": str(home),
            "BCRYPT_ROUNDS": "4",
            "SECRET_KEY": "api-bench-secret-key-0123456789",
            "PIN_PEPPER": "api-bench-pin-pepper-0123456789",
            "LOG_LEVEL": "WARNING",
        }
        server_url = database_url(
            load_settings({**base, "DATABASE_URL": os.environ.get("DATABASE_URL", "")})
        )
        with scratch_database(server_url, "atm_api_bench") as url:
            settings = load_settings({**base, "DATABASE_URL": url})
            bank_admin.seed_bank(settings)
            engine = make_engine(url)
            create_operator(engine, settings, OPERATOR[0], "operator", OPERATOR[1])
            engine.dispose()
            port = free_port()
            env = {**os.environ, **base, "DATABASE_URL": url}
            server = start_server(env, port, home / "api.log")
            try:
                http = measure_http(f"http://127.0.0.1:{port}", args.clients, args.seconds)
            finally:
                server.terminate()
                server.wait(30)
            local = measure_in_process(settings, args.clients, args.seconds)
    print(
        f"{args.clients} concurrent clients, {args.seconds:g} s per measurement, "
        f"{os.cpu_count()} CPU cores shared by server and clients"
    )
    print(
        f"{'operation':<13} {'mode':<11} {'requests':>9} {'req/s':>9} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'errors':>6}"
    )
    for m in (*http, *local):
        print(
            f"{m.operation:<13} {m.mode:<11} {len(m.latencies):>9} {m.rate:>9.1f} "
            f"{m.percentile(0.5):>8.2f} {m.percentile(0.99):>8.2f} {m.errors:>6}"
        )
    for operation in ("account read", "lab step"):
        over_http = next(m for m in http if m.operation == operation)
        inside = next(m for m in local if m.operation == operation)
        ratio = inside.rate / over_http.rate if over_http.rate else float("nan")
        print(
            f"{operation}: in-process / HTTP throughput = {ratio:.1f}x "
            f"(p50 {inside.percentile(0.5):.2f} ms vs {over_http.percentile(0.5):.2f} ms)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
