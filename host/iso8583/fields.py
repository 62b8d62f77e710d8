"""Formats of single fields shared by ATM and host: times, amounts, security control, original
data elements, balances, mini-statements, track 2."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from host.iso8583.errors import MessageFormatError
from host.iso8583.table import field_table

BALANCE_WIDTH = 20
STATEMENT_LINE_WIDTH = 60
STATEMENT_DESCRIPTION_WIDTH = 20

# --- field formats shared by both sides -----------------------------------------------------


def transmission_time(moment: dt.datetime) -> str:
    """Field 7: MMDDhhmmss in UTC."""
    return moment.astimezone(dt.UTC).strftime("%m%d%H%M%S")


def parse_transmission_time(text: str, now: dt.datetime) -> dt.datetime:
    """Field 7 back to an aware UTC datetime, taking the year that puts it nearest to now."""
    try:
        month, day = int(text[0:2]), int(text[2:4])
        hour, minute, second = int(text[4:6]), int(text[6:8]), int(text[8:10])
        candidates = []
        for year in (now.year - 1, now.year, now.year + 1):
            try:
                candidates.append(
                    dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
                )
            except ValueError:
                continue  # 29 February in a year without it
    except ValueError as err:
        raise MessageFormatError(f"field 7 {text!r} is not MMDDhhmmss") from err
    if len(text) != 10 or not candidates:
        raise MessageFormatError(f"field 7 {text!r} is not MMDDhhmmss")
    return min(candidates, key=lambda c: abs((c - now).total_seconds()))


def local_time_fields(moment: dt.datetime) -> dict[str, str]:
    """Fields 12 (hhmmss) and 13 (MMDD) of the terminal's local time."""
    return {"12": moment.strftime("%H%M%S"), "13": moment.strftime("%m%d")}


def amount_field(cents: int) -> str:
    if not 0 <= cents <= 999_999_999_999:
        raise MessageFormatError(f"amount {cents} does not fit 12 digits")
    return f"{cents:012d}"


class KeyManagement(IntEnum):
    """Field 53 positions 3-4: which key enciphered the PIN block."""

    FIXED_KEY = 0  # the terminal's PIN key, loaded under its master key
    DUKPT_TDES = 1  # ANSI X9.24-1; the KSN (10 bytes) travels in field 120 (121 for a new PIN)
    DUKPT_AES = 2  # ANSI X9.24-3, AES-128; the KSN is 12 bytes


@dataclass(frozen=True)
class SecurityControl:
    pin_block_format: int
    key_management: KeyManagement


def security_control(
    pin_block_format: int, key_management: KeyManagement = KeyManagement.FIXED_KEY
) -> str:
    """Field 53: PIN block format (2 digits), key management (2 digits), then 12 zeros."""
    if not 0 <= pin_block_format <= 99:
        raise MessageFormatError(f"PIN block format {pin_block_format} does not fit 2 digits")
    return f"{pin_block_format:02d}{key_management.value:02d}" + "0" * 12


def parse_security_control(text: str) -> SecurityControl:
    if len(text) != 16 or not text.isascii() or not text.isdigit():
        raise MessageFormatError("field 53 must be 16 digits: PIN block format, key management")
    try:
        management = KeyManagement(int(text[2:4]))
    except ValueError as err:
        raise MessageFormatError(
            f"field 53: key management {text[2:4]!r} is not 00, 01 or 02"
        ) from err
    return SecurityControl(int(text[:2]), management)


def original_data_elements(mti: str, stan: str, transmitted: str) -> str:
    """Field 90: original MTI, STAN, transmission time, then two zero institution ids."""
    return mti + stan + transmitted + "0" * 22


@dataclass(frozen=True)
class OriginalData:
    mti: str
    stan: str
    transmitted: str


def parse_original_data_elements(text: str) -> OriginalData:
    if len(text) != 42 or not text.isdigit():
        raise MessageFormatError("field 90 must be 42 digits")
    return OriginalData(text[0:4], text[4:10], text[10:20])


def replacement_amounts(actual: int) -> str:
    """Field 95: actual amount, settlement amount 0, both fees C00000000."""
    return amount_field(actual) + "0" * 12 + "C00000000" * 2


def parse_replacement_amounts(text: str) -> int:
    if len(text) != 42 or not text[:12].isdigit():
        raise MessageFormatError("field 95 must start with a 12-digit amount")
    return int(text[:12])


@dataclass(frozen=True)
class Balance:
    account_type: str  # field 3 account type code, "00" when not given
    amount_type: str  # "01" ledger, "02" available
    currency: str
    amount: int  # cents, may be negative


LEDGER = "01"
AVAILABLE = "02"


def _signed(cents: int) -> str:
    if abs(cents) > 999_999_999_999:
        raise MessageFormatError(f"amount {cents} does not fit 12 digits")
    return ("C" if cents >= 0 else "D") + f"{abs(cents):012d}"


def encode_balances(balances: Sequence[Balance]) -> str:
    """Field 54: 20 characters each: account type, amount type, currency, C/D, 12 digits."""
    return "".join(
        f"{b.account_type}{b.amount_type}{b.currency}{_signed(b.amount)}" for b in balances
    )


def decode_balances(text: str) -> list[Balance]:
    if len(text) % BALANCE_WIDTH:
        raise MessageFormatError(f"field 54 is not a multiple of {BALANCE_WIDTH} characters")
    balances = []
    for i in range(0, len(text), BALANCE_WIDTH):
        part = text[i : i + BALANCE_WIDTH]
        sign, digits = part[7], part[8:]
        if sign not in "CD" or not digits.isdigit() or not part[:7].isdigit():
            raise MessageFormatError(f"field 54 entry {part!r} is malformed")
        amount = int(digits) if sign == "C" else -int(digits)
        balances.append(Balance(part[0:2], part[2:4], part[4:7], amount))
    return balances


@dataclass(frozen=True)
class StatementEntry:
    posted_at: dt.datetime  # UTC
    description: str
    amount: int  # cents, negative for debits
    balance_after: int


def encode_statement(entries: Sequence[StatementEntry]) -> str:
    """Field 62: 60 characters a line: YYYYMMDDhhmmss UTC, C/D amount, C/D balance, text(20)."""
    lines = []
    for e in entries:
        text = e.description.encode("ascii", "replace").decode("ascii").replace("\t", " ")
        text = "".join(c if " " <= c <= "~" else "?" for c in text)
        posted = e.posted_at.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S")
        line = posted + _signed(e.amount) + _signed(e.balance_after)
        lines.append(line + text[:STATEMENT_DESCRIPTION_WIDTH].ljust(STATEMENT_DESCRIPTION_WIDTH))
    return "".join(lines)


def _parse_signed(text: str) -> int:
    if text[0] not in "CD" or not text[1:].isdigit():
        raise MessageFormatError(f"field 62 amount {text!r} is malformed")
    return int(text[1:]) if text[0] == "C" else -int(text[1:])


def decode_statement(text: str) -> list[StatementEntry]:
    if len(text) % STATEMENT_LINE_WIDTH:
        raise MessageFormatError(f"field 62 is not a multiple of {STATEMENT_LINE_WIDTH} characters")
    entries = []
    for i in range(0, len(text), STATEMENT_LINE_WIDTH):
        line = text[i : i + STATEMENT_LINE_WIDTH]
        try:
            posted = dt.datetime.strptime(line[:14], "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
        except ValueError as err:
            raise MessageFormatError(f"field 62 date {line[:14]!r} is malformed") from err
        entries.append(
            StatementEntry(
                posted_at=posted,
                amount=_parse_signed(line[14:27]),
                balance_after=_parse_signed(line[27:40]),
                description=line[40:].rstrip(),
            )
        )
    return entries


MAX_STATEMENT_LINES = 960 // STATEMENT_LINE_WIDTH


def track2(pan: str, expiry: str, service_code: str = "") -> str:
    """Field 35: PAN '=' YYMM service code (no discretionary data)."""
    return f"{pan}={expiry}{service_code}"


def parse_track2(text: str) -> tuple[str, str]:
    """PAN and YYMM expiry from field 35."""
    pan, sep, rest = text.partition("=")
    if not sep or not pan or len(rest) < 4 or not pan.isdigit():
        raise MessageFormatError("field 35 is not PAN=YYMM...")
    return pan, rest[:4]


def response_mti(request_mti: str) -> str:
    rule = field_table().messages.get(request_mti)
    if rule is None or rule.response is None:
        raise MessageFormatError(f"{request_mti!r} is not a request type")
    return rule.response
