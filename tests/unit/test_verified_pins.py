"""The PIN unit's memory of verified PIN blocks: keyed digests only, bounded, expiring."""

from __future__ import annotations

import datetime as dt
import threading
import warnings

import psec.des
import psec.pinblock
import pytest

from config.settings import Settings, load_settings
from host import pin_unit
from host.crypto_keys import TerminalKeys
from tests.conftest import TEST_SECRETS

PIN_KEY_TDES = bytes.fromhex("89ABCDEF0123456776543210FEDCBA98")
KEYS = TerminalKeys(bytes(16), PIN_KEY_TDES, bytes(16), bytes(16))
OTHER_KEYS = TerminalKeys(
    bytes(16), bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"), bytes(16), bytes(16)
)
SETTINGS: Settings = load_settings(TEST_SECRETS)
PAN = "4761739001010010"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
LIFETIME = dt.timedelta(seconds=120)


def _block(pin: str, key: bytes = PIN_KEY_TDES) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bytes(psec.des.encrypt_tdes_ecb(key, psec.pinblock.encode_pinblock_iso_0(pin, PAN)))


HASH = pin_unit.hash_pin(SETTINGS, "1234")


class Checks:
    def __init__(self) -> None:
        self.count = 0


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> Checks:
    """bcrypt.checkpw as the PIN unit sees it, counted (the real one runs)."""
    counted = Checks()
    real = pin_unit.bcrypt.checkpw

    def checkpw(password: bytes, hashed: bytes) -> bool:
        counted.count += 1
        return real(password, hashed)

    monkeypatch.setattr(pin_unit.bcrypt, "checkpw", checkpw)
    return counted


def _verify(
    memory: pin_unit.VerifiedPins,
    block: bytes,
    now: dt.datetime,
    *,
    card_id: int = 7,
    keys: TerminalKeys = KEYS,
    pin_hash: str = HASH,
) -> bool:
    return pin_unit.verify_pin_block(
        SETTINGS, keys, block, 0, PAN, pin_hash, memory=memory, card_id=card_id, now=now
    )


def test_a_verified_block_is_taken_without_bcrypt_until_it_expires(checks: Checks) -> None:
    memory = pin_unit.VerifiedPins(SETTINGS, LIFETIME)
    block = _block("1234")
    assert _verify(memory, block, T0)
    assert _verify(memory, block, T0 + LIFETIME - dt.timedelta(microseconds=1))
    assert checks.count == 1
    assert _verify(memory, block, T0 + LIFETIME)
    assert checks.count == 2


def test_the_memory_is_per_card_key_and_hash(checks: Checks) -> None:
    memory = pin_unit.VerifiedPins(SETTINGS, LIFETIME)
    block = _block("1234")
    assert _verify(memory, block, T0)
    assert _verify(memory, block, T0, card_id=8)  # another card: hashed
    with pytest.raises(pin_unit.PinBlockError):  # under another key: deciphered, refused
        _verify(memory, block, T0, keys=OTHER_KEYS)
    assert checks.count == 2
    digests = {
        memory.digest(7, key, 0, ksn, block)
        for key in (PIN_KEY_TDES, OTHER_KEYS.pin_key_tdes)
        for ksn in (None, bytes(10))
    }
    assert len(digests) == 4
    other_hash = pin_unit.hash_pin(SETTINGS, "1234")  # a new salt: the PIN was set again
    assert _verify(memory, block, T0, pin_hash=other_hash)
    assert checks.count == 3


def test_a_wrong_pin_forgets_the_card(checks: Checks) -> None:
    memory = pin_unit.VerifiedPins(SETTINGS, LIFETIME)
    assert _verify(memory, _block("1234"), T0)
    assert not _verify(memory, _block("9999"), T0)
    assert len(memory) == 0
    assert _verify(memory, _block("1234"), T0)
    assert checks.count == 3


def test_it_keeps_no_block_and_stays_bounded() -> None:
    memory = pin_unit.VerifiedPins(SETTINGS, LIFETIME, max_cards=3, max_per_card=2)
    block = _block("1234")
    for card_id in range(10):
        for n in range(5):
            memory.remember(
                card_id, memory.digest(card_id, PIN_KEY_TDES, 0, bytes([n]), block), HASH, T0
            )
    assert len(memory) == 3
    assert all(len(entries) == 2 for entries in memory._cards.values())
    assert [*memory._cards] == [7, 8, 9]  # the least recently verified went first
    for entries in memory._cards.values():
        for entry in entries:
            assert block not in entry.digest and len(entry.digest) == 32
    assert "1234" not in repr(memory) and block.hex() not in repr(memory)


def test_it_is_safe_across_threads() -> None:
    memory = pin_unit.VerifiedPins(SETTINGS, LIFETIME)
    block = _block("1234")
    misses: list[int] = []

    def work(offset: int) -> None:
        for card_id in range(offset, offset + 200):
            digest = memory.digest(card_id, PIN_KEY_TDES, 0, None, block)
            memory.remember(card_id, digest, HASH, T0)
            if not memory.recall(card_id, digest, HASH, T0):
                misses.append(card_id)  # only its own thread forgets it: never expected
            memory.forget(card_id - 3)

    threads = [threading.Thread(target=work, args=(n * 1000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(memory) == 4 * 3  # the last three cards of each thread
    assert misses == []
