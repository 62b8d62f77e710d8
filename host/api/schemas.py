"""What the bank's HTTP routes take and give, as pydantic models with examples for the OpenAPI
schema. Amounts are integer cents; cards appear masked (first 6, last 4), keys as check values.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from host.models import CARD_STATUSES, OPERATOR_ROLES

# Dates and times the database and the calendar arithmetic can hold: a year 1 or 9999 would
# overflow a day's end, so the edges are refused as input (422) instead.
EARLIEST_DATE = dt.date(1900, 1, 1)
LATEST_DATE = dt.date(9000, 12, 31)
MAX_ID = 2**63 - 1  # a PostgreSQL bigint
MAX_PAGE = 500

AccountNumber = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9-]{1,34}$",
        description="account number (digits for customer accounts)",
        examples=["10000001"],
    ),
]
TerminalId = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9]{1,8}$", description="terminal id", examples=["ATM00001"]),
]
BankDate = Annotated[dt.date, Field(ge=EARLIEST_DATE, le=LATEST_DATE, examples=["2026-11-01"])]
RowId = Annotated[int, Field(ge=1, le=MAX_ID, examples=[1])]
Role = Literal["viewer", "operator", "admin"]
assert set(OPERATOR_ROLES) == {"viewer", "operator", "admin"}
CardStatus = Literal["active", "locked", "captured", "blocked"]
assert set(CARD_STATUSES) == {"active", "locked", "captured", "blocked"}


class ErrorOut(BaseModel):
    """Every refusal but a validation error: one line saying what to do."""

    detail: str = Field(examples=["no account '99999999'"])


class Page(BaseModel):
    total: int = Field(description="rows matching the filters", examples=[1])
    limit: int = Field(examples=[50])
    offset: int = Field(examples=[0])


# ----- health ---------------------------------------------------------------------------------


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"


class CheckOut(BaseModel):
    ok: bool
    detail: str = Field(examples=["at head 0004"])


class ReadyOut(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, CheckOut] = Field(
        examples=[
            {
                "database": {"ok": True, "detail": "reachable"},
                "migrations": {"ok": True, "detail": "at head 0004"},
                "iso_host": {"ok": True, "detail": "listening on 127.0.0.1:8583"},
            }
        ]
    )


# ----- operators ------------------------------------------------------------------------------


class SignInIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "admin", "password": "a long passphrase"}]}
    )

    name: str = Field(pattern=r"^[A-Za-z0-9._@-]{1,64}$", description="operator name")
    password: str = Field(min_length=1, max_length=256)


class TokenOut(BaseModel):
    access_token: str = Field(description="send as `Authorization: Bearer TOKEN`")
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the scheme name
    role: Role
    idle_timeout_seconds: int = Field(
        description="the token stops working after this long without use", examples=[120]
    )


class OperatorOut(BaseModel):
    name: str = Field(examples=["admin"])
    role: Role


# ----- customers and accounts -----------------------------------------------------------------


class CustomerOut(BaseModel):
    id: int = Field(examples=[1])
    name: str = Field(examples=["Alice Martin"])
    created_at: dt.datetime
    accounts: list[str] = Field(examples=[["10000001", "10000002"]])
    cards: list[int] = Field(description="card ids (see /bank/cards/{card_id})", examples=[[1]])


class CustomerPage(Page):
    items: list[CustomerOut]


class AccountOut(BaseModel):
    number: str = Field(examples=["10000001"])
    kind: str = Field(examples=["checking"])
    customer_id: int | None = Field(examples=[1])
    customer_name: str | None = Field(examples=["Alice Martin"])
    currency: str = Field(examples=["978"])
    ledger_balance: int = Field(description="cents", examples=[250000])
    available_balance: int = Field(description="cents: ledger less held", examples=[245000])
    held: int = Field(description="cents held by open withdrawals", examples=[5000])
    created_at: dt.datetime


class AccountPage(Page):
    items: list[AccountOut]


class LedgerLineOut(BaseModel):
    line_id: int
    entry_id: int
    posted_at: dt.datetime
    kind: str = Field(examples=["withdrawal"])
    description: str = Field(examples=["ATM withdrawal ATM00001 000012"])
    memo: str = Field(examples=["ATM withdrawal"])
    amount: int = Field(description="cents; negative debits the account", examples=[-5000])
    balance_after: int = Field(description="cents", examples=[245000])


class LedgerPage(Page):
    account: str = Field(examples=["10000001"])
    items: list[LedgerLineOut]


# ----- cards ----------------------------------------------------------------------------------


class CardAccountOut(BaseModel):
    number: str = Field(examples=["10000001"])
    type: str = Field(examples=["checking"])
    default: bool


class CardOut(BaseModel):
    id: int = Field(examples=[1])
    masked_pan: str = Field(description="first 6 and last 4 digits", examples=["476173******0010"])
    customer_id: int = Field(examples=[1])
    expiry: str = Field(description="YYMM", examples=["3012"])
    status: CardStatus
    failed_pin_attempts: int = Field(examples=[0])
    locked_until: dt.datetime | None
    accounts: list[CardAccountOut]


class CardPage(Page):
    items: list[CardOut]


# ----- terminals ------------------------------------------------------------------------------


class TerminalOut(BaseModel):
    terminal_id: str = Field(examples=["ATM00001"])
    settlement_account: str = Field(examples=["ATM-CASH-ATM00001"])
    key_check_values: dict[str, str] = Field(
        description="key name to its check value (never the key): TDES keys the legacy "
        "method, AES keys the CMAC method",
        examples=[{"tmk": "EB7A8D", "mac_key": "A8F2C0"}],
    )
    keys_readable: bool = Field(
        description="false when the sealed keys cannot be opened (another SECRET_KEY)"
    )
    dukpt_counter: int | None = Field(description="newest DUKPT counter accepted")
    last_sign_on_at: dt.datetime | None
    created_at: dt.datetime


# ----- host records ---------------------------------------------------------------------------


class HostTransactionOut(BaseModel):
    id: int
    terminal_id: str = Field(examples=["ATM00001"])
    stan: str = Field(examples=["000012"])
    business_date: dt.date
    kind: str = Field(examples=["withdrawal"])
    transmitted_at: dt.datetime
    received_at: dt.datetime
    amount: int = Field(description="cents", examples=[5000])
    masked_pan: str | None = Field(examples=["476173******0010"])
    account: str | None = Field(examples=["10000001"])
    original_id: int | None
    response_code: str | None = Field(examples=["00"])
    retrieval_reference: str | None


class HostTransactionPage(Page):
    items: list[HostTransactionOut]


class HoldOut(BaseModel):
    terminal_id: str = Field(examples=["ATM00001"])
    stan: str = Field(examples=["000012"])
    transmitted_at: dt.datetime
    masked_pan: str = Field(examples=["476173******0010"])
    account: str = Field(examples=["10000001"])
    amount: int = Field(description="cents", examples=[5000])
    held_since: dt.datetime
    age_seconds: int = Field(examples=[42])


class HoldList(BaseModel):
    count: int
    total_amount: int = Field(description="cents held in all")
    items: list[HoldOut]


# ----- statements and jobs --------------------------------------------------------------------


class StatementIn(BaseModel):
    model_config = ConfigDict(
        populate_by_name=True,
        json_schema_extra={
            "examples": [{"account": "10000001", "from": "2026-11-01", "to": "2026-11-30"}]
        },
    )

    account: AccountNumber
    from_: BankDate = Field(alias="from", description="first day (UTC), inclusive")
    to: BankDate = Field(description="last day (UTC), inclusive")

    @field_validator("to")
    @classmethod
    def _ends_after_start(cls, value: dt.date, info: ValidationInfo) -> dt.date:
        start = info.data.get("from_")
        if isinstance(start, dt.date) and value < start:
            raise ValueError(f"the statement ends ({value}) before it starts ({start})")
        return value


JobStatus = Literal["queued", "running", "succeeded", "failed"]


class JobOut(BaseModel):
    """A long operation: poll its URL until status is succeeded or failed."""

    id: str = Field(examples=["6f1c0d2e9b7a4c1d8e3f5a6b7c8d9e0f"])
    kind: str = Field(examples=["statement"])
    status: JobStatus
    submitted_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    result: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    files: list[str] = Field(
        default_factory=list, description="files the job made, fetched by their URLs"
    )
