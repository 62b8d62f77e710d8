"""A STAN used again over the real ISO 8583 server: only a byte-for-byte resend gets the first
answer; another request under it gets 94, and an ATM that lost its STAN file signs on and
carries on after the last STAN the host recorded."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from config.settings import Settings
from device.controller.ports import CardData, PinBlock
from device.host_client import HostClient
from device.stan_counter import StanCounter, StanStoreError
from host import iso8583 as iso
from host.crypto_keys import mac_key_lookup
from host.iso8583 import Message
from host.server import HostServer
from host.service import Bank
from tests.integration.conftest import ALICE, MAC_KEY, BankClock, balances, pin_block

CARD = CardData(ALICE.pan, ALICE.expiry, "201")
PIN = PinBlock(pin_block(ALICE.pin, ALICE.pan), 0)


@pytest.fixture
def server(bank: Bank, bank_engine: sa.Engine, bank_settings: Settings) -> Iterator[HostServer]:
    server = HostServer(bank, mac_key_lookup(bank_engine, bank_settings))
    server.start()
    yield server
    server.stop()


def _withdrawal(stan: str, sent: dt.datetime, amount: int, pin: str = ALICE.pin) -> Message:
    return Message(
        "0200",
        {
            "3": "012000",
            "4": iso.amount_field(amount),
            "7": iso.transmission_time(sent),
            "11": stan,
            **iso.local_time_fields(sent),
            "35": iso.track2(ALICE.pan, ALICE.expiry, "201"),
            "41": "ATM00001",
            "49": "978",
            "52": pin_block(pin, ALICE.pan),
            "53": iso.security_control(0),
        },
    )


def _sign_on(stan: str, sent: dt.datetime) -> Message:
    return Message(
        "0800", {"7": iso.transmission_time(sent), "11": stan, "41": "ATM00001", "70": "001"}
    )


def _send(server: HostServer, body: bytes) -> bytes:
    """One framed message on a new connection, and the answer's bytes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.settimeout(10)
        sock.sendall(iso.frame(body))
        decoder = iso.FrameDecoder()
        while True:
            data = sock.recv(4096)
            assert data, "the host closed the connection without answering"
            bodies = decoder.feed(data)
            if bodies:
                return bodies[0]


def _code(answer: bytes) -> str:
    message = iso.decode_message(answer)
    iso.verify_mac(answer, message, MAC_KEY)
    return message.text("39") or ""


def test_another_request_under_a_used_stan_gets_94_and_moves_nothing(
    server: HostServer, bank_engine: sa.Engine, bank_clock: BankClock
) -> None:
    sent = bank_clock().replace(microsecond=0)
    first = iso.encode_message(_withdrawal("000200", sent, 5000), MAC_KEY)
    first_answer = _send(server, first)
    assert _code(first_answer) == "00"
    assert balances(bank_engine, "10000001") == (250000, 245000)

    assert _send(server, first) == first_answer  # the ATM's resend, byte for byte
    later = sent + dt.timedelta(minutes=3)
    others = {
        "wrong PIN": _withdrawal("000200", sent, 5000, pin="9999"),
        "other amount": _withdrawal("000200", sent, 7000),
        "other time": _withdrawal("000200", later, 5000),  # a STAN reused after state loss
    }
    for name, message in others.items():
        assert _code(_send(server, iso.encode_message(message, MAC_KEY))) == "94", name
    assert balances(bank_engine, "10000001") == (250000, 245000)
    # Network messages claim no STAN: a sign-on under the used STAN is still answered.
    assert _code(_send(server, iso.encode_message(_sign_on("000200", later), MAC_KEY))) == "00"


def test_an_atm_that_lost_its_stan_file_signs_on_and_continues_after_the_hosts_last_stan(
    server: HostServer, bank_engine: sa.Engine, tmp_path: Path
) -> None:
    with HostClient(
        "127.0.0.1", server.port, "ATM00001", MAC_KEY, timeout=10, stan=StanCounter(tmp_path / "a")
    ) as before:
        before.sign_on()  # nothing recorded yet: nothing to adopt
        assert before.stan.last == "000001"
        assert before.balance(CARD, PIN, "checking").approved
        first = before.withdraw(CARD, PIN, "checking", 2000)
        assert first.approved and first.stan == "000003"

    lost = tmp_path / "b"  # a new state folder: the counter starts again at 000001
    with HostClient(
        "127.0.0.1", server.port, "ATM00001", MAC_KEY, timeout=10, stan=StanCounter(lost)
    ) as after:
        after.sign_on()
        assert after.stan.last == "000003"
        assert StanCounter(lost).last == "000003"  # adopted durably
        second = after.withdraw(CARD, PIN, "checking", 3000)
    assert (second.stan, second.response_code) == ("000004", "00")
    assert balances(bank_engine, "10000001") == (250000, 245000)


def test_the_stan_counter_adopts_only_a_host_stan_ahead_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "stan"
    counter = StanCounter(path, start=999_990)
    assert counter.next() == "999990"
    assert counter.resync("000010") is True  # ahead, across the wrap
    assert (counter.last, StanCounter(path).last) == ("000010", "000010")
    assert counter.resync("999990") is False  # behind, across the wrap
    assert counter.resync("000010") is False  # the same
    assert counter.resync("500009") is True  # just within half the range ahead
    assert counter.resync("000011") is False  # more than half the range ahead is behind
    assert counter.next() == "500010"
    with pytest.raises(StanStoreError):
        counter.resync("12ab56")
    with pytest.raises(StanStoreError):
        counter.resync("000000")
