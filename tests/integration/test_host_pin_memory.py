"""One bcrypt per customer session, over the real ISO 8583 server on real PostgreSQL: a PIN block
the host verified for a card is not hashed again within the session timeout, and the memory never
lets a block past a wrong PIN, a lock, a PIN change or the session timeout."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from config.settings import Settings
from device.controller.ports import CardData, PinBlock
from device.host_client import HostClient
from host import pin_unit
from host.crypto_keys import mac_key_lookup
from host.server import HostServer
from host.service import Bank
from tests.integration.conftest import ALICE, MAC_KEY, BankClock, pin_block
from tests.integration.test_dukpt_terminals import dukpt_pin

CARD = CardData(ALICE.pan, ALICE.expiry, "201")
RIGHT = PinBlock(pin_block(ALICE.pin, ALICE.pan), 0)
WRONG = PinBlock(pin_block("0000", ALICE.pan), 0)
ALICE_MASKED = "476173******0010"


@pytest.fixture
def client(bank: Bank, bank_engine: sa.Engine, bank_settings: Settings) -> Iterator[HostClient]:
    server = HostServer(bank, mac_key_lookup(bank_engine, bank_settings))
    server.start()
    try:
        with HostClient("127.0.0.1", server.port, "ATM00001", MAC_KEY, timeout=10) as client:
            client.sign_on()
            yield client
    finally:
        server.stop()


def _session(client: HostClient, pin: PinBlock) -> list[str]:
    """A customer session as the ATM runs it: PIN check, withdrawal, balance, one PIN block."""
    return [
        client.verify_pin(CARD, pin).response_code,
        client.withdraw(CARD, pin, "checking", 2000).response_code,
        client.balance(CARD, pin, "checking").response_code,
    ]


def test_a_session_costs_one_bcrypt(client: HostClient, bank: Bank) -> None:
    before = pin_unit.bcrypt_checks()
    assert _session(client, RIGHT) == ["00", "00", "00"]
    assert pin_unit.bcrypt_checks() - before == 1
    assert len(bank.verified_pins) == 1


def test_a_dukpt_session_costs_one_bcrypt_and_a_new_ksn_is_hashed(client: HostClient) -> None:
    before = pin_unit.bcrypt_checks()
    first = dukpt_pin(ALICE.pin, "tdes", 1)
    assert _session(client, first) == ["00", "00", "00"]
    assert pin_unit.bcrypt_checks() - before == 1
    # The next customer session: the pad's next KSN, a new block, one bcrypt again.
    assert _session(client, dukpt_pin(ALICE.pin, "tdes", 2)) == ["00", "00", "00"]
    assert pin_unit.bcrypt_checks() - before == 2
    # The replay rule is untouched: the first session's (remembered) block is refused now.
    assert client.balance(CARD, first, "checking").response_code == "63"


def test_a_wrong_pin_makes_the_next_right_pin_hashed_again(
    client: HostClient, bank_engine: sa.Engine
) -> None:
    before = pin_unit.bcrypt_checks()
    assert client.verify_pin(CARD, RIGHT).response_code == "00"
    assert client.balance(CARD, WRONG, "checking").response_code == "55"
    assert client.withdraw(CARD, RIGHT, "checking", 2000).response_code == "00"
    assert pin_unit.bcrypt_checks() - before == 3
    assert client.balance(CARD, RIGHT, "checking").response_code == "00"
    assert pin_unit.bcrypt_checks() - before == 3
    with bank_engine.connect() as conn:
        attempts = conn.scalar(
            sa.text("SELECT failed_pin_attempts FROM cards WHERE masked_pan = :m"),
            {"m": ALICE_MASKED},
        )
    assert attempts == 0


def test_a_wrong_pin_counted_elsewhere_makes_the_right_pin_hashed_again(
    client: HostClient, bank_engine: sa.Engine
) -> None:
    """Another host process counted a wrong PIN: this one's memory is not trusted."""
    assert client.verify_pin(CARD, RIGHT).response_code == "00"
    with bank_engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE cards SET failed_pin_attempts = 2 WHERE masked_pan = :m"),
            {"m": ALICE_MASKED},
        )
    before = pin_unit.bcrypt_checks()
    assert client.balance(CARD, RIGHT, "checking").response_code == "00"
    assert pin_unit.bcrypt_checks() - before == 1


def test_a_lock_blocks_a_remembered_block(
    client: HostClient, bank_engine: sa.Engine, bank_clock: BankClock
) -> None:
    assert client.verify_pin(CARD, RIGHT).response_code == "00"
    codes = [client.balance(CARD, WRONG, "checking").response_code for _ in range(3)]
    assert codes == ["55", "55", "75"]
    before = pin_unit.bcrypt_checks()
    assert client.withdraw(CARD, RIGHT, "checking", 2000).response_code == "75"
    assert pin_unit.bcrypt_checks() == before  # refused before any PIN check
    # After the lockout the right PIN is hashed again, then remembered again.
    bank_clock.advance(1801)
    assert client.balance(CARD, RIGHT, "checking").response_code == "00"
    assert client.balance(CARD, RIGHT, "checking").response_code == "00"
    assert pin_unit.bcrypt_checks() - before == 1


def test_a_lock_set_by_another_process_blocks_a_remembered_block(
    client: HostClient, bank_engine: sa.Engine, bank_clock: BankClock
) -> None:
    assert client.verify_pin(CARD, RIGHT).response_code == "00"
    with bank_engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE cards SET failed_pin_attempts = 3, status = 'locked', "
                "locked_until = :until WHERE masked_pan = :m"
            ),
            {"until": bank_clock() + dt.timedelta(seconds=600), "m": ALICE_MASKED},
        )
    assert client.withdraw(CARD, RIGHT, "checking", 2000).response_code == "75"


def test_after_a_pin_change_the_old_block_is_refused(client: HostClient) -> None:
    new = PinBlock(pin_block("8642", ALICE.pan), 0)
    assert client.verify_pin(CARD, RIGHT).response_code == "00"
    assert client.change_pin(CARD, RIGHT, new).response_code == "00"
    assert client.balance(CARD, RIGHT, "checking").response_code == "55"
    before = pin_unit.bcrypt_checks()
    assert _session(client, new) == ["00", "00", "00"]
    assert pin_unit.bcrypt_checks() - before == 1


def test_a_pin_change_elsewhere_refuses_the_old_block(
    client: HostClient, bank_engine: sa.Engine, bank_settings: Settings
) -> None:
    """Another host process changed the PIN: the remembered block matched the old hash only."""
    assert client.verify_pin(CARD, RIGHT).response_code == "00"
    with bank_engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE cards SET pin_hash = :h WHERE masked_pan = :m"),
            {"h": pin_unit.hash_pin(bank_settings, "8642"), "m": ALICE_MASKED},
        )
    assert client.balance(CARD, RIGHT, "checking").response_code == "55"


def test_a_block_is_forgotten_after_the_session_timeout(
    client: HostClient, bank_clock: BankClock, bank_settings: Settings
) -> None:
    timeout = bank_settings.session_timeout_seconds
    before = pin_unit.bcrypt_checks()
    assert client.verify_pin(CARD, RIGHT).response_code == "00"
    bank_clock.advance(timeout - 1)
    assert client.balance(CARD, RIGHT, "checking").response_code == "00"
    assert pin_unit.bcrypt_checks() - before == 1
    bank_clock.advance(1)
    assert client.balance(CARD, RIGHT, "checking").response_code == "00"
    assert pin_unit.bcrypt_checks() - before == 2
