"""TR-31 (ANSI X9.143) key blocks: version B (TDES key block protection key) and D (AES).

The header travels in clear and is bound to the key by the MAC; the key data is enciphered in CBC
mode with the MAC as IV, under keys derived from the KBPK by CMAC.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from peripherals.pin_crypto import ciphers

HEADER_LENGTH = 16
MAX_BLOCK_LENGTH = 9999


class Tr31Error(ValueError):
    """A key block that is malformed, does not match its KBPK, or fails its MAC."""


@dataclass(frozen=True)
class Tr31Header:
    """The clear header: version, usage (e.g. P0 = PIN encryption), algorithm (T TDES, A AES),
    mode of use (E encrypt, D decrypt, B both, N none), key version, exportability."""

    version: str
    key_usage: str
    algorithm: str
    mode_of_use: str
    key_version: str = "00"
    exportability: str = "N"
    optional_blocks: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        fields = (self.version, self.key_usage, self.algorithm, self.mode_of_use)
        sizes = (1, 2, 1, 1)
        for value, size in zip(fields, sizes, strict=True):
            if len(value) != size or not (value.isascii() and value.isalnum()):
                raise Tr31Error(f"TR-31 header field {value!r} is not {size} alphanumerics")
        if len(self.key_version) != 2 or len(self.exportability) != 1:
            raise Tr31Error("TR-31 key version is 2 characters and exportability 1")
        for block_id, data in self.optional_blocks:
            if len(block_id) != 2 or not data.isascii() or len(data) + 4 > 0xFF:
                raise Tr31Error(f"TR-31 optional block {block_id!r} cannot be encoded")

    def encode(self, total_length: int, padded_blocks: tuple[tuple[str, str], ...]) -> str:
        blocks = "".join(f"{bid}{len(data) + 4:02X}{data}" for bid, data in padded_blocks)
        return (
            f"{self.version}{total_length:04d}{self.key_usage}{self.algorithm}"
            f"{self.mode_of_use}{self.key_version}{self.exportability}"
            f"{len(padded_blocks):02d}00{blocks}"
        )


def _block_size(version: str) -> int:
    if version == "B":
        return 8
    if version == "D":
        return 16
    raise Tr31Error(f"TR-31 key block version {version!r} is not supported (B or D)")


def _mac_length(version: str) -> int:
    return 8 if version == "B" else 16


def _derive(version: str, kbpk: bytes) -> tuple[bytes, bytes]:
    """The key block encryption key and authentication key, from the KBPK by CMAC."""
    if version == "B":
        if len(kbpk) not in (16, 24):
            raise Tr31Error("a version B key block needs a double or triple length TDES KBPK")
        algorithm, bits, calls = (0x0000, 0x0080, 2) if len(kbpk) == 16 else (0x0001, 0x00C0, 3)
        mac = ciphers.tdes_cmac
    else:
        if len(kbpk) not in (16, 24, 32):
            raise Tr31Error("a version D key block needs an AES-128, -192 or -256 KBPK")
        algorithm = {16: 0x0002, 24: 0x0003, 32: 0x0004}[len(kbpk)]
        bits = len(kbpk) * 8
        calls = 1 if len(kbpk) == 16 else 2
        mac = ciphers.aes_cmac
    keys = []
    for usage in (0x0000, 0x0001):
        material = b"".join(
            mac(
                kbpk,
                bytes([counter])
                + usage.to_bytes(2, "big")
                + b"\x00"
                + algorithm.to_bytes(2, "big")
                + bits.to_bytes(2, "big"),
            )
            for counter in range(1, calls + 1)
        )
        keys.append(material[: len(kbpk)])
    return keys[0], keys[1]


def _authenticate(version: str, kbak: bytes, header: str, clear_data: bytes) -> bytes:
    data = header.encode("ascii") + clear_data
    return ciphers.tdes_cmac(kbak, data) if version == "B" else ciphers.aes_cmac(kbak, data)


def _pad_blocks(
    blocks: tuple[tuple[str, str], ...], block_size: int
) -> tuple[tuple[str, str], ...]:
    """Add a PB block so that the whole header is a whole number of cipher blocks."""
    used = sum(len(data) + 4 for _, data in blocks)
    if not blocks or used % block_size == 0:
        return blocks
    missing = -used % block_size
    if missing < 4:
        missing += block_size
    return (*blocks, ("PB", "0" * (missing - 4)))


def wrap(
    kbpk: bytes, header: Tr31Header, key: bytes, *, masked_key_length: int | None = None
) -> str:
    """The key block of `key` under `kbpk`; `masked_key_length` pads to hide the key's length."""
    size = _block_size(header.version)
    blocks = _pad_blocks(header.optional_blocks, size)
    hidden = max(masked_key_length or 0, len(key)) - len(key)
    pad = -(2 + len(key) + hidden) % size + hidden
    clear_data = (len(key) * 8).to_bytes(2, "big") + key + secrets.token_bytes(pad)
    mac_length = _mac_length(header.version)
    total = HEADER_LENGTH + sum(len(d) + 4 for _, d in blocks) + 2 * (len(clear_data) + mac_length)
    if total > MAX_BLOCK_LENGTH:
        raise Tr31Error(f"a key block of {total} characters is too long")
    text = header.encode(total, blocks)
    kbek, kbak = _derive(header.version, kbpk)
    mac = _authenticate(header.version, kbak, text, clear_data)
    if header.version == "B":
        secret = ciphers.tdes_cbc_encrypt(kbek, mac, clear_data)
    else:
        secret = ciphers.aes_cbc_encrypt(kbek, mac, clear_data)
    return text + secret.hex().upper() + mac.hex().upper()


def parse_header(block: str) -> tuple[Tr31Header, int]:
    """The header of a key block and the number of characters it takes (with optional blocks)."""
    if not block.isascii() or len(block) < HEADER_LENGTH:
        raise Tr31Error("a TR-31 key block is ASCII and at least 16 characters")
    if not block[1:5].isdigit() or int(block[1:5]) != len(block):
        raise Tr31Error(f"TR-31 length field {block[1:5]!r} does not match {len(block)}")
    if not block[12:14].isdigit():
        raise Tr31Error(f"TR-31 optional block count {block[12:14]!r} is not 2 digits")
    position = HEADER_LENGTH
    blocks: list[tuple[str, str]] = []
    for _ in range(int(block[12:14])):
        block_id, length_hex = block[position : position + 2], block[position + 2 : position + 4]
        try:
            length = int(length_hex, 16)
            start = position + 4
            if length == 0:  # extended length: 2 hex digits say how many hex digits follow
                digits = int(block[start : start + 2], 16)
                length = int(block[start + 2 : start + 2 + digits], 16)
                start += 2 + digits
        except ValueError:
            raise Tr31Error(f"TR-31 optional block {block_id!r} has a bad length") from None
        end = position + length
        if length < 4 or end > len(block) or start > end:
            raise Tr31Error(f"TR-31 optional block {block_id!r} overruns the key block")
        blocks.append((block_id, block[start:end]))
        position = end
    header = Tr31Header(
        version=block[0],
        key_usage=block[5:7],
        algorithm=block[7],
        mode_of_use=block[8],
        key_version=block[9:11],
        exportability=block[11],
        optional_blocks=tuple(blocks),
    )
    return header, position


def unwrap(kbpk: bytes, block: str) -> tuple[Tr31Header, bytes]:
    """The header and the clear key of a key block; Tr31Error if it fails any check."""
    header, header_length = parse_header(block)
    size = _block_size(header.version)
    mac_length = _mac_length(header.version)
    if header_length % size:
        raise Tr31Error("TR-31 header is not a whole number of cipher blocks")
    body = block[header_length:]
    try:
        raw = bytes.fromhex(body)
    except ValueError:
        raise Tr31Error("TR-31 key data and MAC must be hexadecimal") from None
    secret, mac = raw[:-mac_length], raw[-mac_length:]
    if len(body) % 2 or len(secret) < size or len(secret) % size:
        raise Tr31Error("TR-31 key data is not a whole number of cipher blocks")
    kbek, kbak = _derive(header.version, kbpk)
    if header.version == "B":
        clear_data = ciphers.tdes_cbc_decrypt(kbek, mac, secret)
    else:
        clear_data = ciphers.aes_cbc_decrypt(kbek, mac, secret)
    expected = _authenticate(header.version, kbak, block[:header_length], clear_data)
    if not hmac.compare_digest(expected, mac):
        raise Tr31Error("TR-31 MAC does not verify: wrong KBPK or altered key block")
    bits = int.from_bytes(clear_data[:2], "big")
    if bits % 8 or bits // 8 > len(clear_data) - 2 or bits == 0:
        raise Tr31Error("TR-31 key length field is invalid")
    return header, clear_data[2 : 2 + bits // 8]
