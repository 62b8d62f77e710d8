"""Terminals whose PIN pads run DUKPT, over the real ISO 8583 server: the host derives each
transaction's PIN key from the terminal's BDK and the KSN, and refuses a KSN used before."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import psec.des
import psec.pinblock
import pytest
import sqlalchemy as sa

from config.settings import Settings
from device.controller.ports import CardData, PinBlock
from device.host_client import HostClient
from host.crypto_keys import mac_key_lookup
from host.server import HostServer
from host.service import Bank
from peripherals.pin_crypto import dukpt_aes, dukpt_tdes
from tests.integration.conftest import ALICE, MAC_KEY

CARD = CardData(ALICE.pan, ALICE.expiry, "201")
TDES_BDK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")  # the seeded test BDKs
AES_BDK = bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1")
TDES_KSN = "FFFF9876543210E0000"  # + one hex digit of counter
AES_KSN = "1234567890123456" + "0000000"


def dukpt_pin(pin: str, scheme: str, counter: int) -> PinBlock:
    """A PIN block as a DUKPT PIN pad makes it (keys from the pad's side, block from psec)."""
    if scheme == "tdes":
        ksn = f"{TDES_KSN}{counter:X}"
        key = dukpt_tdes.derive_pin_key(TDES_BDK, bytes.fromhex(ksn))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # psec uses cryptography's deprecated 2-key TDES
            clear = psec.pinblock.encode_pinblock_iso_0(pin, ALICE.pan)
            return PinBlock(bytes(psec.des.encrypt_tdes_ecb(key, clear)), 0, ksn)
    ksn = f"{AES_KSN}{counter:X}"
    key = dukpt_aes.derive_pin_key(AES_BDK, bytes.fromhex(ksn))
    return PinBlock(bytes(psec.pinblock.encipher_pinblock_iso_4(key, pin, ALICE.pan)), 4, ksn)


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


def _terminal(engine: sa.Engine) -> tuple[int | None, int]:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT t.dukpt_counter, c.failed_pin_attempts FROM terminals t, cards c "
                "WHERE t.terminal_id = 'ATM00001' AND c.masked_pan = '476173******0010'"
            )
        ).one()
    return row[0], row[1]


@pytest.mark.parametrize("scheme", ["tdes", "aes"])
def test_dukpt_pins_are_verified_and_a_used_ksn_is_refused(
    client: HostClient, bank_engine: sa.Engine, scheme: str
) -> None:
    first = client.balance(CARD, dukpt_pin(ALICE.pin, scheme, 1), "checking")
    assert (first.response_code, first.ledger_balance) == ("00", 250000)
    # The ATM sends the PIN block it holds with each request of the session.
    again = client.balance(CARD, dukpt_pin(ALICE.pin, scheme, 1), "savings")
    assert again.response_code == "00"
    assert client.balance(CARD, dukpt_pin("9999", scheme, 2), "checking").response_code == "55"
    assert _terminal(bank_engine) == (2, 1)
    # An older KSN (a captured message sent anew, under a new STAN) is a replay.
    replay = client.balance(CARD, dukpt_pin(ALICE.pin, scheme, 1), "checking")
    assert replay.response_code == "63"
    withdrawal = client.withdraw(CARD, dukpt_pin(ALICE.pin, scheme, 3), "checking", 2000)
    assert withdrawal.approved and withdrawal.available_balance == 248000
    assert _terminal(bank_engine) == (3, 0)  # the right PIN cleared the wrong attempt
    # The same block claimed to be under the terminal's fixed key carries no PIN.
    block = dukpt_pin(ALICE.pin, scheme, 4)
    fixed = client.balance(CARD, PinBlock(block.block, block.format), "checking")
    assert fixed.response_code == "55"


def test_pin_change_under_dukpt(client: HostClient) -> None:
    changed = client.change_pin(CARD, dukpt_pin(ALICE.pin, "tdes", 1), dukpt_pin("8642", "tdes", 2))
    assert changed.response_code == "00"
    assert client.balance(CARD, dukpt_pin("8642", "tdes", 3), "").response_code == "00"
    assert client.balance(CARD, dukpt_pin(ALICE.pin, "tdes", 4), "").response_code == "55"


def test_a_terminal_without_a_bdk_is_refused_without_counting_a_wrong_pin(
    client: HostClient, bank_engine: sa.Engine
) -> None:
    with bank_engine.begin() as conn:
        conn.execute(sa.text("UPDATE terminals SET dukpt_bdk_aes_sealed = NULL"))
    reply = client.balance(CARD, dukpt_pin(ALICE.pin, "aes", 1), "checking")
    assert reply.response_code == "63"
    assert _terminal(bank_engine)[1] == 0
