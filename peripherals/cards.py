"""The card wallet: cards loaded from YAML, and their magnetic stripes as ISO/IEC 7813 encodes them.

Tracks 1 and 2 carry sentinels, odd parity per character and an LRC; `read_stripe` decodes them.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from config.card_numbers import luhn_valid, mask_pan
from config.data_files import DataFile, DataFileError, parse_data_file, read_data_file
from peripherals.wire.card_reader import ErrorCode

__all__ = [
    "TrackDamage",
    "TrackReadError",
    "WalletCard",
    "damage_stripe",
    "encode_stripe",
    "load_wallet",
    "luhn_valid",
    "mask_pan",
    "parse_wallet",
    "read_stripe",
]


class TrackReadError(ValueError):
    """A stripe that does not decode; `code` is the reader's read error code ("21".."25")."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class TrackDamage(StrEnum):
    """How a track of a card (or an `unreadable_track` fault) spoils the stripe."""

    NO_START_SENTINEL = "no_start_sentinel"
    NO_END_SENTINEL = "no_end_sentinel"
    PARITY = "parity"
    LRC = "lrc"
    BLANK = "blank"


@dataclass(frozen=True)
class _TrackFormat:
    bits: int  # data bits per character; one odd parity bit follows
    base: int  # ASCII code of character 0
    start: str
    end: str
    max_chars: int  # sentinels and LRC included


TRACK_FORMATS: Mapping[int, _TrackFormat] = {
    1: _TrackFormat(bits=6, base=0x20, start="%", end="?", max_chars=79),
    2: _TrackFormat(bits=4, base=0x30, start=";", end="?", max_chars=40),
}


def _with_parity(code: int, bits: int) -> int:
    ones = bin(code).count("1")
    return code | ((0 if ones % 2 else 1) << bits)


def encode_stripe(text: str, track: int) -> bytes:
    """The characters of one track (no sentinels) as they lie on the stripe: start sentinel,
    data, end sentinel, LRC; one byte per character, data bits low, the odd parity bit above."""
    fmt = TRACK_FORMATS[track]
    full = fmt.start + text + fmt.end
    if len(full) + 1 > fmt.max_chars:
        raise ValueError(f"track {track}: {len(full) + 1} characters, at most {fmt.max_chars}")
    mask = (1 << fmt.bits) - 1
    out = bytearray()
    lrc = 0
    for char in full:
        code = ord(char) - fmt.base
        if not 0 <= code <= mask:
            raise ValueError(f"track {track}: character {char!r} cannot be encoded")
        lrc ^= code
        out.append(_with_parity(code, fmt.bits))
    out.append(_with_parity(lrc, fmt.bits))
    return bytes(out)


def read_stripe(stripe: bytes, track: int) -> str:
    """What a read head decodes from a stripe: the characters between the sentinels.

    Raises TrackReadError with the reader's error code: no data, no start sentinel, parity,
    no end sentinel, LRC. Leading zero bits (clocking) are skipped.
    """
    fmt = TRACK_FORMATS[track]
    mask = (1 << fmt.bits) - 1
    limit = 1 << (fmt.bits + 1)
    codes = stripe.lstrip(b"\x00")
    if not codes:
        raise TrackReadError(ErrorCode.NO_DATA, f"track {track}: no data")

    def parity_ok(code: int) -> bool:
        return code < limit and bin(code).count("1") % 2 == 1

    start, end = ord(fmt.start) - fmt.base, ord(fmt.end) - fmt.base
    if not parity_ok(codes[0]) or codes[0] & mask != start:
        raise TrackReadError(ErrorCode.NO_START_SENTINEL, f"track {track}: no start sentinel")
    lrc = start
    chars: list[str] = []
    for index in range(1, len(codes)):
        code = codes[index]
        if not parity_ok(code):
            raise TrackReadError(ErrorCode.PARITY, f"track {track}: parity error at {index}")
        data = code & mask
        lrc ^= data
        if data == end:
            break
        chars.append(chr(data + fmt.base))
    else:
        raise TrackReadError(ErrorCode.NO_END_SENTINEL, f"track {track}: no end sentinel")
    check = codes[index + 1] if index + 1 < len(codes) else None
    if check is None or not parity_ok(check) or check & mask != lrc:
        raise TrackReadError(ErrorCode.LRC, f"track {track}: LRC does not match")
    return "".join(chars)


def damage_stripe(stripe: bytes, damage: TrackDamage, track: int) -> bytes:
    """The stripe spoilt the way `damage` says, so that a read fails with the matching code."""
    bits = TRACK_FORMATS[track].bits
    if damage is TrackDamage.BLANK or len(stripe) < 4:
        return b""
    if damage is TrackDamage.NO_START_SENTINEL:
        return bytes((_with_parity(0, bits),)) + stripe[1:]
    if damage is TrackDamage.NO_END_SENTINEL:
        return stripe[:-2]
    if damage is TrackDamage.PARITY:
        middle = len(stripe) // 2
        return stripe[:middle] + bytes((stripe[middle] ^ 1,)) + stripe[middle + 1 :]
    lrc = stripe[-1] & ((1 << bits) - 1)
    return stripe[:-1] + bytes((_with_parity(lrc ^ 1, bits),))


@dataclass(frozen=True)
class WalletCard:
    """One card of the wallet. Identifiers are strings; the PAN stays out of repr."""

    card_id: str
    pan: str = field(repr=False)
    name: str
    expiry: str  # YYMM
    service_code: str
    discretionary: str = ""
    label: str = ""
    damaged_track: int | None = None
    damage: TrackDamage = TrackDamage.PARITY

    @property
    def masked_pan(self) -> str:
        return mask_pan(self.pan)

    def track_text(self, track: int) -> str | None:
        """The track's characters without sentinels; None for a track the card does not have."""
        tail = f"{self.expiry}{self.service_code}{self.discretionary}"
        if track == 1:
            return f"B{self.pan}^{self.name}^{tail}"
        if track == 2:
            return f"{self.pan}={tail}"
        return None

    def stripe(self, track: int) -> bytes:
        """The track as it lies on the card (damaged if the wallet says so); b"" if absent."""
        text = self.track_text(track)
        if text is None:
            return b""
        encoded = encode_stripe(text, track)
        if track == self.damaged_track:
            return damage_stripe(encoded, self.damage, track)
        return encoded

    def __str__(self) -> str:
        return f"{self.card_id} ({self.label or self.name}, {self.masked_pan})"


# ----- loading --------------------------------------------------------------------------------

CARD_KEYS = frozenset(
    {"pan", "name", "expiry", "service_code", "discretionary", "label", "damaged_track", "damage"}
)
REQUIRED_KEYS = ("pan", "name", "expiry", "service_code")
CARD_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
NAME = re.compile(r"[A-Z0-9 /.'-]{2,26}")


class _WalletChecker:
    """Reads one wallet document, raising DataFileError at the first problem."""

    def __init__(self, file: DataFile) -> None:
        self.file = file

    def fail(self, card_id: str, key: str | None, reason: str) -> DataFileError:
        return self.file.error(
            ("cards", card_id) if key is None else ("cards", card_id, key), reason
        )

    def string(self, card_id: str, card: Mapping[str, Any], key: str) -> str:
        value = card[key]
        if not isinstance(value, str):
            raise self.fail(
                card_id, key, f"must be a quoted string, got {type(value).__name__} {value!r}"
            )
        return value

    def card(self, card_id: str, entry: Any) -> WalletCard:
        fail = self.fail
        if not isinstance(entry, Mapping):
            raise fail(card_id, None, "expected a mapping of card fields")
        unknown = sorted(set(entry) - CARD_KEYS)
        if unknown:
            raise fail(card_id, unknown[0], f"unknown key; known: {', '.join(sorted(CARD_KEYS))}")
        for key in REQUIRED_KEYS:
            if key not in entry:
                raise fail(card_id, key, "missing")
        pan = self.string(card_id, entry, "pan")
        if not (pan.isascii() and pan.isdigit() and 12 <= len(pan) <= 19):
            raise fail(card_id, "pan", "expected 12 to 19 digits")
        if not luhn_valid(pan):
            raise fail(card_id, "pan", f"{mask_pan(pan)} fails the Luhn check")
        name = self.string(card_id, entry, "name").upper()
        if not NAME.fullmatch(name):
            raise fail(
                card_id,
                "name",
                "expected 2 to 26 letters, digits, spaces or / . ' - (as embossed: SURNAME/FIRST)",
            )
        expiry = self.string(card_id, entry, "expiry")
        if not (len(expiry) == 4 and expiry.isascii() and expiry.isdigit()):
            raise fail(card_id, "expiry", "expected YYMM, 4 digits")
        if not 1 <= int(expiry[2:]) <= 12:
            raise fail(card_id, "expiry", f"month {expiry[2:]} not in 01..12")
        service_code = self.string(card_id, entry, "service_code")
        if not (len(service_code) == 3 and service_code.isascii() and service_code.isdigit()):
            raise fail(card_id, "service_code", "expected 3 digits")
        discretionary = (
            self.string(card_id, entry, "discretionary") if "discretionary" in entry else ""
        )
        if discretionary and not (discretionary.isascii() and discretionary.isdigit()):
            raise fail(card_id, "discretionary", "expected digits")
        label = self.string(card_id, entry, "label") if "label" in entry else ""
        damaged_track = entry.get("damaged_track")
        if damaged_track is not None and (
            isinstance(damaged_track, bool) or damaged_track not in (1, 2)
        ):
            raise fail(card_id, "damaged_track", f"expected 1 or 2, got {damaged_track!r}")
        damage = TrackDamage.PARITY
        if "damage" in entry:
            raw = self.string(card_id, entry, "damage")
            try:
                damage = TrackDamage(raw)
            except ValueError:
                known = ", ".join(d.value for d in TrackDamage)
                raise fail(card_id, "damage", f"{raw!r} is not one of {known}") from None
        card = WalletCard(
            card_id,
            pan,
            name,
            expiry,
            service_code,
            discretionary,
            label,
            damaged_track,
            damage,
        )
        for track in (1, 2):
            try:
                encode_stripe(card.track_text(track) or "", track)
            except ValueError as err:
                raise fail(card_id, None, str(err)) from err
        return card

    def wallet(self) -> dict[str, WalletCard]:
        data = self.file.data
        if not isinstance(data, Mapping) or set(data) - {"version"} != {"cards"}:
            raise self.file.error(("cards",), "the file must hold one mapping, `cards:`")
        cards = data["cards"]
        if not isinstance(cards, Mapping) or not cards:
            raise self.file.error(("cards",), "expected a mapping of card id to card")
        wallet: dict[str, WalletCard] = {}
        for card_id, entry in cards.items():
            if not isinstance(card_id, str) or not CARD_ID.fullmatch(card_id):
                raise self.fail(str(card_id), None, "card ids are 1 to 32 of a-z, 0-9, - and _")
            wallet[card_id] = self.card(card_id, entry)
        return wallet


def parse_wallet(data: Any, source: str = "<wallet>") -> dict[str, WalletCard]:
    """Cards of a document built in code, {"cards": {id: {...}}}, keyed by card id."""
    return _WalletChecker(DataFile(source, data)).wallet()


def load_wallet(path: Path | str) -> dict[str, WalletCard]:
    """The wallet file's cards keyed by card id ("alice"); DataFileError names the line.

    The same text is not parsed twice: every card reader, simulated ATM and scenario of a
    process reads the same wallet.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return _WalletChecker(read_data_file(path)).wallet()  # read_data_file says why
    return dict(_wallet_of(os.fspath(path), text))


@functools.lru_cache(maxsize=8)
def _wallet_of(path: str, text: str) -> Mapping[str, WalletCard]:
    return _WalletChecker(parse_data_file(text, path)).wallet()
