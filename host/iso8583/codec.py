"""Encoding, decoding and checking ISO 8583 messages against the field table, and their MAC
(AES-CMAC over the message with field 128 zeroed)."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

import iso8583
import iso8583.specs
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from host.iso8583.errors import MacError, MessageFormatError
from host.iso8583.table import FIELD_CONTENT, FieldTable, Message, field_table

MAC_FIELD = "128"
MAC_LENGTH = 8  # bytes of the AES-CMAC kept in field 128

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
        elif not isinstance(value, str) or not FIELD_CONTENT[kind].fullmatch(value):
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
    elif not isinstance(value, str) or not FIELD_CONTENT[kind].fullmatch(value):
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
