"""Full withdrawal sessions end to end (devices on ptys, ISO 8583 host, PostgreSQL), against the
bare I/O floor of one session measured in the same run. Run: python -m scripts.bench.session_bench
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from config.settings import load_settings
from device.clock import VirtualClock
from device.drivers.base import SerialDriver
from device.sim.bank_stack import BankStack
from device.sim.customer_script import parse_script, run_action
from device.sim.simulated_atm import SimulatedAtm
from host.database import stop_embedded
from peripherals.emulator import Emulator
from peripherals.harness.profile import DEFAULT_PROFILE, load_profile
from peripherals.links.endpoint import PtyEndpoint
from peripherals.links.runner import LinkRunner

# (card, PIN, account key): five accounts, so the daily limit of one is not the bottleneck.
CUSTOMERS = [
    ("alice", "1234", "F1"),
    ("alice", "1234", "F2"),
    ("bob", "4321", "F1"),
    ("charlie", "0852", "F1"),
    ("charlie", "0852", "F2"),
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


class _Echo(Emulator):
    NAME = "echo"

    def receive(self, data: bytes) -> None:
        self.send(data)


def pty_round_trip(samples: int) -> float:
    """Median seconds for 16 bytes to go to an emulator over a pty and come back."""
    times = []
    with LinkRunner(_Echo(), PtyEndpoint()) as runner:
        driver = SerialDriver(runner.url)
        try:
            for _ in range(samples):
                start = time.perf_counter()
                driver.write(b"0123456789ABCDEF")
                got = b""
                while len(got) < 16:
                    got += driver.read_some(time.monotonic() + 1.0)
                times.append(time.perf_counter() - start)
        finally:
            driver.close()
    return statistics.median(times)


def tcp_round_trip(samples: int) -> float:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    times = []
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(samples):
            start = time.perf_counter()
            client.sendall(b"x" * 64)
            got = b""
            while len(got) < 64:
                got += client.recv(4096)
            times.append(time.perf_counter() - start)
    server.close()
    thread.join(timeout=2)
    return statistics.median(times)


def postgres_transaction(engine: sa.Engine, samples: int) -> float:
    """Median seconds of one transaction with the conditional UPDATE a withdrawal needs."""
    times = []
    statement = sa.text(
        "UPDATE accounts SET available_balance = available_balance - 0 "
        "WHERE number = '10000001' AND available_balance >= 0 RETURNING available_balance"
    )
    for _ in range(samples):
        start = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(statement).one()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--bcrypt-rounds", type=int, default=4)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="atm-sim-bench-"))
    env = {
        "ATM_SIM_HOME": str(home),
        "BCRYPT_ROUNDS": str(args.bcrypt_rounds),
        "SECRET_KEY": "bench-secret-key-0123456789",
        "PIN_PEPPER": "bench-pin-pepper-0123456789",
    }
    if os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = os.environ["DATABASE_URL"]
    settings = load_settings(env)
    profile = load_profile(DEFAULT_PROFILE)
    assert profile.host is not None
    with BankStack(settings) as bank:
        atm = SimulatedAtm(
            profile,
            bank.address_for(profile.host.mac_key),
            home / "atm",
            clock=VirtualClock(),
            settle_seconds=0.002,
        )
        with atm:
            devices = [atm.bay.emulator(name) for name in atm.bay.names]
            durations, commands = [], []
            started = time.perf_counter()
            for number in range(args.sessions):
                script = parse_script(
                    session_script(*CUSTOMERS[number % len(CUSTOMERS)]).splitlines()
                )
                seen = sum(d.faults.commands_seen for d in devices)
                begin = time.perf_counter()
                for action in script:
                    run_action(atm, action)
                durations.append(time.perf_counter() - begin)
                commands.append(sum(d.faults.commands_seen for d in devices) - seen)
            wall = time.perf_counter() - started
        pty = pty_round_trip(200)
        tcp = tcp_round_trip(200)
        database = postgres_transaction(bank.engine, 200)
    stop_embedded()
    shutil.rmtree(home, ignore_errors=True)  # the embedded server's data directory
    device_commands = statistics.median(commands)
    host_exchanges = 3  # PIN verification, withdrawal, completion advice
    floor = device_commands * pty + host_exchanges * (tcp + database)
    median = statistics.median(durations)
    print(f"sessions:                 {args.sessions} (bcrypt cost {args.bcrypt_rounds})")
    print(f"sessions per second:      {args.sessions / wall:.2f}")
    print(f"median session time:      {median * 1000:.1f} ms")
    print(f"device commands/session:  {device_commands:.0f} (pty round trip {pty * 1e6:.0f} us)")
    print(
        f"host exchanges/session:   {host_exchanges} (TCP round trip {tcp * 1e6:.0f} us, "
        f"PostgreSQL transaction {database * 1e6:.0f} us)"
    )
    print(f"bare I/O floor/session:   {floor * 1000:.2f} ms")
    print(f"ratio session / floor:    {median / floor:.1f}x")


if __name__ == "__main__":
    main()
