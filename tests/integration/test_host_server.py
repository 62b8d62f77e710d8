"""The ISO 8583 host server over real TCP on 127.0.0.1: protocol, refusals, robustness.

A small in-memory bank stands in for the authorisation service in the protocol tests; the last
tests run the real service on a seeded PostgreSQL bank behind the server.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import iso8583
import pytest
import sqlalchemy as sa

from config.settings import Settings
from device.controller.ports import CardData, PinBlock
from device.host_client import HostClient, HostRefused
from host import iso8583 as iso
from host.crypto_keys import mac_key_lookup
from host.iso8583 import Message
from host.messages import HostRequest, HostResponse, ResponseCode
from host.server import HostServer
from host.service import Bank
from tests.conftest import TEST_SECRETS
from tests.integration.conftest import ALICE, balances, ledger_problems, pin_block

MAC_KEY = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")
PAN = "4761739001010010"
TERMINALS = {f"ATM0000{n}": MAC_KEY for n in range(1, 5)}


class RecordingBank:
    """Answers every request, repeats the first answer for a repeated STAN, records requests."""

    def __init__(self) -> None:
        self.requests: list[HostRequest] = []
        self.answers: dict[tuple[str, str], HostResponse] = {}
        self.fail = False
        self.lock = threading.Lock()

    def handle(self, request: HostRequest) -> HostResponse:
        if self.fail:
            raise RuntimeError("database is down")
        with self.lock:
            key = (request.terminal_id, request.stan)
            if key not in self.answers:
                self.requests.append(request)
                self.answers[key] = HostResponse(
                    ResponseCode.APPROVED,
                    request.stan,
                    retrieval_reference=f"{len(self.requests):012d}",
                    approval_code="A00001",
                    ledger_balance=250000 - request.amount,
                    available_balance=250000 - request.amount,
                )
            return self.answers[key]


@pytest.fixture
def recording_bank() -> RecordingBank:
    return RecordingBank()


@pytest.fixture
def server(recording_bank: RecordingBank) -> Iterator[HostServer]:
    server = HostServer(recording_bank, TERMINALS.get, frame_timeout=0.3)
    server.start()
    yield server
    server.stop()
    assert server.connection_count == 0


def connect(server: HostServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.settimeout(5)
    return sock


def read_answer(sock: socket.socket) -> bytes | None:
    """One answer body, or None when the server closed the connection."""
    decoder = iso.FrameDecoder()
    while True:
        data = sock.recv(4096)
        if not data:
            return None
        bodies = decoder.feed(data)
        if bodies:
            return bodies[0]


def exchange(sock: socket.socket, message: Message, key: bytes | None = MAC_KEY) -> Message:
    sock.sendall(iso.frame(iso.encode_message(message, key)))
    body = read_answer(sock)
    assert body is not None, "the server closed the connection"
    answer = iso.decode_message(body)
    if "128" in answer:
        iso.verify_mac(body, answer, MAC_KEY)
    return answer


def network(code: str, stan: str = "000001", terminal: str = "ATM00001") -> Message:
    now = iso.transmission_time(dt.datetime.now(dt.UTC))
    return Message("0800", {"7": now, "11": stan, "41": terminal, "70": code})


def withdrawal(stan: str, amount: int = 5000, **extra: str | bytes) -> Message:
    now = dt.datetime.now(dt.UTC)
    fields: dict[str, str | bytes] = {
        "3": "012000",
        "4": iso.amount_field(amount),
        "7": iso.transmission_time(now),
        "11": stan,
        **iso.local_time_fields(now),
        "35": iso.track2(PAN, "3012", "201"),
        "41": "ATM00001",
        "49": "978",
        "52": bytes.fromhex("0412AC89ABCDEF67"),
        "53": iso.security_control(0),
    }
    fields.update(extra)
    return Message("0200", fields)


def test_sign_on_and_echo_are_answered_with_a_mac(
    server: HostServer, recording_bank: RecordingBank
) -> None:
    with connect(server) as sock:
        sign_on = exchange(sock, network("001", "000001"))
        echo = exchange(sock, network("301", "000002"))
    assert (sign_on.mti, sign_on.text("39"), sign_on.text("70")) == ("0810", "00", "001")
    assert (echo.text("11"), echo.text("39"), echo.text("70")) == ("000002", "00", "301")
    assert [r.kind.value for r in recording_bank.requests] == ["sign_on", "echo"]


def test_a_withdrawal_reaches_the_bank_and_the_answer_carries_balances(
    server: HostServer, recording_bank: RecordingBank
) -> None:
    with connect(server) as sock:
        answer = exchange(sock, withdrawal("000007", 5000))
    request = recording_bank.requests[0]
    assert (request.kind.value, request.amount, request.pan, request.expiry) == (
        "withdrawal",
        5000,
        PAN,
        "3012",
    )
    assert (request.from_account, request.pin_block_format) == ("checking", 0)
    assert answer.mti == "0210"
    assert (answer.text("39"), answer.text("37"), answer.text("38")) == (
        "00",
        "000000000001",
        "A00001",
    )
    assert iso.decode_balances(answer.text("54") or "")[1].amount == 245000


def test_a_bad_mac_is_answered_63_and_the_connection_goes_on(
    server: HostServer, recording_bank: RecordingBank
) -> None:
    with connect(server) as sock:
        body = bytearray(iso.encode_message(withdrawal("000003"), MAC_KEY))
        body[-1] ^= 0x01
        sock.sendall(iso.frame(bytes(body)))
        refused_body = read_answer(sock)
        assert refused_body is not None
        refused = iso.decode_message(refused_body)
        iso.verify_mac(refused_body, refused, MAC_KEY)  # the refusal is genuine
        after = exchange(sock, network("301", "000004"))
    assert (refused.mti, refused.text("39"), refused.text("11")) == ("0210", "63", "000003")
    assert after.text("39") == "00"
    assert [r.stan for r in recording_bank.requests] == ["000004"]


def test_a_mac_key_is_read_once_and_a_changed_key_is_taken_up_by_its_first_message(
    recording_bank: RecordingBank,
) -> None:
    keys = dict(TERMINALS)
    reads: list[str] = []

    def key_store(terminal_id: str) -> bytes | None:
        reads.append(terminal_id)
        return keys.get(terminal_id)

    new_key = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    server = HostServer(recording_bank, key_store, mac_key_seconds=60.0)
    server.start()
    try:
        with connect(server) as sock:
            for stan in ("000001", "000002", "000003"):
                assert exchange(sock, network("301", stan)).text("39") == "00"
            assert reads == ["ATM00001"]  # kept, not read for every message

            keys["ATM00001"] = new_key  # the bank changed the terminal's key
            sock.sendall(iso.frame(iso.encode_message(network("301", "000004"), new_key)))
            body = read_answer(sock)
            assert body is not None
            answer = iso.decode_message(body)
            iso.verify_mac(body, answer, new_key)
            assert answer.text("39") == "00"
            assert reads == ["ATM00001", "ATM00001"]

            sock.sendall(iso.frame(iso.encode_message(network("301", "000005"), MAC_KEY)))
            body = read_answer(sock)
            assert body is not None
            assert iso.decode_message(body).text("39") == "63"  # the old key: refused
    finally:
        server.stop()


def test_an_unknown_terminal_is_refused_without_reaching_the_bank(
    server: HostServer, recording_bank: RecordingBank, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), connect(server) as sock:
        answer = exchange(sock, network("001", terminal="ATM00099"), key=MAC_KEY)
    assert answer.text("39") == "63"
    assert "128" not in answer  # the host has no key to MAC it with
    assert recording_bank.requests == []
    assert "unknown terminal 'ATM00099'" in caplog.text


def test_a_message_breaking_the_field_rules_gets_a_format_error(
    server: HostServer, recording_bank: RecordingBank
) -> None:
    fields = dict(withdrawal("000005").fields)
    del fields["53"]  # the PIN block format is required
    doc = {"t": "0200", **{k: v.hex() if isinstance(v, bytes) else v for k, v in fields.items()}}
    doc["128"] = "00" * 8
    raw = bytes(iso8583.encode(doc, iso.field_table().spec)[0])
    body = raw[:-8] + iso.compute_mac(MAC_KEY, raw[:-8])
    with connect(server) as sock:
        sock.sendall(iso.frame(body))
        answer_body = read_answer(sock)
    assert answer_body is not None
    answer = iso.decode_message(answer_body)
    assert (answer.text("39"), answer.text("11")) == ("30", "000005")
    assert recording_bank.requests == []


def test_garbage_closes_that_connection_only_and_logs_no_pan(
    server: HostServer, recording_bank: RecordingBank, caplog: pytest.LogCaptureFixture
) -> None:
    body = iso.encode_message(withdrawal("000006"), MAC_KEY)
    with caplog.at_level(logging.INFO):
        with connect(server) as bad:
            bad.sendall(iso.frame(body[:40] + b"\xff" + body[41:]))  # inside the bitmap
            assert read_answer(bad) is None
        with connect(server) as good:
            assert exchange(good, withdrawal("000007")).text("39") == "00"
    assert "malformed message, closing" in caplog.text
    assert PAN not in caplog.text
    assert "476173******0010" in caplog.text


@pytest.mark.parametrize(
    ("data", "logged"),
    [
        (b"\x00\x00", "length prefix 0000"),
        (b"\xff\xff" + b"x" * 10, "length prefix ffff"),
        (b"\x00", "truncated frame, 1 byte of the length prefix then silence"),
        (b"\x00\x40" + b"0800", "truncated frame, 4 of 64 message bytes then silence"),
    ],
)
def test_bad_frames_get_one_log_line_and_a_close(
    server: HostServer, caplog: pytest.LogCaptureFixture, data: bytes, logged: str
) -> None:
    with caplog.at_level(logging.INFO), connect(server) as sock:
        sock.sendall(data)
        assert read_answer(sock) is None
    assert sum(logged in r.getMessage() for r in caplog.records) == 1
    with connect(server) as sock:
        assert exchange(sock, network("301")).text("39") == "00"


def test_a_failing_bank_is_answered_96_and_the_server_goes_on(
    server: HostServer, recording_bank: RecordingBank
) -> None:
    with connect(server) as sock:
        recording_bank.fail = True
        assert exchange(sock, withdrawal("000008")).text("39") == "96"
        recording_bank.fail = False
        assert exchange(sock, withdrawal("000009")).text("39") == "00"


def test_a_repeated_stan_gets_the_first_answer(
    server: HostServer, recording_bank: RecordingBank
) -> None:
    first_message = withdrawal("000010", 2000)
    body = iso.encode_message(first_message, MAC_KEY)
    with connect(server) as sock:
        sock.sendall(iso.frame(body))
        first = read_answer(sock)
        sock.sendall(iso.frame(body))
        second = read_answer(sock)
    assert first == second
    assert len(recording_bank.requests) == 1


def test_several_terminals_are_served_at_once(
    server: HostServer, recording_bank: RecordingBank
) -> None:
    errors: list[str] = []

    def terminal(name: str) -> None:
        with connect(server) as sock:
            for n in range(1, 21):
                answer = exchange(sock, network("301", f"{n:06d}", name))
                if (answer.text("41"), answer.text("11")) != (name, f"{n:06d}"):
                    errors.append(f"{name}: {answer}")

    threads = [threading.Thread(target=terminal, args=(name,)) for name in TERMINALS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(recording_bank.requests) == 80


def test_stop_closes_open_connections(recording_bank: RecordingBank) -> None:
    server = HostServer(recording_bank, TERMINALS.get)
    server.start()
    sock = connect(server)
    exchange(sock, network("301"))
    server.stop()
    assert read_answer(sock) is None
    assert server.connection_count == 0
    sock.close()


@pytest.mark.parametrize(
    ("mti", "changes"),
    [
        ("0100", {}),  # processing code 01 (withdrawal) belongs in a 0200
        ("0200", {"3": "772000"}),  # no such processing code
        ("0200", {"4": "000000000000"}),  # a withdrawal of nothing
        ("0200", {"53": iso.security_control(4)}),  # an 8-byte block cannot be format 4
        ("0200", {"3": "920000"}),  # a PIN change without the new PIN block (111)
        ("0200", {"3": "013000"}),  # account type 30 is not in the table
        ("0200", {"7": "1340120000"}),  # month 13
        ("0200", {"53": "0003" + "0" * 12}),  # key management 03 does not exist
        ("0200", {"53": iso.security_control(0, iso.KeyManagement.DUKPT_TDES)}),  # no KSN
        ("0200", {"120": bytes(10)}),  # a KSN with a fixed-key PIN block
        ("0200", {"121": bytes(10)}),  # a new PIN's KSN without a new PIN block
        (  # an AES KSN cannot go with a TDES format 0 block
            "0200",
            {"53": iso.security_control(0, iso.KeyManagement.DUKPT_AES), "120": bytes(12)},
        ),
        (  # a TDES KSN is 10 bytes
            "0200",
            {"53": iso.security_control(0, iso.KeyManagement.DUKPT_TDES), "120": bytes(12)},
        ),
    ],
)
def test_requests_that_mean_nothing_get_a_format_error(
    server: HostServer, recording_bank: RecordingBank, mti: str, changes: dict[str, str | bytes]
) -> None:
    fields = {**withdrawal("000011").fields, **changes}
    if mti == "0100":
        del fields["4"]  # not carried by a 0100
    with connect(server) as sock:
        answer = exchange(sock, Message(mti, fields))
    assert (answer.mti, answer.text("39")) == (iso.response_mti(mti), "30")
    assert recording_bank.requests == []


def test_an_unknown_network_code_gets_a_format_error(
    server: HostServer, recording_bank: RecordingBank
) -> None:
    with connect(server) as sock:
        answer = exchange(sock, network("999"))
    assert (answer.text("39"), answer.text("70")) == ("30", "999")
    assert recording_bank.requests == []


# ----- the real authorisation service on a seeded PostgreSQL bank, over TCP ---------------------


@pytest.fixture
def bank_server(bank: Bank, bank_engine: sa.Engine, bank_settings: Settings) -> Iterator[int]:
    server = HostServer(bank, mac_key_lookup(bank_engine, bank_settings), frame_timeout=0.3)
    yield server.start()
    server.stop()


def alice_card() -> tuple[CardData, PinBlock]:
    return CardData(ALICE.pan, ALICE.expiry, "201"), PinBlock(pin_block("1234", ALICE.pan), 0)


def test_sign_on_echo_and_balance_against_the_seeded_bank(bank_server: int) -> None:
    card, pin = alice_card()
    with HostClient("127.0.0.1", bank_server, "ATM00001", MAC_KEY, timeout=10) as client:
        client.sign_on()
        client.echo()
        checking = client.balance(card, pin, "checking")
        savings = client.balance(card, pin, "savings")
        wrong = client.balance(card, PinBlock(pin_block("9999", ALICE.pan), 0), "checking")
    assert (checking.response_code, checking.ledger_balance, checking.available_balance) == (
        "00",
        250000,
        250000,
    )
    assert savings.available_balance == 1000000
    assert wrong.response_code == "55"


def test_a_withdrawal_and_its_completion_move_the_money_once(
    bank_server: int, bank_engine: sa.Engine
) -> None:
    card, pin = alice_card()
    with HostClient("127.0.0.1", bank_server, "ATM00002", MAC_KEY, timeout=10) as client:
        reply = client.withdraw(card, pin, "checking", 6000)
        assert reply.approved and reply.available_balance == 244000
        assert balances(bank_engine, "10000001") == (250000, 244000)  # held, not yet posted
        sent_at = reply.transmitted_at.isoformat()
        assert client.complete(reply.stan, sent_at, 6000) == "00"
    assert balances(bank_engine, "10000001") == (244000, 244000)
    assert ledger_problems(bank_engine) == []


def test_a_replayed_stan_gets_the_first_answer_and_moves_no_money_twice(
    bank_server: int, bank_engine: sa.Engine
) -> None:
    card, pin = alice_card()
    message = withdrawal("000123", 4000, **{"52": pin.block})
    body = iso.encode_message(message, MAC_KEY)
    answers = []
    for _ in range(2):  # two connections, as after a lost reply
        with socket.create_connection(("127.0.0.1", bank_server), timeout=10) as sock:
            sock.settimeout(10)
            sock.sendall(iso.frame(body))
            answers.append(read_answer(sock))
    assert answers[0] is not None and answers[0] == answers[1]
    first = iso.decode_message(answers[0])
    assert (first.text("39"), first.text("11")) == ("00", "000123")
    assert balances(bank_engine, "10000001") == (250000, 246000)
    assert card.pan not in repr(first)


def test_malformed_input_and_unknown_terminals_do_not_stop_the_bank_server(
    bank_server: int, bank_engine: sa.Engine
) -> None:
    with socket.create_connection(("127.0.0.1", bank_server), timeout=10) as bad:
        bad.settimeout(10)
        bad.sendall(b"\x00\x10" + b"\xff" * 16)
        assert read_answer(bad) is None
    stranger = HostClient("127.0.0.1", bank_server, "ATM00099", MAC_KEY, timeout=10)
    with pytest.raises(HostRefused):
        stranger.sign_on()
    stranger.close()
    card, pin = alice_card()
    with HostClient("127.0.0.1", bank_server, "ATM00003", MAC_KEY, timeout=10) as client:
        assert client.balance(card, pin, "checking").available_balance == 250000


def test_atm_sim_host_serve_answers_until_interrupted(bank_settings: Settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, **TEST_SECRETS, "DATABASE_URL": str(bank_settings.database_url)}
    command = [sys.executable, "-m", "device.sim.cli", "host", "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert f"listening on 127.0.0.1:{port}" in process.stdout.readline()
        with HostClient("127.0.0.1", port, "ATM00004", MAC_KEY, timeout=10) as client:
            client.sign_on()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def wait_until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _listening_pids(port: int, candidates: list[int]) -> set[int]:
    """Which of `candidates` hold a socket listening on 127.0.0.1:`port` (from /proc)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text(encoding="ascii").splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":  # 0A: LISTEN
            inodes.add(f"socket:[{fields[9]}]")
    holders = set()
    for pid in candidates:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        holders.add(pid)
    return holders


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as listing:
        return [int(child) for child in listing.read().split()]


def test_host_serve_processes_all_listen_when_announced_and_a_lost_one_is_replaced(
    bank_settings: Settings,
) -> None:
    env = {**os.environ, **TEST_SECRETS, "DATABASE_URL": str(bank_settings.database_url)}
    command = [sys.executable, "-m", "device.sim.cli", "host", "serve", "--port", "0"]
    process = subprocess.Popen(
        [*command, "--processes", "2"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert ", 2 processes" in line, line
        port = int(line.split("127.0.0.1:")[1].split(",")[0])

        def listeners() -> set[int]:
            return _listening_pids(port, [process.pid, *_children(process.pid)])

        # announced only once both listen: terminals connecting at once are spread over both
        assert len(listeners()) == 2
        helper = next(iter(listeners() - {process.pid}))
        for n in range(1, 5):
            with HostClient("127.0.0.1", port, f"ATM0000{n}", MAC_KEY, timeout=10) as client:
                client.sign_on()
        os.kill(helper, signal.SIGKILL)
        wait_until(lambda: len(listeners()) == 2 and helper not in listeners(), 30)
        helpers = listeners() - {process.pid}
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 130
        for pid in helpers:  # the helpers end with the first process
            wait_until(lambda pid=pid: not os.path.exists(f"/proc/{pid}/stat"), 15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def test_the_server_times_each_answer_from_reading_the_request_to_sending_the_answer(
    server: HostServer, recording_bank: RecordingBank, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer_of = recording_bank.handle

    def slow(request: HostRequest) -> HostResponse:
        time.sleep(0.2)
        return answer_of(request)

    monkeypatch.setattr(recording_bank, "handle", slow)
    send = server._send

    def send_then_linger(conn: Any, data: bytes) -> bool:
        sent = send(conn, data)
        time.sleep(0.3)  # the terminal reads its answer before the server thread goes on
        return sent

    monkeypatch.setattr(server, "_send", send_then_linger)
    with connect(server) as sock:
        for stan in ("000001", "000002"):
            assert exchange(sock, withdrawal(stan)).text("39") == "00"
    times = server.answer_seconds()  # counted before the answer left: exact, not a race
    assert len(times) == 2
    assert all(0.2 <= seconds < 2.0 for seconds in times)
