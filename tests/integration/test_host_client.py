"""The ATM's host client over real TCP: typed requests, STANs, timeouts, reconnects, refusals."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.clock import VirtualClock
from device.controller.ports import CardData, HostUnavailable, MiniStatementLine, PinBlock
from device.host_client import (
    HostClient,
    HostProtocolError,
    HostRefused,
    HostTimeout,
    HostUnreachable,
)
from device.stan_counter import StanCounter, StanStoreError
from host import iso8583 as iso
from host.iso8583 import Message
from host.messages import HostRequest, HostResponse, ResponseCode, StatementLine
from host.server import HostServer

MAC_KEY = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")
CARD = CardData("4761739001010010", "3012", "201")
PIN = PinBlock(bytes.fromhex("0412AC89ABCDEF67"), 0)
POSTED = dt.datetime(2026, 11, 28, 9, 30, tzinfo=dt.UTC)


class ScriptedBank:
    """Records requests; answers approved with fixed balances and one statement line."""

    def __init__(self) -> None:
        self.requests: list[HostRequest] = []
        self.code = ResponseCode.APPROVED

    def handle(self, request: HostRequest) -> HostResponse:
        self.requests.append(request)
        return HostResponse(
            self.code,
            request.stan,
            retrieval_reference="000000000042",
            ledger_balance=250000,
            available_balance=245000,
            statement=(StatementLine(POSTED, "ATM withdrawal", -5000, 245000),),
        )


@pytest.fixture
def bank() -> ScriptedBank:
    return ScriptedBank()


@pytest.fixture
def server(bank: ScriptedBank) -> Iterator[HostServer]:
    server = HostServer(bank, {"ATM00001": MAC_KEY}.get)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(server: HostServer) -> Iterator[HostClient]:
    with HostClient("127.0.0.1", server.port, "ATM00001", MAC_KEY, timeout=5) as client:
        yield client


def test_typed_requests_reach_the_bank_as_meant(client: HostClient, bank: ScriptedBank) -> None:
    client.sign_on()
    client.echo()
    withdrawal = client.withdraw(CARD, PIN, "checking", 5000)
    client.transfer(CARD, PIN, "checking", "10000002", 1000)
    client.change_pin(CARD, PIN, PinBlock(bytes(8), 0))
    kinds = [(r.kind.value, r.stan, r.amount) for r in bank.requests]
    assert kinds == [
        ("sign_on", "000001", 0),
        ("echo", "000002", 0),
        ("withdrawal", "000003", 5000),
        ("transfer", "000004", 1000),
        ("pin_change", "000005", 0),
    ]
    assert (bank.requests[2].pan, bank.requests[2].expiry) == (CARD.pan, CARD.expiry)
    assert bank.requests[2].pin_block == PIN.block
    assert (bank.requests[3].from_account, bank.requests[3].to_account) == ("checking", "10000002")
    assert bank.requests[4].new_pin_block == bytes(8)
    assert withdrawal.approved and withdrawal.stan == "000003"
    assert withdrawal.transmitted_at == bank.requests[2].transmitted_at


def test_balance_and_mini_statement_answers_are_read(client: HostClient) -> None:
    balance = client.balance(CARD, PIN, "savings")
    statement = client.mini_statement(CARD, PIN, "checking")
    verified = client.verify_pin(CardData(CARD.pan, CARD.expiry), PinBlock(bytes(16), 4))
    assert (balance.ledger_balance, balance.available_balance) == (250000, 245000)
    assert statement.statement == (MiniStatementLine(POSTED, "ATM withdrawal", -5000, 245000),)
    assert verified.approved and verified.ledger_balance is None  # verify-only shows no balance


def test_advices_name_the_original_and_the_cash_handed_out(
    client: HostClient, bank: ScriptedBank
) -> None:
    original = client.withdraw(CARD, PIN, "checking", 8000)
    sent_at = original.transmitted_at.isoformat()
    assert client.reverse(original.stan, sent_at, 8000, 3000) == "00"
    assert client.reverse(original.stan, sent_at, 8000, 0) == "00"
    assert client.complete(original.stan, sent_at, 8000) == "00"
    partial, full, completion = bank.requests[1:]
    assert (partial.kind.value, partial.original_stan, partial.amount) == (
        "reversal",
        "000001",
        8000,
    )
    assert (partial.dispensed_amount, full.dispensed_amount) == (3000, None)
    assert (completion.kind.value, completion.dispensed_amount) == ("completion", 8000)
    bank.code = ResponseCode.SYSTEM_MALFUNCTION
    assert client.reverse(original.stan, sent_at, 8000, 0) == "96"  # to be sent again


def test_stan_counter_wraps_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "stan"
    counter = StanCounter(path, start=999_998)
    assert [counter.next(), counter.next(), counter.next()] == ["999998", "999999", "000001"]
    assert StanCounter(path).next() == "000002"
    assert StanCounter(path).last == "000002"
    path.write_text("12ab\n")
    with pytest.raises(StanStoreError):
        StanCounter(path)


def test_no_host_is_host_unavailable_after_backing_off() -> None:
    with socket.socket() as placeholder:  # a port nobody listens on
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    pauses: list[float] = []
    client = HostClient("127.0.0.1", port, "ATM00001", MAC_KEY, sleep=pauses.append)
    with pytest.raises(HostUnreachable, match="after 3 tries") as caught:
        client.sign_on()
    assert pauses == [0.2, 0.4]
    assert isinstance(caught.value, HostUnavailable)  # what the controller catches
    assert isinstance(caught.value, ConnectionError)


@pytest.fixture
def silent_host() -> Iterator[int]:
    """A TCP server that accepts and reads but never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    listener.settimeout(5)

    def accept() -> None:
        try:
            conn, _ = listener.accept()
            accepted.append(conn)
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    yield listener.getsockname()[1]
    thread.join(5)
    for conn in accepted:
        conn.close()
    listener.close()


def test_a_silent_host_is_a_timeout(silent_host: int) -> None:
    client = HostClient("127.0.0.1", silent_host, "ATM00001", MAC_KEY, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(HostTimeout):
        client.echo()
    assert 0.25 < time.monotonic() - started < 2
    assert not client.connected  # a late answer cannot be taken for the next request's


def test_the_reply_timeout_follows_the_injected_clock(silent_host: int) -> None:
    clock = VirtualClock()
    client = HostClient("127.0.0.1", silent_host, "ATM00001", MAC_KEY, timeout=120, clock=clock)
    mover = threading.Timer(0.2, clock.advance, args=(121,))
    mover.start()
    started = time.monotonic()
    with pytest.raises(HostTimeout, match="within 120 s"):
        client.echo()
    assert time.monotonic() - started < 5
    mover.join()


def test_a_connection_closed_by_the_host_is_reopened_and_the_request_sent_once(
    bank: ScriptedBank,
) -> None:
    server = HostServer(bank, {"ATM00001": MAC_KEY}.get, idle_timeout=0.2)
    server.start()
    try:
        client = HostClient("127.0.0.1", server.port, "ATM00001", MAC_KEY, timeout=5)
        client.echo()
        deadline = time.monotonic() + 5
        while server.connection_count and time.monotonic() < deadline:
            time.sleep(0.05)  # the host drops the idle connection
        reply = client.balance(CARD, PIN, "checking")
        client.close()
    finally:
        server.stop()
    assert reply.approved
    assert [r.stan for r in bank.requests] == ["000001", "000002"]


def test_a_host_with_another_key_is_not_believed(bank: ScriptedBank) -> None:
    server = HostServer(bank, {"ATM00001": bytes(16)}.get)
    server.start()
    try:
        client = HostClient("127.0.0.1", server.port, "ATM00001", MAC_KEY, timeout=5)
        with pytest.raises(HostProtocolError, match="MAC"):
            client.sign_on()
    finally:
        server.stop()
    assert bank.requests == []  # the host refused our MAC too


def test_an_unknown_terminal_is_refused(server: HostServer) -> None:
    client = HostClient("127.0.0.1", server.port, "ATM00077", MAC_KEY, timeout=5)
    with pytest.raises(HostRefused) as caught:
        client.sign_on()
    assert caught.value.response_code == "63"
    client.close()


def test_a_declined_sign_on_is_refused(client: HostClient, bank: ScriptedBank) -> None:
    bank.code = ResponseCode.TRANSACTION_NOT_PERMITTED
    with pytest.raises(HostRefused, match="sign-on"):
        client.sign_on()


def test_a_stale_answer_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    """A host that first sends the answer to an older STAN, then the right one."""
    listener = socket.create_server(("127.0.0.1", 0))

    def host() -> None:
        conn, _ = listener.accept()
        with conn:
            decoder = iso.FrameDecoder()
            bodies: list[bytes] = []
            while not bodies:
                bodies = decoder.feed(conn.recv(4096))
            request = iso.decode_message(bodies[0])
            for stan in ("000999", request.text("11") or ""):
                fields = {k: request.fields[k] for k in ("7", "41", "70")}
                answer = Message("0810", {**fields, "11": stan, "39": "00"})
                conn.sendall(iso.frame(iso.encode_message(answer, MAC_KEY)))

    thread = threading.Thread(target=host)
    thread.start()
    client = HostClient("127.0.0.1", listener.getsockname()[1], "ATM00001", MAC_KEY, timeout=5)
    try:
        client.echo()  # raises unless the second answer is taken
    finally:
        client.close()
        thread.join(5)
        listener.close()
    assert "discarding a stale 0810 stan 000999" in caplog.text
