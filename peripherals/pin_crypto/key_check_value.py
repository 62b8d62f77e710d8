"""Key check values: the first bytes of a key enciphering zeros (legacy) or of its CMAC.

TDES keys use the legacy method; AES keys the CMAC method of X9.24-1:2017 (a zero block).
"""

from __future__ import annotations

from typing import Literal

from peripherals.pin_crypto import ciphers

Algorithm = Literal["tdes", "aes"]
Method = Literal["legacy", "cmac"]


def key_check_value(
    key: bytes, algorithm: Algorithm, *, method: Method | None = None, length: int = 3
) -> str:
    """Upper-case hex of the first `length` bytes; the default method follows the algorithm."""
    if method is None:
        method = "legacy" if algorithm == "tdes" else "cmac"
    if not 2 <= length <= 8:
        raise ValueError(f"a key check value is 2 to 8 bytes, not {length}")
    if algorithm == "tdes":
        zeros = bytes(8)
        check = (
            ciphers.tdes_ecb_encrypt(key, zeros)
            if method == "legacy"
            else ciphers.tdes_cmac(key, zeros)
        )
    elif algorithm == "aes":
        zeros = bytes(16)
        check = (
            ciphers.aes_ecb_encrypt(key, zeros)
            if method == "legacy"
            else ciphers.aes_cmac(key, zeros)
        )
    else:
        raise ValueError(f"algorithm {algorithm!r} is not tdes or aes")
    return check[:length].hex().upper()
