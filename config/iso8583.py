"""The ISO 8583 protocol shared by the ATM and the bank host: field table, framing, codec, MAC.

Both sides import this module; the field table itself is data in config/iso8583_fields.yaml.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import hmac
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import iso8583
import iso8583.specs
import yaml
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

FIELD_TABLE_PATH = Path(__file__).with_name("iso8583_fields.yaml")
MAC_FIELD = "128"
MAC_LENGTH = 8
LENGTH_PREFIX = 2
BALANCE_WIDTH = 20
STATEMENT_LINE_WIDTH = 60
STATEMENT_DESCRIPTION_WIDTH = 20

_CONTENT = {
    "n": re.compile(r"[0-9]*"),
    "an": re.compile(r"[0-9A-Za-z]*"),
    "ans": re.compile(r"[\x20-\x7e]*"),
    "z": re.compile(r"[0-9=]*"),
}


class Iso8583Error(ValueError):
    """An ISO 8583 message could not be used."""


class MessageFormatError(Iso8583Error):
    """Bytes that are not a well-formed message of the field table (or a bad field table)."""


class MacError(Iso8583Error):
    """The message carries no MAC, or a MAC that does not match the terminal's key."""


@dataclass(frozen=True)
class MessageRule:
    mti: str
    name: str
    required: frozenset[str]
    optional: frozenset[str]
    one_of: tuple[frozenset[str], ...]
    response: str | None

    @property
    def allowed(self) -> frozenset[str]:
        groups: frozenset[str] = frozenset().union(*self.one_of)
        return self.required | self.optional | groups


@dataclass(frozen=True)
class ProcessingCode:
    code: str
    kind: str
    message: str


@dataclass(frozen=True)
class FieldTable:
    """The loaded field table: a pyiso8583 spec plus the rules of each message type."""

    spec: Mapping[str, Mapping[str, Any]]
    content: Mapping[str, str]
    messages: Mapping[str, MessageRule]
    processing_codes: Mapping[str, ProcessingCode]
    account_types: Mapping[str, str]
    network_codes: Mapping[str, str]
    max_message_bytes: int

    def processing_code_for(self, kind: str) -> str:
        for code in self.processing_codes.values():
            if code.kind == kind:
                return code.code
        raise MessageFormatError(f"no processing code for {kind!r} in the field table")

    def account_type_code(self, account_type: str) -> str:
        for code, name in self.account_types.items():
            if name == account_type:
                return code
        raise MessageFormatError(f"unknown account type {account_type!r}")

    def network_code_for(self, kind: str) -> str:
        for code, name in self.network_codes.items():
            if name == kind:
                return code
        raise MessageFormatError(f"no network management code for {kind!r}")


@dataclass(frozen=True)
class Message:
    """One ISO 8583 message: text fields as str, binary fields (content b) as bytes."""

    mti: str
    fields: Mapping[str, str | bytes] = field(default_factory=dict)

    def text(self, number: str) -> str | None:
        value = self.fields.get(number)
        if value is None:
            return None
        if not isinstance(value, str):
            raise MessageFormatError(f"field {number} is binary, not text")
        return value

    def binary(self, number: str) -> bytes | None:
        value = self.fields.get(number)
        if value is None:
            return None
        if not isinstance(value, bytes):
            raise MessageFormatError(f"field {number} is text, not binary")
        return value

    def __contains__(self, number: object) -> bool:
        return number in self.fields

    def __repr__(self) -> str:
        # A message reaches a log or a test report through repr: card numbers are masked there
        # and PIN blocks never shown.
        shown = {number: _safe_field(number, value) for number, value in self.fields.items()}
        return f"Message({self.mti!r}, {shown!r})"


SECRET_FIELDS = frozenset({"52", "110", "111"})  # PIN blocks


def _safe_field(number: str, value: str | bytes) -> str | bytes:
    if number in SECRET_FIELDS:
        return "<PIN block>"
    if number == "2" and isinstance(value, str):
        return mask_pan(value)
    if number == "35" and isinstance(value, str):
        return mask_pan(value.split("=", 1)[0]) + "=<track data>"
    return value


def _strings(where: str, value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MessageFormatError(f"{where}: expected a list of quoted field numbers")
    return list(value)


def _build_table(data: object, source: Path) -> FieldTable:
    if not isinstance(data, dict):
        raise MessageFormatError(f"{source}: expected a mapping")
    base = getattr(iso8583.specs, str(data.get("base", "")), None)
    if not isinstance(base, dict):
        raise MessageFormatError(f"{source}: base must name a pyiso8583 spec")
    spec: dict[str, dict[str, Any]] = {
        k: dict(v) for k, v in copy.deepcopy(base).items() if k in ("h", "t", "p", "1")
    }
    content: dict[str, str] = {}
    for number, definition in dict(data.get("fields") or {}).items():
        if not isinstance(number, str) or not isinstance(definition, dict):
            raise MessageFormatError(f"{source}: field {number!r}: quote the number, give a map")
        kind = definition.get("content")
        if kind not in (*_CONTENT, "b"):
            raise MessageFormatError(f"{source}: field {number}: unknown content {kind!r}")
        entry = dict(base[number])
        entry.update({k: v for k, v in definition.items() if k != "content"})
        spec[number] = entry
        content[number] = kind
    messages: dict[str, MessageRule] = {}
    for mti, rule in dict(data.get("messages") or {}).items():
        where = f"{source}: message {mti}"
        if not isinstance(mti, str) or not isinstance(rule, dict):
            raise MessageFormatError(f"{where}: quote the type, give a map")
        groups = tuple(frozenset(_strings(where, g)) for g in rule.get("one_of", []))
        messages[mti] = MessageRule(
            mti=mti,
            name=str(rule.get("name", mti)),
            required=frozenset(_strings(where, rule.get("required", []))),
            optional=frozenset(_strings(where, rule.get("optional", []))),
            one_of=groups,
            response=rule.get("response"),
        )
        unknown = messages[mti].allowed - set(content)
        if unknown:
            raise MessageFormatError(f"{where}: field {min(unknown)} is not in the field table")
    codes = {
        str(code): ProcessingCode(str(code), str(v["kind"]), str(v["message"]))
        for code, v in dict(data.get("processing_codes") or {}).items()
    }
    frame = dict(data.get("frame") or {})
    if frame.get("length_prefix_bytes") != LENGTH_PREFIX:
        raise MessageFormatError(f"{source}: only a {LENGTH_PREFIX}-byte length prefix is built")
    return FieldTable(
        spec=spec,
        content=content,
        messages=messages,
        processing_codes=codes,
        account_types={str(k): str(v) for k, v in dict(data.get("account_types") or {}).items()},
        network_codes={str(k): str(v) for k, v in dict(data.get("network_codes") or {}).items()},
        max_message_bytes=int(frame.get("max_message_bytes", 2048)),
    )


def load_field_table(path: Path = FIELD_TABLE_PATH) -> FieldTable:
    """Read and check a field table YAML file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise MessageFormatError(f"{path}: cannot read the field table ({err})") from err
    return _build_table(data, path)


@functools.cache
def field_table() -> FieldTable:
    """The product's field table, read once on first use."""
    return load_field_table()


# --- message codec -------------------------------------------------------------------------


def check_message(message: Message, table: FieldTable) -> None:
    """Check the fields present against the message type's rule and each field's content."""
    rule = table.messages.get(message.mti)
    if rule is None:
        raise MessageFormatError(f"unknown message type {message.mti!r}")
    present = set(message.fields)
    missing = rule.required - present
    if missing:
        raise MessageFormatError(f"{message.mti}: field {_first(missing)} is missing")
    extra = present - rule.allowed
    if extra:
        raise MessageFormatError(f"{message.mti}: field {_first(extra)} is not allowed")
    for group in rule.one_of:
        if len(group & present) != 1:
            fields_text = " or ".join(sorted(group, key=int))
            raise MessageFormatError(f"{message.mti}: exactly one of fields {fields_text}")
    for number, value in message.fields.items():
        kind = table.content[number]
        if kind == "b":
            if not isinstance(value, bytes):
                raise MessageFormatError(f"field {number}: expected bytes")
        elif not isinstance(value, str) or not _CONTENT[kind].fullmatch(value):
            raise MessageFormatError(f"field {number}: expected {kind} characters")


def field_is_valid(table: FieldTable, number: str, value: str | bytes) -> bool:
    """Whether a value fits a field's content and length (to copy it into an answer safely)."""
    kind = table.content.get(number)
    spec = table.spec.get(number)
    if kind is None or spec is None:
        return False
    if kind == "b":
        if not isinstance(value, bytes):
            return False
    elif not isinstance(value, str) or not _CONTENT[kind].fullmatch(value):
        return False
    max_len = int(spec["max_len"])
    return len(value) == max_len if spec["len_type"] == 0 else 0 < len(value) <= max_len


def _first(numbers: Iterable[str]) -> str:
    return min(numbers, key=int)


def encode_message(
    message: Message, mac_key: bytes | None, table: FieldTable | None = None
) -> bytes:
    """Encode a message (without length prefix); with a key, field 128 gets the MAC."""
    table = table or field_table()
    fields = dict(message.fields)
    if mac_key is not None:
        fields[MAC_FIELD] = bytes(MAC_LENGTH)
    else:
        fields.pop(MAC_FIELD, None)
    message = Message(message.mti, fields)
    check_message(message, table)
    doc: dict[str, str] = {"t": message.mti}
    for number, value in fields.items():
        doc[number] = value.hex().upper() if isinstance(value, bytes) else value
    try:
        raw, _ = iso8583.encode(doc, table.spec)
    except iso8583.EncodeError as err:
        raise MessageFormatError(f"cannot encode {message.mti}: {err}") from err
    body = bytes(raw)
    if len(body) > table.max_message_bytes:
        raise MessageFormatError(f"{message.mti} is {len(body)} bytes, over the frame limit")
    if mac_key is not None:
        body = body[:-MAC_LENGTH] + compute_mac(mac_key, body[:-MAC_LENGTH])
    return body


def decode_message(body: bytes, table: FieldTable | None = None, *, check: bool = True) -> Message:
    """Decode one message (without length prefix); the MAC is not checked here.

    With check=False only the bytes are parsed, so a receiver can still learn the terminal and
    answer a message whose fields break the rules of its type.
    """
    table = table or field_table()
    if len(body) > table.max_message_bytes:
        raise MessageFormatError(f"message of {len(body)} bytes is over the frame limit")
    try:
        doc, _ = iso8583.decode(body, table.spec)
    except iso8583.DecodeError as err:
        raise MessageFormatError(f"malformed message: {err}") from err
    except (ValueError, LookupError, TypeError) as err:  # defensive: never let garbage escape
        raise MessageFormatError(f"malformed message: {err}") from err
    fields: dict[str, str | bytes] = {}
    for number, value in doc.items():
        if number in ("t", "p", "1"):
            continue
        if number not in table.content:
            raise MessageFormatError(f"field {number} is not in the field table")
        fields[number] = bytes.fromhex(value) if table.content[number] == "b" else value
    message = Message(doc["t"], fields)
    if check:
        check_message(message, table)
    return message


# --- MAC -----------------------------------------------------------------------------------


def compute_mac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC (NIST SP 800-38B) of data under an AES key, first 8 bytes."""
    if len(key) not in (16, 24, 32):
        raise MacError(f"a MAC key is 16, 24 or 32 bytes, not {len(key)}")
    cmac = CMAC(algorithms.AES(key))
    cmac.update(data)
    return cmac.finalize()[:MAC_LENGTH]


def verify_mac(body: bytes, message: Message, key: bytes) -> None:
    """Check field 128 of a decoded message against the MAC of every byte before it."""
    mac = message.binary(MAC_FIELD)
    if mac is None:
        raise MacError(f"{message.mti} from {message.text('41')!r} carries no MAC")
    # Field 128 is fixed length and always last, so it is the message's last 8 bytes.
    if body[-MAC_LENGTH:] != mac:
        raise MacError("field 128 is not at the end of the message")
    if not hmac.compare_digest(compute_mac(key, body[:-MAC_LENGTH]), mac):
        raise MacError(f"bad MAC on {message.mti} from {message.text('41')!r}")


# --- framing -------------------------------------------------------------------------------


def frame(body: bytes) -> bytes:
    """Prefix a message with its length, 2 bytes big-endian."""
    if not 0 < len(body) <= 0xFFFF:
        raise MessageFormatError(f"a message of {len(body)} bytes cannot be framed")
    return struct.pack(">H", len(body)) + body


class FrameDecoder:
    """Turns a byte stream into message bodies; a bad length prefix is a MessageFormatError.

    There is no way to resynchronise inside a length-prefixed stream, so after an error the
    caller closes the connection.
    """

    def __init__(self, max_message_bytes: int | None = None) -> None:
        self.max_message_bytes = max_message_bytes or field_table().max_message_bytes
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that are not yet a whole frame."""
        return len(self._buffer)

    def describe_pending(self) -> str:
        """What a cut-off frame held, for a log line."""
        if len(self._buffer) < LENGTH_PREFIX:
            return f"{len(self._buffer)} byte of the length prefix"
        (length,) = struct.unpack_from(">H", self._buffer)
        return f"{len(self._buffer) - LENGTH_PREFIX} of {length} message bytes"

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        bodies: list[bytes] = []
        while len(self._buffer) >= LENGTH_PREFIX:
            (length,) = struct.unpack_from(">H", self._buffer)
            if length == 0 or length > self.max_message_bytes:
                prefix = self._buffer[:LENGTH_PREFIX].hex()
                self._buffer.clear()
                raise MessageFormatError(
                    f"length prefix {prefix} says {length} bytes "
                    f"(accepted: 1..{self.max_message_bytes})"
                )
            if len(self._buffer) < LENGTH_PREFIX + length:
                break
            bodies.append(bytes(self._buffer[LENGTH_PREFIX : LENGTH_PREFIX + length]))
            del self._buffer[: LENGTH_PREFIX + length]
        return bodies


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


def mask_pan(pan: str) -> str:
    """First 6 and last 4 digits, the rest as '*': safe to log."""
    if len(pan) < 11:
        return "*" * len(pan)
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


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
