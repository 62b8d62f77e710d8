"""The bank behind the real ISO 8583 server, driven by the ATM's host client over TCP: MAC keys
come from the key store, PIN blocks and money go all the way to PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from config.settings import Settings
from device.controller.ports import CardData, PinBlock
from device.host_client import HostClient, HostRefused
from host.crypto_keys import mac_key_lookup
from host.server import HostServer
from host.service import Bank
from tests.integration.conftest import ALICE, MAC_KEY, balances, ledger_problems, pin_block

CARD = CardData(ALICE.pan, ALICE.expiry, "201")


@pytest.fixture
def server(bank: Bank, bank_engine: sa.Engine, bank_settings: Settings) -> Iterator[HostServer]:
    server = HostServer(bank, mac_key_lookup(bank_engine, bank_settings))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(server: HostServer) -> Iterator[HostClient]:
    with HostClient("127.0.0.1", server.port, "ATM00001", MAC_KEY, timeout=10) as client:
        yield client


@pytest.mark.parametrize("pin_format", [0, 4])
def test_withdrawal_round_trip(client: HostClient, bank_engine: sa.Engine, pin_format: int) -> None:
    pin = PinBlock(pin_block(ALICE.pin, ALICE.pan, pin_format), pin_format)
    client.sign_on()
    balance = client.balance(CARD, pin, "checking")
    assert (balance.response_code, balance.ledger_balance) == ("00", 250000)
    wrong = client.balance(CARD, PinBlock(pin_block("0000", ALICE.pan, pin_format), pin_format), "")
    assert wrong.response_code == "55"
    withdrawal = client.withdraw(CARD, pin, "checking", 5000)
    assert withdrawal.approved and withdrawal.available_balance == 245000
    assert client.complete(withdrawal.stan, withdrawal.transmitted_at.isoformat(), 3000) == "00"
    assert balances(bank_engine, "10000001") == (247000, 247000)
    statement = client.mini_statement(CARD, pin, "checking")
    assert [line.amount for line in statement.statement] == [250000, -3000]
    second = client.withdraw(CARD, pin, "checking", 2000)
    assert client.reverse(second.stan, second.transmitted_at.isoformat(), 2000, 500) == "00"
    assert balances(bank_engine, "10000001") == (246500, 246500)
    assert ledger_problems(bank_engine) == []


def test_unknown_terminal_is_refused(server: HostServer) -> None:
    with (
        HostClient("127.0.0.1", server.port, "ATM00099", MAC_KEY, timeout=10) as stranger,
        pytest.raises(HostRefused),
    ):
        stranger.sign_on()
