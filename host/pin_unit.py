"""The host's PIN verification unit: deciphers ISO 9564 PIN blocks (format 0 under TDES, format 4
under AES; fixed terminal keys or DUKPT) and checks the PIN against its bcrypt hash. The clear
PIN never leaves this module.

A customer session sends the same PIN block with each of its requests (verification, then the
transaction): VerifiedPins remembers, for the session timeout, which blocks bcrypt already found
right, so one session costs one bcrypt. It keeps no PIN and no PIN block, only a keyed digest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import threading
from collections import OrderedDict
from dataclasses import dataclass

import bcrypt
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from config.settings import Settings
from host import dukpt
from host.crypto_keys import TerminalKeys, derive_key

SUPPORTED_FORMATS = (0, 4)
MAX_REMEMBERED_CARDS = 10_000  # least recently verified cards are forgotten first
MAX_BLOCKS_PER_CARD = 8  # e.g. one block per terminal the card was used at lately


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


def _pin_under(pin_key: bytes, block: bytes, block_format: int, pan: str) -> str:
    if block_format == 0:
        return _format0_pin(pin_key, block, pan)
    if block_format == 4:
        return _format4_pin(pin_key, block, pan)
    raise PinBlockError(f"PIN block format {block_format} is not supported (only 0 and 4)")


def _extract_pin(
    keys: TerminalKeys, block: bytes, block_format: int, pan: str, ksn: bytes | None
) -> str:
    return _pin_under(_pin_key(keys, block_format, ksn), block, block_format, pan)


class _BcryptCounter:
    """How many bcrypt PIN checks this process ran (a figure for tests and benchmarks)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def add(self) -> None:
        with self._lock:
            self._count += 1

    def value(self) -> int:
        with self._lock:
            return self._count


_BCRYPT_CHECKS = _BcryptCounter()


def bcrypt_checks() -> int:
    """The number of bcrypt PIN checks this process has run so far."""
    return _BCRYPT_CHECKS.value()


@dataclass(frozen=True)
class _Verified:
    digest: bytes  # HMAC of card, key, format, KSN and block: never the block itself
    pin_hash: bytes  # the hash the block was checked against: a PIN change makes it stale
    expires_at: dt.datetime


class VerifiedPins:
    """PIN blocks bcrypt found right lately, per card, for `lifetime` after that check.

    Only a keyed digest (HMAC-SHA256 under a key derived from SECRET_KEY) of the card, the key
    that enciphered the block, the format, the KSN and the block is kept, with the stored hash
    it matched; digests and hashes are compared in constant time. Bounded (MAX_REMEMBERED_CARDS
    cards, MAX_BLOCKS_PER_CARD blocks each) and thread-safe. Each host process has its own: a
    block verified by another process costs one more bcrypt here, nothing else.

    The caller decides when memory may be trusted: it forgets a card on a wrong PIN, a lock, a
    pending failed-PIN count and a PIN change, and asks only once the card's tries allow a check.
    """

    def __init__(
        self,
        settings: Settings,
        lifetime: dt.timedelta,
        *,
        max_cards: int = MAX_REMEMBERED_CARDS,
        max_per_card: int = MAX_BLOCKS_PER_CARD,
    ) -> None:
        self._key = derive_key(settings, "verified-pin-blocks")
        self.lifetime = lifetime
        self._max_cards = max_cards
        self._max_per_card = max_per_card
        self._lock = threading.Lock()
        self._cards: OrderedDict[int, list[_Verified]] = OrderedDict()

    def __repr__(self) -> str:
        return f"VerifiedPins(<{len(self)} cards>)"

    def __len__(self) -> int:
        with self._lock:
            return len(self._cards)

    def digest(
        self, card_id: int, pin_key: bytes, block_format: int, ksn: bytes | None, block: bytes
    ) -> bytes:
        parts = (
            str(card_id).encode("ascii"),
            pin_key,
            bytes([block_format]),
            b"fixed" if ksn is None else b"ksn:" + ksn,
            block,
        )
        length_prefixed = b"".join(len(p).to_bytes(2, "big") + p for p in parts)
        return hmac.new(self._key, length_prefixed, hashlib.sha256).digest()

    def recall(self, card_id: int, digest: bytes, pin_hash: str, now: dt.datetime) -> bool:
        """True when this digest was verified right against pin_hash and has not expired."""
        stored_hash = pin_hash.encode("ascii", "replace")
        with self._lock:
            entries = self._cards.get(card_id)
            if not entries:
                return False
            live = [e for e in entries if now < e.expires_at]
            if len(live) != len(entries):
                if live:
                    self._cards[card_id] = live
                else:
                    del self._cards[card_id]
            found = False
            for entry in live:  # every entry compared: the time taken tells nothing
                same = hmac.compare_digest(entry.digest, digest)
                same &= hmac.compare_digest(entry.pin_hash, stored_hash)
                found |= same
            return found

    def remember(self, card_id: int, digest: bytes, pin_hash: str, now: dt.datetime) -> None:
        entry = _Verified(digest, pin_hash.encode("ascii", "replace"), now + self.lifetime)
        with self._lock:
            entries = [
                e
                for e in self._cards.pop(card_id, [])
                if now < e.expires_at and not hmac.compare_digest(e.digest, digest)
            ]
            entries.append(entry)
            self._cards[card_id] = entries[-self._max_per_card :]
            while len(self._cards) > self._max_cards:
                self._cards.popitem(last=False)

    def forget(self, card_id: int) -> None:
        with self._lock:
            self._cards.pop(card_id, None)

    def clear(self) -> None:
        with self._lock:
            self._cards.clear()


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
    *,
    memory: VerifiedPins | None = None,
    card_id: int | None = None,
    now: dt.datetime | None = None,
) -> bool:
    """True when the PIN block carries the PIN whose hash is pin_hash.

    With `memory` (and the card's id and the time), a block this card already passed with the
    same key, KSN and stored hash within memory's lifetime is taken without bcrypt, and a block
    that passes bcrypt is remembered. The block is deciphered in every case.

    Raises PinBlockError when the block does not decipher to a well-formed PIN, MissingKeyError
    when the terminal's DUKPT key is unknown.
    """
    if block_format not in SUPPORTED_FORMATS:
        raise PinBlockError(f"PIN block format {block_format} is not supported (only 0 and 4)")
    pin_key = _pin_key(keys, block_format, ksn)
    pin = _pin_under(pin_key, block, block_format, pan)
    digest = b""
    if memory is not None and card_id is not None and now is not None:
        digest = memory.digest(card_id, pin_key, block_format, ksn, block)
        if memory.recall(card_id, digest, pin_hash, now):
            return True
    _BCRYPT_CHECKS.add()
    try:
        correct = bcrypt.checkpw(_secret(settings, pin), pin_hash.encode("ascii"))
    except ValueError as err:  # a damaged stored hash
        raise PinUnitError("the stored PIN hash is unreadable") from err
    if digest and memory is not None and card_id is not None and now is not None:
        if correct:
            memory.remember(card_id, digest, pin_hash, now)
        else:
            memory.forget(card_id)
    return correct


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
