"""The bank's own request and response types, independent of the ISO 8583 wire format.

The ISO 8583 server turns messages into these; the authorisation service answers them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from config.card_numbers import mask_pan


class RequestKind(StrEnum):
    SIGN_ON = "sign_on"
    ECHO = "echo"
    BALANCE = "balance"
    WITHDRAWAL = "withdrawal"  # authorise and hold; money moves at completion
    COMPLETION = "completion"  # the dispense finished: post the held amount (or less)
    REVERSAL = "reversal"  # full or partial (dispensed_amount) undo of a withdrawal
    TRANSFER = "transfer"
    MINI_STATEMENT = "mini_statement"
    PIN_CHANGE = "pin_change"


class ResponseCode(StrEnum):
    """ISO 8583 field 39 values used by the host (see docs/host-protocol.md)."""

    APPROVED = "00"
    REFER_TO_ISSUER = "01"
    INVALID_TRANSACTION = "12"
    INVALID_AMOUNT = "13"
    INVALID_CARD = "14"
    FORMAT_ERROR = "30"
    LOST_OR_CAPTURED_CARD = "41"
    NO_SUCH_ACCOUNT = "42"
    INSUFFICIENT_FUNDS = "51"
    EXPIRED_CARD = "54"
    INCORRECT_PIN = "55"
    TRANSACTION_NOT_PERMITTED = "57"
    EXCEEDS_WITHDRAWAL_LIMIT = "61"
    PIN_TRIES_EXCEEDED = "75"
    ORIGINAL_NOT_FOUND = "25"
    DUPLICATE_TRANSMISSION = "94"
    SECURITY_VIOLATION = "63"
    SYSTEM_MALFUNCTION = "96"
    ISSUER_UNAVAILABLE = "91"


@dataclass(frozen=True)
class HostRequest:
    kind: RequestKind
    terminal_id: str
    stan: str  # 6 digits, unique per terminal and day: the idempotency key with terminal_id
    transmitted_at: dt.datetime
    pan: str | None = None
    expiry: str | None = None  # YYMM, as on track 2
    pin_block: bytes | None = None  # encrypted under the terminal's PIN key
    pin_block_format: int | None = None  # ISO 9564 format: 0 (TDES) or 4 (AES)
    pin_ksn: bytes | None = None  # DUKPT key serial number; None: the terminal's fixed PIN key
    new_pin_block: bytes | None = None  # PIN change: the new PIN, same format and key scheme
    new_pin_ksn: bytes | None = None
    amount: int = 0  # cents
    currency: str = "978"
    from_account: str | None = None  # "checking" / "savings" or an account number
    to_account: str | None = None
    original_stan: str | None = None  # reversal / completion: the withdrawal it refers to
    original_transmitted_at: dt.datetime | None = None  # field 90: the withdrawal's field 7
    dispensed_amount: int | None = None  # partial reversal / completion: cents handed out

    def __repr__(self) -> str:  # never a full card number or a PIN block in a log
        pan = "-" if self.pan is None else mask_pan(self.pan)
        return (
            f"HostRequest({self.kind} terminal={self.terminal_id} stan={self.stan} "
            f"pan={pan} amount={self.amount} from={self.from_account} to={self.to_account} "
            f"original={self.original_stan})"
        )


@dataclass(frozen=True)
class StatementLine:
    posted_at: dt.datetime
    description: str
    amount: int  # cents, negative for debits
    balance_after: int


@dataclass(frozen=True)
class HostResponse:
    response_code: ResponseCode
    stan: str
    retrieval_reference: str = ""
    approval_code: str = ""
    ledger_balance: int | None = None
    available_balance: int | None = None
    statement: tuple[StatementLine, ...] = field(default_factory=tuple)
    message: str = ""  # a short reason for logs and operators; never a PIN or full PAN
    last_stan: str | None = None  # sign-on: the terminal's newest STAN the host has recorded

    @property
    def approved(self) -> bool:
        return self.response_code is ResponseCode.APPROVED
