"""The host side of DUKPT: the PIN encryption key of one transaction, from the BDK and its KSN.

TDES per ANSI X9.24-1 (10-byte KSN), AES-128 per ANSI X9.24-3 (12-byte KSN). Derivation only:
the host never keeps a future-key register, it walks from the BDK each time.
"""

from __future__ import annotations

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

TDES_KSN_BYTES = 10
AES_KSN_BYTES = 12
_TDES_COUNTER_BITS = 21
_KEY_MASK = bytes.fromhex("C0C0C0C000000000C0C0C0C000000000")
_PIN_VARIANT = bytes.fromhex("00000000000000FF00000000000000FF")
# X9.24-3 derivation data: version 1, block 1, usage, algorithm AES-128 (2), length 128 bits.
_AES_INITIAL_KEY_USAGE = 0x8001
_AES_DERIVATION_USAGE = 0x8000
_AES_PIN_USAGE = 0x1000


class DukptKeyError(ValueError):
    """A BDK or KSN of the wrong length."""


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def _encrypt_block(algorithm: algorithms.AES | TripleDES, block: bytes) -> bytes:
    encryptor = Cipher(algorithm, modes.ECB()).encryptor()  # noqa: S305 - one block, by standard
    return encryptor.update(block) + encryptor.finalize()


def _des(key: bytes, block: bytes) -> bytes:
    # Single DES is TDES with K1 = K2 = K3; a 16-byte key is expanded to K1 K2 K1.
    full = key * 3 if len(key) == 8 else key + key[:8]
    return _encrypt_block(TripleDES(full), block)


def _check(bdk: bytes, ksn: bytes, ksn_bytes: int) -> None:
    if len(bdk) != 16:
        raise DukptKeyError(f"a DUKPT BDK is 16 bytes here, not {len(bdk)}")
    if len(ksn) != ksn_bytes:
        raise DukptKeyError(f"this DUKPT KSN must be {ksn_bytes} bytes, not {len(ksn)}")


def tdes_pin_key(bdk: bytes, ksn: bytes) -> bytes:
    """The double-length TDES key that enciphered the PIN block sent under this KSN."""
    _check(bdk, ksn, TDES_KSN_BYTES)
    base, counter = split_ksn(ksn)
    key = _des(bdk, base[:8]) + _des(_xor(bdk, _KEY_MASK), base[:8])
    register = int.from_bytes(base[2:], "big")
    for bit in range(_TDES_COUNTER_BITS - 1, -1, -1):
        if not counter >> bit & 1:
            continue
        register |= 1 << bit
        data = register.to_bytes(8, "big")
        # The non-reversible step: the left half from the masked key, the right from the key.
        key = _tdes_step(_xor(key, _KEY_MASK), data) + _tdes_step(key, data)
    return _xor(key, _PIN_VARIANT)


def _tdes_step(key: bytes, data: bytes) -> bytes:
    return _xor(_des(key[:8], _xor(data, key[8:])), key[8:])


def _aes_derivation(key: bytes, usage: int, context: bytes) -> bytes:
    data = bytes([1, 1]) + usage.to_bytes(2, "big") + bytes([0, 2, 0, 0x80]) + context
    return _encrypt_block(algorithms.AES(key), data)


def aes_pin_key(bdk: bytes, ksn: bytes) -> bytes:
    """The AES-128 PIN encryption key of the transaction this KSN names."""
    _check(bdk, ksn, AES_KSN_BYTES)
    key = _aes_derivation(bdk, _AES_INITIAL_KEY_USAGE, ksn[:8])
    counter = int.from_bytes(ksn[8:], "big")
    working = 0
    for bit in range(31, -1, -1):
        if counter >> bit & 1:
            working |= 1 << bit
            context = ksn[4:8] + working.to_bytes(4, "big")
            key = _aes_derivation(key, _AES_DERIVATION_USAGE, context)
    return _aes_derivation(key, _AES_PIN_USAGE, ksn[4:])


def split_ksn(ksn: bytes) -> tuple[bytes, int]:
    """A KSN as (initial key part with the counter zeroed, counter): the replay check's order."""
    if len(ksn) == TDES_KSN_BYTES:
        value = int.from_bytes(ksn, "big")
        counter = value & ((1 << _TDES_COUNTER_BITS) - 1)
        return (value - counter).to_bytes(TDES_KSN_BYTES, "big"), counter
    if len(ksn) == AES_KSN_BYTES:
        return ksn[:8], int.from_bytes(ksn[8:], "big")
    raise DukptKeyError(f"a KSN is {TDES_KSN_BYTES} or {AES_KSN_BYTES} bytes, not {len(ksn)}")
