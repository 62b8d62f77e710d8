"""ISO 8583 messages to the bank's HostRequest, and HostResponse back to ISO 8583 messages.

Only meaning lives here; bytes, framing and the MAC are in host/iso8583/.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from host import dukpt
from host import iso8583 as iso
from host.iso8583 import Balance, FieldTable, Message, MessageFormatError, StatementEntry
from host.messages import HostRequest, HostResponse, RequestKind, ResponseCode

ADVICE_TYPES = frozenset({"0220", "0400", "0420"})
CARD_TYPES = frozenset({"0100", "0200"})
PIN_VERIFY = "pin_verify"  # processing code 96: a balance inquiry whose answer shows no balance
ECHOED = ("3", "4", "7", "11", "41", "49", "70", "102", "103")
LAST_STAN_FIELD = "48"  # in an 0810 to a sign-on: the last STAN the host recorded from the ATM


def is_terminal_id(value: object) -> bool:
    """Whether a field 41 value can name a terminal: 8 printable ASCII characters."""
    return isinstance(value, str) and len(value) == 8 and all(" " <= c <= "~" for c in value)


def request_kind(message: Message, table: FieldTable) -> str:
    """The kind of request a message is, as the field table names it."""
    if message.mti == "0800":
        code = message.text("70") or ""
        kind = table.network_codes.get(code)
        if kind is None:
            raise MessageFormatError(f"0800: unknown network management code {code!r}")
        return kind
    processing = message.text("3") or ""
    entry = table.processing_codes.get(processing[:2])
    if message.mti == "0220":
        return RequestKind.COMPLETION.value
    if message.mti in ("0400", "0420"):
        return RequestKind.REVERSAL.value
    if entry is None:
        raise MessageFormatError(f"{message.mti}: unknown processing code {processing[:2]!r}")
    if entry.message != message.mti:
        raise MessageFormatError(f"processing code {entry.code} belongs in {entry.message}")
    return entry.kind


def _kind(name: str) -> RequestKind:
    if name == PIN_VERIFY:
        # The service has no verify-only request: a balance inquiry checks the PIN the same way.
        return RequestKind.BALANCE
    try:
        return RequestKind(name)
    except ValueError as err:
        raise MessageFormatError(f"the bank has no request kind {name!r}") from err


def _account(message: Message, number_field: str, type_code: str, table: FieldTable) -> str | None:
    number = message.text(number_field)
    if number:
        return number
    account_type = table.account_types.get(type_code)
    if account_type is None:
        raise MessageFormatError(f"field 3: unknown account type {type_code!r}")
    return account_type or None


def _card(message: Message) -> tuple[str | None, str | None]:
    track = message.text("35")
    if track is not None:
        return iso.parse_track2(track)
    return message.text("2"), message.text("14")


@dataclass(frozen=True)
class _PinData:
    block: bytes | None = None
    pin_format: int | None = None
    ksn: bytes | None = None
    new_ksn: bytes | None = None


_KSN_BYTES = {
    iso.KeyManagement.DUKPT_TDES: dukpt.TDES_KSN_BYTES,
    iso.KeyManagement.DUKPT_AES: dukpt.AES_KSN_BYTES,
}


def _ksn(message: Message, field: str, management: iso.KeyManagement) -> bytes | None:
    ksn = message.binary(field)
    if management is iso.KeyManagement.FIXED_KEY:
        if ksn is not None:
            raise MessageFormatError(f"field {field}: a KSN with a fixed-key PIN block")
        return None
    if ksn is None or len(ksn) != _KSN_BYTES[management]:
        raise MessageFormatError(
            f"field {field}: {management.name} needs a {_KSN_BYTES[management]}-byte KSN"
        )
    return ksn


def _pin(message: Message) -> _PinData:
    block = message.binary("52") or message.binary("110")
    if block is None:
        return _PinData()
    control = message.text("53")
    if control is None:
        raise MessageFormatError("field 53 is missing: the PIN block format is unknown")
    security = iso.parse_security_control(control)
    pin_format = security.pin_block_format
    if (pin_format == 4) != (len(block) == 16):
        raise MessageFormatError(f"a {len(block)}-byte PIN block cannot be format {pin_format}")
    management = security.key_management
    if management is not iso.KeyManagement.FIXED_KEY and (pin_format == 4) != (
        management is iso.KeyManagement.DUKPT_AES
    ):
        raise MessageFormatError(f"PIN block format {pin_format} cannot use {management.name}")
    if message.binary("111") is None:
        if message.binary("121") is not None:
            raise MessageFormatError("field 121: a KSN for a new PIN block that is not there")
        new_ksn = None
    else:
        new_ksn = _ksn(message, "121", management)
    return _PinData(block, pin_format, _ksn(message, "120", management), new_ksn)


def to_host_request(message: Message, now: dt.datetime, table: FieldTable) -> HostRequest:
    """The bank request a checked, MAC-verified message stands for."""
    kind_name = request_kind(message, table)
    kind = _kind(kind_name)
    stan = message.text("11") or ""
    terminal = message.text("41") or ""
    transmitted = iso.parse_transmission_time(message.text("7") or "", now)
    processing = message.text("3") or "000000"
    pan, expiry = _card(message)
    pin = _pin(message)
    amount_text = message.text("4")
    amount = int(amount_text) if amount_text else 0
    original = (
        iso.parse_original_data_elements(message.text("90") or "") if "90" in message else None
    )
    replacement = message.text("95")
    if message.mti in CARD_TYPES and pan is None:
        raise MessageFormatError(f"{message.mti}: no card data (field 2 or 35)")
    if kind in (RequestKind.WITHDRAWAL, RequestKind.TRANSFER) and amount <= 0:
        raise MessageFormatError(f"{kind.value}: field 4 must hold an amount above zero")
    if kind is RequestKind.PIN_CHANGE and message.binary("111") is None:
        raise MessageFormatError("PIN change: field 111 (new PIN block) is missing")
    return HostRequest(
        kind=kind,
        terminal_id=terminal,
        stan=stan,
        transmitted_at=transmitted,
        pan=pan,
        expiry=expiry,
        pin_block=pin.block,
        pin_block_format=pin.pin_format,
        pin_ksn=pin.ksn,
        new_pin_block=message.binary("111"),
        new_pin_ksn=pin.new_ksn,
        amount=amount,
        currency=message.text("49") or "978",
        from_account=_account(message, "102", processing[2:4], table),
        to_account=_account(message, "103", processing[4:6], table),
        original_stan=original.stan if original else None,
        # The original went out before its advice: its year is the one nearest the advice's.
        original_transmitted_at=(
            iso.parse_transmission_time(original.transmitted, transmitted) if original else None
        ),
        dispensed_amount=iso.parse_replacement_amounts(replacement) if replacement else None,
    )


def _fixed(text: str, width: int) -> str:
    """A reference from the bank squeezed into a fixed alphanumeric field."""
    kept = "".join(c for c in text if c.isascii() and c.isalnum())
    return kept[-width:].rjust(width, "0")


def _echoed_fields(
    request: Message, rule_allowed: frozenset[str], table: FieldTable
) -> dict[str, str | bytes]:
    fields: dict[str, str | bytes] = {}
    for number in ECHOED:
        value = request.fields.get(number)
        if (
            value is not None
            and number in rule_allowed
            and iso.field_is_valid(table, number, value)
        ):
            fields[number] = value
    return fields


def error_response(
    request: Message, code: ResponseCode, now: dt.datetime, table: FieldTable
) -> Message:
    """An answer to a request that could not be served, built only from fields that are valid."""
    mti = iso.response_mti(request.mti)
    rule = table.messages[mti]
    fields = _echoed_fields(request, rule.allowed, table)
    fields.setdefault("3", "000000")
    fields.setdefault("7", iso.transmission_time(now))
    fields.setdefault("11", "000000")
    fields.setdefault("41", "00000000")
    if "70" in rule.required:
        fields.setdefault("70", "000")
    fields["39"] = code.value
    return Message(mti, {k: v for k, v in fields.items() if k in rule.allowed})


def to_iso_response(
    request: Message, response: HostResponse, kind_name: str, table: FieldTable
) -> Message:
    """The answer message to a request, from the bank's response."""
    mti = iso.response_mti(request.mti)
    rule = table.messages[mti]
    fields = _echoed_fields(request, rule.allowed, table)
    fields["39"] = response.response_code.value
    if "37" in rule.allowed and response.retrieval_reference:
        fields["37"] = _fixed(response.retrieval_reference, 12)
    if "38" in rule.allowed and response.approval_code:
        fields["38"] = _fixed(response.approval_code, 6)
    if "54" in rule.allowed and kind_name != PIN_VERIFY:
        balances = _balances(request, response)
        if balances:
            fields["54"] = iso.encode_balances(balances)
    signed_on = kind_name == RequestKind.SIGN_ON.value and response.last_stan is not None
    if signed_on and LAST_STAN_FIELD in rule.allowed:
        fields[LAST_STAN_FIELD] = response.last_stan or ""
    if "62" in rule.allowed and response.statement:
        entries = [
            StatementEntry(line.posted_at, line.description, line.amount, line.balance_after)
            for line in response.statement[: iso.MAX_STATEMENT_LINES]
        ]
        fields["62"] = iso.encode_statement(entries)
    return Message(mti, fields)


def _balances(request: Message, response: HostResponse) -> list[Balance]:
    account_type = (request.text("3") or "000000")[2:4]
    currency = request.text("49") or "978"
    balances = []
    if response.ledger_balance is not None:
        balances.append(Balance(account_type, iso.LEDGER, currency, response.ledger_balance))
    if response.available_balance is not None:
        balances.append(Balance(account_type, iso.AVAILABLE, currency, response.available_balance))
    return balances
