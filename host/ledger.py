"""The bank's one ledger: balanced double-entry postings with conditional balance updates, and
the query of an account's ledger lines that statements, the mini-statement and the API share.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from host.models import CUSTOMER_ACCOUNT_KINDS, Account, JournalEntry, JournalLine

# Built once and run on the session's connection: posting is on every withdrawal's path.
_INSERT_ENTRY = sa.insert(JournalEntry).returning(JournalEntry.id)
_MOVE_BALANCES = (
    sa.update(Account)
    .where(
        Account.id == sa.bindparam("account_id"),
        sa.or_(
            Account.kind.not_in(CUSTOMER_ACCOUNT_KINDS),
            Account.available_balance + sa.bindparam("available") >= 0,
        ),
    )
    .values(
        ledger_balance=Account.ledger_balance + sa.bindparam("amount"),
        available_balance=Account.available_balance + sa.bindparam("available"),
    )
    .returning(Account.ledger_balance, Account.available_balance)
)
_INSERT_LINE = sa.insert(JournalLine)


class InsufficientFunds(Exception):
    """A posting would take a customer account's available balance below zero."""


@dataclass(frozen=True)
class Posting:
    """One line of a journal entry: `amount` cents onto the account's ledger balance (+ credit)."""

    account_id: int
    amount: int
    memo: str
    available_change: int | None = None  # None: the available balance moves by `amount` too


def post_entry(
    session: Session,
    *,
    posted_at: dt.datetime,
    kind: str,
    description: str,
    postings: Sequence[Posting],
    host_transaction_id: int | None = None,
) -> dict[int, tuple[int, int]]:
    """Post a balanced entry; return each account's (ledger, available) balance after it.

    Accounts are updated in the order given (callers keep one lock order: customer accounts by
    id, then bank accounts). A customer account whose available balance would go below zero
    raises InsufficientFunds; the CHECK constraints and the balanced-entry trigger are the backstop.
    """
    if sum(p.amount for p in postings) != 0:
        raise ValueError(f"{kind} entry does not balance")
    connection = session.connection()
    entry_id = connection.execute(
        _INSERT_ENTRY,
        {
            "posted_at": posted_at,
            "kind": kind,
            "description": description[:80],
            "host_transaction_id": host_transaction_id,
        },
    ).scalar_one()
    balances: dict[int, tuple[int, int]] = {}
    for posting in postings:
        available = posting.amount if posting.available_change is None else posting.available_change
        row = connection.execute(
            _MOVE_BALANCES,
            {"account_id": posting.account_id, "amount": posting.amount, "available": available},
        ).one_or_none()
        if row is None:
            raise InsufficientFunds(f"account {posting.account_id} would go below zero")
        if posting.amount:
            connection.execute(
                _INSERT_LINE,
                {
                    "entry_id": entry_id,
                    "account_id": posting.account_id,
                    "amount": posting.amount,
                    "balance_after": row.ledger_balance,
                    "memo": posting.memo[:40],
                },
            )
        balances[posting.account_id] = (row.ledger_balance, row.available_balance)
    return balances


def ledger_lines(account_id: int) -> sa.Select[dt.datetime, str, int, int]:
    """(posted_at, memo, amount, balance_after) of an account's lines; callers order and page."""
    return (
        sa.select(
            JournalEntry.posted_at,
            JournalLine.memo,
            JournalLine.amount,
            JournalLine.balance_after,
        )
        .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
        .where(JournalLine.account_id == account_id)
    )
