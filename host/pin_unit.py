"""The host's PIN verification unit: deciphers ISO 9564 PIN blocks (format 0 under TDES, format 4
under AES; fixed terminal keys or DUKPT) and checks the PIN against its bcrypt hash. The clear
PIN never leaves this module.
"""

from __future__ import annotations

import bcrypt
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from config.settings import Settings
from host import dukpt
from host.crypto_keys import TerminalKeys

SUPPORTED_FORMATS = (0, 4)


class PinUnitError(Exception):
    """The PIN verification unit cannot work with what it was given."""


class PinBlockError(PinUnitError, ValueError):
    """A PIN block does not decipher to a well-formed PIN (wrong key, PAN, format or damage)."""


class MissingKeyError(PinUnitError):
    """The terminal sent a DUKPT PIN block but the bank holds no base derivation key for it."""


def _ecb_decrypt(algorithm: algorithms.AES | TripleDES, block: bytes) -> bytes:
    decryptor = Cipher(algorithm, modes.ECB()).decryptor()  # noqa: S305 - one block, by standard
    return decryptor.update(block) + decryptor.finalize()


def _digits(pan: str) -> str:
    if not pan.isascii() or not pan.isdigit() or not 1 <= len(pan) <= 19:
        raise PinBlockError("the card number must be 1 to 19 digits")
    return pan


def _pin_from_field(nibbles: str, control: str, fill: str) -> str:
    if nibbles[0] != control:
        raise PinBlockError("the PIN block has the wrong control field")
    length = int(nibbles[1], 16)
    if not 4 <= length <= 12:
        raise PinBlockError("the PIN block holds no PIN of 4 to 12 digits")
    pin = nibbles[2 : 2 + length]
    padding = nibbles[2 + length : 16]
    if not pin.isdigit() or any(c != fill for c in padding):
        raise PinBlockError("the PIN block is not well formed")
    return pin


def _format0_pin(key: bytes, block: bytes, pan: str) -> str:
    if len(block) != 8:
        raise PinBlockError("a format 0 PIN block is 8 bytes")
    # Double-length keys are K1 K2 K1 in full: cryptography no longer takes the 16-byte form.
    clear = _ecb_decrypt(TripleDES(key + key[:8] if len(key) == 16 else key), block)
    # The PAN field: 4 zeros and the 12 rightmost digits before the check digit.
    pan_field = bytes.fromhex("0000" + _digits(pan)[:-1][-12:].rjust(12, "0"))
    pin_field = bytes(a ^ b for a, b in zip(clear, pan_field, strict=True))
    return _pin_from_field(pin_field.hex().upper(), "0", "F")


def _format4_pin(key: bytes, block: bytes, pan: str) -> str:
    if len(block) != 16:
        raise PinBlockError("a format 4 PIN block is 16 bytes")
    digits = _digits(pan)
    # The PAN field: (length - 12) in one digit, the PAN (left-padded to 12), zeros to 32 digits.
    pan_field = bytes.fromhex(
        (str(max(0, len(digits) - 12)) + digits.rjust(12, "0")).ljust(32, "0")
    )
    intermediate = _ecb_decrypt(algorithms.AES(key), block)
    pin_field = _ecb_decrypt(
        algorithms.AES(key), bytes(a ^ b for a, b in zip(intermediate, pan_field, strict=True))
    )
    return _pin_from_field(pin_field[:8].hex().upper(), "4", "A")


def _pin_key(keys: TerminalKeys, block_format: int, ksn: bytes | None) -> bytes:
    """The key that enciphered the block: the terminal's fixed key, or the DUKPT key of `ksn`."""
    if ksn is None:
        return keys.pin_key_aes if block_format == 4 else keys.pin_key_tdes
    bdk = keys.dukpt_bdk_aes if block_format == 4 else keys.dukpt_bdk_tdes
    if bdk is None:
        scheme = "AES" if block_format == 4 else "TDES"
        raise MissingKeyError(f"the terminal has no {scheme} DUKPT base derivation key")
    try:
        if block_format == 4:
            return dukpt.aes_pin_key(bdk, ksn)
        return dukpt.tdes_pin_key(bdk, ksn)
    except dukpt.DukptKeyError as err:
        raise PinBlockError(str(err)) from err


def _extract_pin(
    keys: TerminalKeys, block: bytes, block_format: int, pan: str, ksn: bytes | None
) -> str:
    if block_format == 0:
        return _format0_pin(_pin_key(keys, block_format, ksn), block, pan)
    if block_format == 4:
        return _format4_pin(_pin_key(keys, block_format, ksn), block, pan)
    raise PinBlockError(f"PIN block format {block_format} is not supported (only 0 and 4)")


def _secret(settings: Settings, pin: str) -> bytes:
    return (pin + settings.pin_pepper).encode("utf-8")


def hash_pin(settings: Settings, pin: str) -> str:
    """bcrypt of PIN + pepper, for seeding a card from its (test) PIN."""
    if not pin.isascii() or not pin.isdigit() or not 4 <= len(pin) <= 12:
        raise PinBlockError("a PIN is 4 to 12 digits")
    return bcrypt.hashpw(_secret(settings, pin), bcrypt.gensalt(settings.bcrypt_rounds)).decode()


def verify_pin_block(
    settings: Settings,
    keys: TerminalKeys,
    block: bytes,
    block_format: int,
    pan: str,
    pin_hash: str,
    ksn: bytes | None = None,
) -> bool:
    """True when the PIN block carries the PIN whose hash is pin_hash.

    Raises PinBlockError when the block does not decipher to a well-formed PIN, MissingKeyError
    when the terminal's DUKPT key is unknown.
    """
    pin = _extract_pin(keys, block, block_format, pan, ksn)
    try:
        return bcrypt.checkpw(_secret(settings, pin), pin_hash.encode("ascii"))
    except ValueError as err:  # a damaged stored hash
        raise PinUnitError("the stored PIN hash is unreadable") from err


def hash_pin_block(
    settings: Settings,
    keys: TerminalKeys,
    block: bytes,
    block_format: int,
    pan: str,
    ksn: bytes | None = None,
) -> str:
    """The bcrypt hash of the PIN a block carries (for a PIN change)."""
    return hash_pin(settings, _extract_pin(keys, block, block_format, pan, ksn))
