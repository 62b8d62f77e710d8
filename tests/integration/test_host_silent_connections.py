"""Silent connections against the real ISO 8583 server and a seeded PostgreSQL bank: a thousand
idle sockets neither shut a real terminal out nor outlive the proof timeout."""

from __future__ import annotations

import logging
import resource
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from config.settings import Settings
from device.controller.ports import CardData, PinBlock
from device.host_client import HostClient
from device.stan_counter import StanCounter
from host.crypto_keys import mac_key_lookup
from host.server import HostServer
from host.service import Bank
from tests.integration.conftest import ALICE, MAC_KEY, balances, pin_block

IDLE_SOCKETS = 1000
PROOF_SECONDS = 1.0
CARD = CardData(ALICE.pan, ALICE.expiry, "201")
PIN = PinBlock(pin_block(ALICE.pin, ALICE.pan), 0)


@pytest.fixture
def enough_descriptors() -> Iterator[None]:
    """Room for a thousand sockets on each side in this one process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 3 * IDLE_SOCKETS
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def server(bank: Bank, bank_engine: sa.Engine, bank_settings: Settings) -> Iterator[HostServer]:
    server = HostServer(
        bank, mac_key_lookup(bank_engine, bank_settings), proof_timeout=PROOF_SECONDS
    )
    server.start()
    yield server
    server.stop()


def _open_idle(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sockets.append(sock)
    return sockets


def _closed_by_host(sock: socket.socket, wait: float) -> bool:
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_a_thousand_idle_sockets_do_not_shut_a_terminal_out(
    enough_descriptors: None,
    server: HostServer,
    bank_engine: sa.Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="host.server")
    idle = _open_idle(server.port, IDLE_SOCKETS)
    try:
        started = time.monotonic()
        client = HostClient(
            "127.0.0.1", server.port, "ATM00001", MAC_KEY, timeout=10, connect_attempts=1
        )
        client.sign_on()
        reply = client.withdraw(CARD, PIN, "checking", 5000)
        took = time.monotonic() - started
        assert reply.approved
        assert took < 2.0, f"the terminal waited {took:.2f} s"
        assert server.unproven_count <= server.max_unproven

        deadline = time.monotonic() + PROOF_SECONDS + 2.0
        still_open = [
            s for s in idle if not _closed_by_host(s, max(0.0, deadline - time.monotonic()))
        ]
        assert still_open == []
        assert server.unproven_count == 0
        # The proven terminal kept its connection and is served on it.
        assert server.connection_count == 1
        client.echo()
        assert client.connected and server.connection_count == 1
        client.close()
    finally:
        for sock in idle:
            sock.close()
    assert balances(bank_engine, "10000001") == (250000, 245000)
    # Closing a thousand silent sockets takes a few log lines, not a thousand.
    assert len([r for r in caplog.records if r.name == "host.server"]) < 50


def test_when_the_unproven_cap_is_full_the_oldest_makes_room(
    bank: Bank, bank_engine: sa.Engine, bank_settings: Settings
) -> None:
    server = HostServer(
        bank, mac_key_lookup(bank_engine, bank_settings), proof_timeout=30, max_unproven=5
    )
    server.start()
    try:
        first = _open_idle(server.port, 5)
        newcomer = _open_idle(server.port, 1)
        assert _closed_by_host(first[0], 5.0)  # the oldest, long before its proof timeout
        assert not any(_closed_by_host(s, 0.2) for s in first[1:] + newcomer)
        # A newcomer that proves itself is never counted against the cap again.
        with HostClient("127.0.0.1", server.port, "ATM00002", MAC_KEY, timeout=10) as atm:
            atm.sign_on()
            more = _open_idle(server.port, 5)
            atm.echo()
            assert atm.connected
        for sock in first + newcomer + more:
            sock.close()
    finally:
        server.stop()
    assert server.connection_count == 0


def test_two_hundred_terminals_on_one_address_are_served_at_once(
    bank: Bank, bank_engine: sa.Engine, bank_settings: Settings
) -> None:
    server = HostServer(bank, mac_key_lookup(bank_engine, bank_settings))
    server.start()
    atms = 200
    barrier = threading.Barrier(atms)
    failures: list[str] = []

    def terminal(index: int) -> None:
        with HostClient(
            "127.0.0.1",
            server.port,
            f"ATM0000{index % 4 + 1}",
            MAC_KEY,
            timeout=30,
            stan=StanCounter(start=1 + index * 10),
        ) as atm:
            try:
                atm.connect()
                barrier.wait(timeout=30)
                atm.echo()
                atm.echo()
            except Exception as err:  # collected, so one failure names itself
                failures.append(f"{index}: {err!r}")

    threads = [threading.Thread(target=terminal, args=(i,)) for i in range(atms)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        server.stop()
    assert failures == []
    assert server.served == 2 * atms
