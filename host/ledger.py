"""The bank's one ledger: balanced double-entry postings with conditional balance updates, and
the query of an account's ledger lines that statements, the mini-statement and the API share.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from host.driver_sql import DriverTransaction
from host.models import CUSTOMER_ACCOUNT_KINDS, JournalEntry, JournalLine

_INSERT_ENTRY = """
    INSERT INTO journal_entries (posted_at, kind, description, host_transaction_id)
    VALUES (%(posted_at)s, %(kind)s, %(description)s, %(host_transaction_id)s) RETURNING id
"""
# A customer account's available balance never goes below zero; bank accounts may.
_MOVE_BALANCES = f"""
    UPDATE accounts
    SET ledger_balance = ledger_balance + %(amount)s,
        available_balance = available_balance + %(available)s
    WHERE id = %(account_id)s
      AND (kind NOT IN ({", ".join(repr(kind) for kind in CUSTOMER_ACCOUNT_KINDS)})
           OR available_balance + %(available)s >= 0)
    RETURNING ledger_balance, available_balance
"""  # noqa: S608 (built from constants of this module only)
_INSERT_LINE = """
    INSERT INTO journal_lines (entry_id, account_id, amount, balance_after, memo)
    VALUES (%(entry_id)s, %(account_id)s, %(amount)s, %(balance_after)s, %(memo)s)
"""


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
    transaction: DriverTransaction,
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
    entry_id = transaction.scalar(
        _INSERT_ENTRY,
        {
            "posted_at": posted_at,
            "kind": kind,
            "description": description[:80],
            "host_transaction_id": host_transaction_id,
        },
    )
    balances: dict[int, tuple[int, int]] = {}
    for posting in postings:
        available = posting.amount if posting.available_change is None else posting.available_change
        row = transaction.first(
            _MOVE_BALANCES,
            {"account_id": posting.account_id, "amount": posting.amount, "available": available},
        )
        if row is None:
            raise InsufficientFunds(f"account {posting.account_id} would go below zero")
        if posting.amount:
            transaction.run(
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
