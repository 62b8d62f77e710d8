"""ISO 9564-1 PIN blocks: formats 0, 1 and 3 (8 bytes, TDES) and format 4 (16 bytes, AES).

Random fill comes from `secrets` unless a test passes `fill`; decoding checks every nibble.
"""

from __future__ import annotations

import secrets

from peripherals.pin_crypto import ciphers

TDES_FORMATS = frozenset({0, 1, 3})
AES_FORMATS = frozenset({4})
FORMATS = TDES_FORMATS | AES_FORMATS
MIN_PIN = 4
MAX_PIN = 12


class PinBlockError(ValueError):
    """A PIN, PAN, format or PIN block that does not fit ISO 9564."""


def check_pin(pin: str) -> None:
    if not (pin.isascii() and pin.isdigit() and MIN_PIN <= len(pin) <= MAX_PIN):
        raise PinBlockError(f"a PIN is {MIN_PIN} to {MAX_PIN} digits")


def check_pan(pan: str) -> None:
    if not (pan.isascii() and pan.isdigit() and 1 <= len(pan) <= 19):
        raise PinBlockError("a PAN is 1 to 19 digits")


def _check_format(fmt: int) -> None:
    if fmt not in FORMATS:
        raise PinBlockError(f"PIN block format {fmt!r} is not one of 0, 1, 3, 4")


def _nibbles(values: list[int]) -> bytes:
    return bytes((values[i] << 4) | values[i + 1] for i in range(0, len(values), 2))


def _split(data: bytes) -> list[int]:
    return [n for byte in data for n in (byte >> 4, byte & 0x0F)]


def _random_nibbles(count: int, low: int, high: int) -> list[int]:
    return [low + secrets.randbelow(high - low + 1) for _ in range(count)]


def pan_field(pan: str) -> bytes:
    """Formats 0 and 3: 0000 and the 12 rightmost PAN digits before the check digit."""
    check_pan(pan)
    digits = pan[:-1][-12:].rjust(12, "0")
    return bytes.fromhex("0000" + digits)


def pin_field(fmt: int, pin: str, fill: bytes | None = None) -> bytes:
    """The 8-byte PIN field of format 0, 1 or 3. `fill`: the fill nibbles (one per byte)."""
    check_pin(pin)
    if fmt not in TDES_FORMATS:
        raise PinBlockError(f"format {fmt} has no 8-byte PIN field")
    count = 14 - len(pin)
    if fill is not None:
        if len(fill) != count:
            raise PinBlockError(f"fill must be {count} nibbles for a {len(pin)}-digit PIN")
        tail = list(fill)
    elif fmt == 0:
        tail = [0xF] * count
    elif fmt == 1:
        tail = _random_nibbles(count, 0x0, 0xF)
    else:
        tail = _random_nibbles(count, 0xA, 0xF)
    allowed = {0: range(0xF, 0x10), 1: range(0x0, 0x10), 3: range(0xA, 0x10)}[fmt]
    if any(n not in allowed for n in tail):
        raise PinBlockError(f"fill nibbles not allowed in format {fmt}")
    return _nibbles([fmt, len(pin), *(int(d) for d in pin), *tail])


def clear_pin_block(fmt: int, pin: str, pan: str = "", *, fill: bytes | None = None) -> bytes:
    """The clear 8-byte block of format 0, 1 or 3 (format 1 ignores the PAN)."""
    field = pin_field(fmt, pin, fill)
    if fmt == 1:
        return field
    return ciphers.xor(field, pan_field(pan))


def pin_from_clear_block(fmt: int, block: bytes, pan: str = "") -> str:
    """The PIN in a clear 8-byte block of format 0, 1 or 3; PinBlockError if malformed."""
    if fmt not in TDES_FORMATS or len(block) != 8:
        raise PinBlockError(f"not an 8-byte block of format 0, 1 or 3 (format {fmt})")
    field = block if fmt == 1 else ciphers.xor(block, pan_field(pan))
    nibbles = _split(field)
    length = nibbles[1]
    if nibbles[0] != fmt or not MIN_PIN <= length <= MAX_PIN:
        raise PinBlockError("PIN block control field or length is wrong (wrong key or PAN?)")
    digits, tail = nibbles[2 : 2 + length], nibbles[2 + length :]
    allowed = {0: {0xF}, 1: set(range(16)), 3: set(range(0xA, 0x10))}[fmt]
    if any(d > 9 for d in digits) or any(n not in allowed for n in tail):
        raise PinBlockError("PIN block digits or fill are wrong (wrong key or PAN?)")
    return "".join(str(d) for d in digits)


def format4_pin_field(pin: str, fill: bytes | None = None) -> bytes:
    """4, N, the PIN, 'A' fill to 16 nibbles, then 8 random bytes."""
    check_pin(pin)
    if fill is None:
        fill = secrets.token_bytes(8)
    if len(fill) != 8:
        raise PinBlockError("format 4 random fill is 8 bytes")
    head = [4, len(pin), *(int(d) for d in pin)]
    return _nibbles(head + [0xA] * (16 - len(head))) + fill


def format4_pan_field(pan: str) -> bytes:
    """M (PAN length - 12, 0 below 12), the PAN (left-padded with zeros to 12), zeros after."""
    check_pan(pan)
    if len(pan) < 12:
        pan = pan.rjust(12, "0")
    return bytes.fromhex(f"{len(pan) - 12:X}{pan}".ljust(32, "0"))


def encipher_format4(key: bytes, pin: str, pan: str, *, fill: bytes | None = None) -> bytes:
    """Format 4: AES(key, AES(key, PIN field) XOR PAN field)."""
    first = ciphers.aes_ecb_encrypt(key, format4_pin_field(pin, fill))
    return ciphers.aes_ecb_encrypt(key, ciphers.xor(first, format4_pan_field(pan)))


def decipher_format4(key: bytes, block: bytes, pan: str) -> str:
    if len(block) != 16:
        raise PinBlockError("a format 4 PIN block is 16 bytes")
    first = ciphers.xor(ciphers.aes_ecb_decrypt(key, block), format4_pan_field(pan))
    nibbles = _split(ciphers.aes_ecb_decrypt(key, first))
    length = nibbles[1]
    if nibbles[0] != 4 or not MIN_PIN <= length <= MAX_PIN:
        raise PinBlockError("PIN block control field or length is wrong (wrong key or PAN?)")
    digits, pad = nibbles[2 : 2 + length], nibbles[2 + length : 16]
    if any(d > 9 for d in digits) or any(n != 0xA for n in pad):
        raise PinBlockError("PIN block digits or fill are wrong (wrong key or PAN?)")
    return "".join(str(d) for d in digits)


def encrypt_pin_block(fmt: int, key: bytes, pin: str, pan: str) -> bytes:
    """The enciphered PIN block: formats 0, 1, 3 under a TDES key, format 4 under an AES key."""
    _check_format(fmt)
    if fmt == 4:
        return encipher_format4(key, pin, pan)
    return ciphers.tdes_ecb_encrypt(key, clear_pin_block(fmt, pin, pan))


def decrypt_pin_block(fmt: int, key: bytes, block: bytes, pan: str) -> str:
    """The PIN inside an enciphered block (used by tests and the bank's side, never the ATM's)."""
    _check_format(fmt)
    if fmt == 4:
        return decipher_format4(key, block, pan)
    if len(block) != 8:
        raise PinBlockError(f"a format {fmt} PIN block is 8 bytes")
    return pin_from_clear_block(fmt, ciphers.tdes_ecb_decrypt(key, block), pan)
