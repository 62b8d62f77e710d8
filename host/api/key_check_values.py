"""Key check values of a terminal's keys, so an operator can compare keys without seeing one:
TDES keys by the legacy method (zeros enciphered), AES keys by CMAC of a zero block.
"""

from __future__ import annotations

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from host.crypto_keys import TerminalKeys

KCV_BYTES = 3
KEY_ALGORITHMS = {
    "tmk": "tdes",
    "pin_key_tdes": "tdes",
    "pin_key_aes": "aes",
    "mac_key": "aes",
    "dukpt_bdk_tdes": "tdes",
    "dukpt_bdk_aes": "aes",
}


def key_check_value(key: bytes, algorithm: str) -> str:
    """Upper-case hex of the first three bytes of the check."""
    if algorithm == "tdes":
        full = key + key[:8] if len(key) == 16 else key
        encryptor = Cipher(TripleDES(full), modes.ECB()).encryptor()  # noqa: S305 - one block
        check = encryptor.update(bytes(8)) + encryptor.finalize()
    elif algorithm == "aes":
        cmac = CMAC(algorithms.AES(key))
        cmac.update(bytes(16))
        check = cmac.finalize()
    else:
        raise ValueError(f"algorithm {algorithm!r} is not tdes or aes")
    return check[:KCV_BYTES].hex().upper()


def terminal_check_values(keys: TerminalKeys) -> dict[str, str]:
    """Each key the terminal holds, by name, as its check value."""
    values: dict[str, str] = {}
    for name, algorithm in KEY_ALGORITHMS.items():
        key: bytes | None = getattr(keys, name)
        if key is not None:
            values[name] = key_check_value(key, algorithm)
    return values
