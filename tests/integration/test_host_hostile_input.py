"""Hostile characters over real TCP to the real ISO 8583 server and a seeded PostgreSQL bank: a
NUL byte in the terminal id or another field is answered with the documented code before any
database access, logs one line and no traceback, and the server goes on serving."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import socket
from collections.abc import Iterator

import iso8583
import pytest
import sqlalchemy as sa

from config.settings import Settings
from device.host_client import HostClient
from host import iso8583 as iso
from host.crypto_keys import mac_key_lookup
from host.messages import RequestKind, ResponseCode
from host.server import HostServer
from host.service import Bank
from tests.integration.conftest import ALICE, MAC_KEY, BankRequests, pin_block


@pytest.fixture
def server(bank: Bank, bank_engine: sa.Engine, bank_settings: Settings) -> Iterator[HostServer]:
    server = HostServer(bank, mac_key_lookup(bank_engine, bank_settings))
    server.start()
    yield server
    server.stop()


def _raw(mti: str, fields: dict[str, str | bytes], *, mac: bool) -> bytes:
    """Encode without the codec's checks (they would refuse the NUL), MACed if asked."""
    doc = {"t": mti, **{k: v.hex() if isinstance(v, bytes) else v for k, v in fields.items()}}
    if mac:
        doc["128"] = "00" * 8
    body = bytes(iso8583.encode(doc, iso.field_table().spec)[0])
    return body[:-8] + iso.compute_mac(MAC_KEY, body[:-8]) if mac else body


def _exchange(server: HostServer, body: bytes) -> bytes | None:
    """The answer on a new connection, or None if the host closed it without one."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.settimeout(10)
        sock.sendall(iso.frame(body))
        decoder = iso.FrameDecoder()
        while True:
            data = sock.recv(4096)
            if not data:
                return None
            bodies = decoder.feed(data)
            if bodies:
                return bodies[0]


def _sign_on(terminal: str, stan: str = "000001") -> dict[str, str | bytes]:
    sent = iso.transmission_time(dt.datetime.now(dt.UTC))
    return {"7": sent, "11": stan, "41": terminal, "70": "001"}


def _withdrawal(terminal: str) -> dict[str, str | bytes]:
    now = dt.datetime.now(dt.UTC)
    return {
        "3": "012000",
        "4": iso.amount_field(5000),
        "7": iso.transmission_time(now),
        "11": "000042",
        **iso.local_time_fields(now),
        "35": iso.track2(ALICE.pan, ALICE.expiry, "201"),
        "41": terminal,
        "49": "978",
        "52": pin_block(ALICE.pin, ALICE.pan),
        "53": iso.security_control(0),
    }


@pytest.mark.parametrize("mac", [True, False], ids=["with MAC", "without MAC"])
@pytest.mark.parametrize(
    ("mti", "fields"),
    [
        ("0800", _sign_on("ATM\x000001")),
        ("0200", _withdrawal("ATM0000\x01")),
        ("0800", _sign_on("\x00" * 8)),
    ],
    ids=["NUL in a sign-on", "control character in a withdrawal", "all NUL"],
)
def test_a_terminal_id_with_a_nul_is_refused_63_in_one_line(
    server: HostServer,
    caplog: pytest.LogCaptureFixture,
    mti: str,
    fields: dict[str, str | bytes],
    mac: bool,
) -> None:
    with caplog.at_level(logging.INFO, logger="host"):
        answer = _exchange(server, _raw(mti, fields, mac=mac))
    assert answer is not None, "the host closed the connection instead of answering"
    message = iso.decode_message(answer)
    assert (message.mti, message.text("39")) == (iso.response_mti(mti), "63")
    assert "128" not in message  # a terminal that cannot be named has no key to MAC with
    assert message.text("41") == "00000000"  # the bad id is not echoed
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.exc_info for r in problems] == [None]
    assert "field 41" in problems[0].getMessage()
    # The next terminal on a new connection is served as usual.
    with HostClient("127.0.0.1", server.port, "ATM00001", MAC_KEY, timeout=10) as client:
        client.sign_on()
        client.echo()


def test_a_nul_in_another_field_of_a_known_terminal_is_a_format_error(
    server: HostServer, caplog: pytest.LogCaptureFixture
) -> None:
    fields = {**_sign_on("ATM00001"), "11": "00\x00001"}
    with caplog.at_level(logging.INFO, logger="host"):
        answer = _exchange(server, _raw("0800", fields, mac=True))
    assert answer is not None
    message = iso.decode_message(answer)
    iso.verify_mac(answer, message, MAC_KEY)  # the terminal is known: the answer is genuine
    assert message.text("39") == "30"
    assert all(r.exc_info is None for r in caplog.records)
    with HostClient("127.0.0.1", server.port, "ATM00002", MAC_KEY, timeout=10) as client:
        client.sign_on()


def test_the_bank_refuses_stray_characters_before_touching_the_database(
    bank: Bank, bank_requests: BankRequests, caplog: pytest.LogCaptureFixture
) -> None:
    good = bank_requests.card(RequestKind.WITHDRAWAL, ALICE, amount=1000)
    hostile = [
        dataclasses.replace(good, terminal_id="ATM\x000001"),
        dataclasses.replace(good, terminal_id="ATM0001"),
        dataclasses.replace(good, from_account="check\x00ng"),
        dataclasses.replace(good, currency="97\x008"),
        dataclasses.replace(good, expiry="30\x002"),
        dataclasses.replace(good, stan="00\x00001"),
    ]
    with caplog.at_level(logging.INFO):
        codes = [bank.handle(request).response_code for request in hostile]
    assert codes == [ResponseCode.FORMAT_ERROR] * len(hostile)
    assert all(r.exc_info is None for r in caplog.records)
    assert bank.handle(good).approved
