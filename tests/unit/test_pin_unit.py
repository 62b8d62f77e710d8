"""The host's PIN verification unit against published vectors and PIN blocks built by psec."""

from __future__ import annotations

import warnings

import psec.des
import psec.pinblock
import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from config.settings import Settings, load_settings
from host import dukpt, pin_unit
from host.crypto_keys import TerminalKeys
from peripherals.pin_crypto import dukpt_aes, dukpt_tdes
from tests.conftest import TEST_SECRETS

PIN_KEY_TDES = bytes.fromhex("89ABCDEF0123456776543210FEDCBA98")
PIN_KEY_AES = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
KEYS = TerminalKeys(bytes(16), PIN_KEY_TDES, PIN_KEY_AES, bytes(16))
SETTINGS: Settings = load_settings(TEST_SECRETS)


def _tdes_encrypt(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(TripleDES(key + key[:8]), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def _accepts(keys: TerminalKeys, block: bytes, block_format: int, pan: str, pin: str) -> bool:
    """Whether the unit takes `block` as carrying `pin` (a malformed block counts as no)."""
    try:
        return pin_unit.verify_pin_block(
            SETTINGS, keys, block, block_format, pan, pin_unit.hash_pin(SETTINGS, pin)
        )
    except pin_unit.PinBlockError:
        return False


def _psec_format0(pin: str, pan: str) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # psec uses cryptography's deprecated 2-key TDES
        clear = psec.pinblock.encode_pinblock_iso_0(pin, pan)
        return bytes(psec.des.encrypt_tdes_ecb(PIN_KEY_TDES, clear))


@pytest.mark.parametrize(
    ("clear_hex", "pan"),
    [
        ("0412AC89ABCDEF67", "43219876543210987"),
        ("041274EDCBA9876F", "4012345678909"),
    ],
)
def test_published_format0_clear_blocks(clear_hex: str, pan: str) -> None:
    block = _tdes_encrypt(PIN_KEY_TDES, bytes.fromhex(clear_hex))
    assert _accepts(KEYS, block, 0, pan, "1234")
    assert not _accepts(KEYS, block, 0, pan, "1235")


def test_published_dukpt_encrypted_format0_block() -> None:
    # X9.24-1: KSN ...E00001 transaction key, PIN variant applied, PIN 1234, PAN 4012345678909.
    transaction_key = bytes.fromhex("042666B49184CFA368DE9628D0397BC9")
    variant = bytes.fromhex("00000000000000FF00000000000000FF")
    pin_key = bytes(a ^ b for a, b in zip(transaction_key, variant, strict=True))
    keys = TerminalKeys(bytes(16), pin_key, PIN_KEY_AES, bytes(16))
    block = bytes.fromhex("1B9C1845EB993A7A")
    assert _accepts(keys, block, 0, "4012345678909", "1234")
    assert not _accepts(keys, block, 0, "4012345678909", "4321")


def test_published_format4_block() -> None:
    block = bytes.fromhex("E4BE5B623AF7E006AC319E5B93544564")
    assert _accepts(KEYS, block, 4, "1234567890123456", "1234")
    assert not _accepts(KEYS, block, 4, "1234567890123456", "1243")
    assert not _accepts(KEYS, block, 4, "1234567890123457", "1234")


pins = st.text("0123456789", min_size=4, max_size=12)
pans = st.text("0123456789", min_size=13, max_size=19)  # psec wants 13 or more for format 0


@settings(max_examples=60, deadline=None)
@given(pin=pins, other=pins, pan=pans)
def test_psec_format0_blocks(pin: str, other: str, pan: str) -> None:
    block = _psec_format0(pin, pan)
    assert _accepts(KEYS, block, 0, pan, pin)
    if other != pin:
        assert not _accepts(KEYS, block, 0, pan, other)


@settings(max_examples=60, deadline=None)
@given(pin=pins, other=pins, pan=pans)
def test_psec_format4_blocks(pin: str, other: str, pan: str) -> None:
    block = psec.pinblock.encipher_pinblock_iso_4(PIN_KEY_AES, pin, pan)
    assert _accepts(KEYS, block, 4, pan, pin)
    if other != pin:
        assert not _accepts(KEYS, block, 4, pan, other)


def test_wrong_key_or_format_is_refused() -> None:
    pan = "4761739001010010"
    block0 = _psec_format0("1234", pan)
    block4 = psec.pinblock.encipher_pinblock_iso_4(PIN_KEY_AES, "1234", pan)
    other_keys = TerminalKeys(bytes(16), PIN_KEY_AES, PIN_KEY_TDES, bytes(16))
    assert not _accepts(other_keys, block0, 0, pan, "1234")
    assert not _accepts(other_keys, block4, 4, pan, "1234")
    with pytest.raises(pin_unit.PinBlockError, match="format 0 PIN block is 8 bytes"):
        pin_unit.verify_pin_block(SETTINGS, KEYS, block4, 0, pan, "x")
    with pytest.raises(pin_unit.PinBlockError, match="format 4 PIN block is 16 bytes"):
        pin_unit.verify_pin_block(SETTINGS, KEYS, block0, 4, pan, "x")
    with pytest.raises(pin_unit.PinBlockError, match="format 3 is not supported"):
        pin_unit.verify_pin_block(SETTINGS, KEYS, block0, 3, pan, "x")
    with pytest.raises(pin_unit.PinBlockError, match="card number"):
        pin_unit.verify_pin_block(SETTINGS, KEYS, block0, 0, "47617390010100AB", "x")


def test_pin_hash_uses_the_pepper_and_the_cost() -> None:
    pan = "4761739001010010"
    block = _psec_format0("1234", pan)
    digest = pin_unit.hash_pin(SETTINGS, "1234")
    assert digest.startswith("$2b$04$")
    other_pepper = load_settings({**TEST_SECRETS, "PIN_PEPPER": "another-pepper-0123456789"})
    assert pin_unit.verify_pin_block(SETTINGS, KEYS, block, 0, pan, digest)
    assert not pin_unit.verify_pin_block(other_pepper, KEYS, block, 0, pan, digest)
    with pytest.raises(pin_unit.PinUnitError, match="unreadable"):
        pin_unit.verify_pin_block(SETTINGS, KEYS, block, 0, pan, "not-a-hash")
    full_width = "\uff11\uff12\uff13\uff14"
    for bad in ("123", "12a4", "1" * 13, full_width):
        with pytest.raises(pin_unit.PinBlockError):
            pin_unit.hash_pin(SETTINGS, bad)


# ----- DUKPT: the host derives each transaction's PIN key from the BDK and the KSN -------------

TDES_BDK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
AES_BDK = bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1")
DUKPT_KEYS = TerminalKeys(
    bytes(16), PIN_KEY_TDES, PIN_KEY_AES, bytes(16), dukpt_bdk_tdes=TDES_BDK, dukpt_bdk_aes=AES_BDK
)


def test_tdes_dukpt_published_pin_block_carries_pin_1234() -> None:
    # ANSI X9.24-1 test: KSN FFFF9876543210E00001, PAN 4012345678909, PIN 1234.
    ksn = bytes.fromhex("FFFF9876543210E00001")
    key = dukpt.tdes_pin_key(TDES_BDK, ksn)
    assert key == bytes.fromhex("042666B49184CF5C68DE9628D0397B36")  # 042666...BC9 ^ PIN variant
    block = bytes.fromhex("1B9C1845EB993A7A")
    pin_hash = pin_unit.hash_pin(SETTINGS, "1234")
    assert pin_unit.verify_pin_block(SETTINGS, DUKPT_KEYS, block, 0, "4012345678909", pin_hash, ksn)
    other = pin_unit.hash_pin(SETTINGS, "1235")
    assert not pin_unit.verify_pin_block(
        SETTINGS, DUKPT_KEYS, block, 0, "4012345678909", other, ksn
    )
    next_ksn = bytes.fromhex("FFFF9876543210E00002")  # another transaction's key: no PIN
    with pytest.raises(pin_unit.PinBlockError):
        pin_unit.verify_pin_block(
            SETTINGS, DUKPT_KEYS, block, 0, "4012345678909", pin_hash, next_ksn
        )


def test_aes_dukpt_first_transaction_key_from_the_published_vector() -> None:
    ksn = bytes.fromhex("1234567890123456") + (1).to_bytes(4, "big")
    transaction = bytes.fromhex("4F21B565BAD9835E112B6465635EAE44")
    expected = dukpt_aes.pin_encryption_key(transaction, ksn)
    assert dukpt.aes_pin_key(AES_BDK, ksn) == expected


@settings(max_examples=60, deadline=None)
@given(bdk=st.binary(min_size=16, max_size=16), ksn=st.binary(min_size=10, max_size=10))
def test_host_tdes_dukpt_agrees_with_the_pin_pad(bdk: bytes, ksn: bytes) -> None:
    assert dukpt.tdes_pin_key(bdk, ksn) == dukpt_tdes.derive_pin_key(bdk, ksn)


@settings(max_examples=60, deadline=None)
@given(bdk=st.binary(min_size=16, max_size=16), ksn=st.binary(min_size=12, max_size=12))
def test_host_aes_dukpt_agrees_with_the_pin_pad(bdk: bytes, ksn: bytes) -> None:
    assert dukpt.aes_pin_key(bdk, ksn) == dukpt_aes.derive_pin_key(bdk, ksn)


def test_aes_dukpt_format4_block_round_trip() -> None:
    ksn = bytes.fromhex("123456789012345600000007")
    block = psec.pinblock.encipher_pinblock_iso_4(
        dukpt_aes.derive_pin_key(AES_BDK, ksn), "271828", "4761739001010010"
    )
    pin_hash = pin_unit.hash_pin(SETTINGS, "271828")
    assert pin_unit.verify_pin_block(
        SETTINGS, DUKPT_KEYS, bytes(block), 4, "4761739001010010", pin_hash, ksn
    )


def test_dukpt_block_for_a_terminal_without_a_bdk_is_a_key_problem_not_a_wrong_pin() -> None:
    ksn = bytes.fromhex("FFFF9876543210E00001")
    pin_hash = pin_unit.hash_pin(SETTINGS, "1234")
    with pytest.raises(pin_unit.MissingKeyError, match="no TDES DUKPT base derivation key"):
        pin_unit.verify_pin_block(
            SETTINGS, KEYS, bytes.fromhex("1B9C1845EB993A7A"), 0, "4012345678909", pin_hash, ksn
        )


def test_ksn_order_splits_the_counter_off() -> None:
    assert dukpt.split_ksn(bytes.fromhex("FFFF9876543210E00001")) == (
        bytes.fromhex("FFFF9876543210E00000"),
        1,
    )
    assert dukpt.split_ksn(bytes.fromhex("FFFF9876543210FFFFFF"))[1] == (1 << 21) - 1
    assert dukpt.split_ksn(bytes.fromhex("123456789012345600000102")) == (
        bytes.fromhex("1234567890123456"),
        258,
    )
    with pytest.raises(dukpt.DukptKeyError):
        dukpt.split_ksn(bytes(11))
