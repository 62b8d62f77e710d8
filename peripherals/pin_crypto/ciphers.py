"""Block cipher primitives the PIN pad needs: DES, TDES and AES in ECB and CBC, and CMAC.

TDES lives in cryptography's `decrepit` package in recent versions; both places are tried.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, CipherAlgorithm, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # cryptography < 43 keeps it with the other algorithms
    TripleDES = algorithms.TripleDES  # type: ignore[misc]


class KeyLengthError(ValueError):
    """A key of a length the algorithm does not take."""


def _tdes(key: bytes) -> CipherAlgorithm:
    # Single and double length keys are spelled out as three keys: the library deprecates the
    # short forms, and K1K2K1 / KKK are the same ciphers by definition.
    if len(key) == 8:
        key = key * 3
    elif len(key) == 16:
        key = key + key[:8]
    elif len(key) != 24:
        raise KeyLengthError(f"a DES/TDES key is 8, 16 or 24 bytes, not {len(key)}")
    algorithm: CipherAlgorithm = TripleDES(key)
    return algorithm


def _aes(key: bytes) -> CipherAlgorithm:
    if len(key) not in (16, 24, 32):
        raise KeyLengthError(f"an AES key is 16, 24 or 32 bytes, not {len(key)}")
    return algorithms.AES(key)


def _check_blocks(data: bytes, size: int) -> None:
    if len(data) % size:
        raise ValueError(f"data of {len(data)} bytes is not a whole number of {size}-byte blocks")


def tdes_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """DES (8-byte key) or TDES (16 or 24) in ECB mode."""
    _check_blocks(data, 8)
    encryptor = Cipher(_tdes(key), modes.ECB()).encryptor()  # noqa: S305 - ECB is the spec here
    return encryptor.update(data) + encryptor.finalize()


def tdes_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    _check_blocks(data, 8)
    decryptor = Cipher(_tdes(key), modes.ECB()).decryptor()  # noqa: S305
    return decryptor.update(data) + decryptor.finalize()


def tdes_cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    _check_blocks(data, 8)
    encryptor = Cipher(_tdes(key), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def tdes_cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    _check_blocks(data, 8)
    decryptor = Cipher(_tdes(key), modes.CBC(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def aes_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    _check_blocks(data, 16)
    encryptor = Cipher(_aes(key), modes.ECB()).encryptor()  # noqa: S305
    return encryptor.update(data) + encryptor.finalize()


def aes_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    _check_blocks(data, 16)
    decryptor = Cipher(_aes(key), modes.ECB()).decryptor()  # noqa: S305
    return decryptor.update(data) + decryptor.finalize()


def aes_cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    _check_blocks(data, 16)
    encryptor = Cipher(_aes(key), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def aes_cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    _check_blocks(data, 16)
    decryptor = Cipher(_aes(key), modes.CBC(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def tdes_cmac(key: bytes, data: bytes) -> bytes:
    """CMAC (NIST SP 800-38B) with TDES: 8 bytes."""
    mac = CMAC(_tdes(key))  # type: ignore[arg-type]
    mac.update(data)
    return mac.finalize()


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """CMAC (RFC 4493) with AES: 16 bytes."""
    mac = CMAC(_aes(key))  # type: ignore[arg-type]
    mac.update(data)
    return mac.finalize()


def xor(left: bytes, right: bytes) -> bytes:
    if len(left) != len(right):
        raise ValueError(f"xor of {len(left)} and {len(right)} bytes")
    return bytes(a ^ b for a, b in zip(left, right, strict=True))
