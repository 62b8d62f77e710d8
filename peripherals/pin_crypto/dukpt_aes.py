"""AES DUKPT (ANSI X9.24-3) for AES-128 keys: initial key, transaction keys, working keys.

A KSN is 12 bytes: the 8-byte initial key ID (BDK ID + derivation ID) and a 32-bit counter.
"""

from __future__ import annotations

from enum import IntEnum

from peripherals.pin_crypto import DukptError, ciphers

KSN_BYTES = 12
INITIAL_KEY_ID_BYTES = 8
MAX_ONE_BITS = 16  # a device uses only counters with at most sixteen bits set
ALGORITHM_AES128 = 0x0002
LENGTH_AES128 = 0x0080


class KeyUsage(IntEnum):
    """Key usage indicators of the derivation data (X9.24-3 table 2)."""

    KEY_ENCRYPTION = 0x0002
    PIN_ENCRYPTION = 0x1000
    MAC_GENERATION = 0x2000
    MAC_VERIFICATION = 0x2001
    MAC_BOTH = 0x2002
    DATA_ENCRYPT = 0x3000
    DATA_DECRYPT = 0x3001
    DATA_BOTH = 0x3002
    KEY_DERIVATION = 0x8000
    INITIAL_KEY = 0x8001


def _check_key(key: bytes) -> None:
    if len(key) != 16:
        raise DukptError(f"only AES-128 DUKPT keys are supported (16 bytes), not {len(key)}")


def _check_ksn(ksn: bytes) -> None:
    if len(ksn) != KSN_BYTES:
        raise DukptError(f"an AES DUKPT KSN is {KSN_BYTES} bytes, not {len(ksn)}")


def counter(ksn: bytes) -> int:
    return int.from_bytes(ksn[8:], "big")


def make_ksn(initial_key_id: bytes, count: int) -> bytes:
    if len(initial_key_id) != INITIAL_KEY_ID_BYTES:
        raise DukptError(f"an initial key ID is 8 bytes, not {len(initial_key_id)}")
    return initial_key_id + count.to_bytes(4, "big")


def derivation_data(usage: int, context: bytes) -> bytes:
    """Version 1, block counter 1, usage, AES-128 algorithm and length, 8 bytes of context."""
    return (
        bytes([0x01, 0x01])
        + usage.to_bytes(2, "big")
        + ALGORITHM_AES128.to_bytes(2, "big")
        + LENGTH_AES128.to_bytes(2, "big")
        + context
    )


def initial_key(bdk: bytes, initial_key_id: bytes) -> bytes:
    _check_key(bdk)
    if len(initial_key_id) != INITIAL_KEY_ID_BYTES:
        raise DukptError(f"an initial key ID is 8 bytes, not {len(initial_key_id)}")
    return ciphers.aes_ecb_encrypt(bdk, derivation_data(KeyUsage.INITIAL_KEY, initial_key_id))


def transaction_key(initial: bytes, ksn: bytes) -> bytes:
    """One derivation step per set counter bit, highest first; context = derivation ID + count."""
    _check_key(initial)
    _check_ksn(ksn)
    count = counter(ksn)
    working = 0
    key = initial
    for bit in reversed(range(32)):
        if count & (1 << bit):
            working |= 1 << bit
            context = ksn[4:8] + working.to_bytes(4, "big")
            key = ciphers.aes_ecb_encrypt(key, derivation_data(KeyUsage.KEY_DERIVATION, context))
    return key


def working_key(transaction: bytes, ksn: bytes, usage: KeyUsage) -> bytes:
    """An AES-128 working key of the given usage, derived from the transaction key."""
    _check_key(transaction)
    _check_ksn(ksn)
    return ciphers.aes_ecb_encrypt(transaction, derivation_data(usage, ksn[4:]))


def pin_encryption_key(transaction: bytes, ksn: bytes) -> bytes:
    return working_key(transaction, ksn, KeyUsage.PIN_ENCRYPTION)


def derive_pin_key(bdk: bytes, ksn: bytes) -> bytes:
    """The host's view: BDK and KSN to the key that enciphered that transaction's PIN block."""
    _check_ksn(ksn)
    return pin_encryption_key(transaction_key(initial_key(bdk, ksn[:8]), ksn), ksn)


def next_ksn(ksn: bytes) -> bytes:
    """The next KSN a device uses: counters with more than sixteen bits set are skipped."""
    _check_ksn(ksn)
    value = counter(ksn) + 1
    while value < 1 << 32 and bin(value).count("1") > MAX_ONE_BITS:
        value += value & -value
    if value >= 1 << 32:
        raise DukptError("the DUKPT transaction counter is exhausted")
    return make_ksn(ksn[:8], value)
