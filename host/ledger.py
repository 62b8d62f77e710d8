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
    VALUES (%(posted_at)s, %(kind)s, %(description)s, %(host_transaction_id)s)
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
# The balances moved and the entry's line written in one statement, the line only if they moved;
# the entry is the one this session inserted last.
_MOVE_BALANCES_AND_WRITE_LINE = f"""
    WITH moved AS ({_MOVE_BALANCES}), line AS (
        INSERT INTO journal_lines (entry_id, account_id, amount, balance_after, memo)
        SELECT currval(pg_get_serial_sequence('journal_entries', 'id')), %(account_id)s,
               %(amount)s, ledger_balance, %(memo)s
        FROM moved
    )
    SELECT ledger_balance, available_balance FROM moved
"""  # noqa: S608 (built from constants of this module only)


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

    The entry and its postings go in one round trip, the accounts updated in the order given
    (callers keep one lock order: customer accounts by id, then bank accounts). A customer
    account whose available balance would go below zero raises InsufficientFunds once the entry
    was sent, to be undone by the caller's savepoint or rollback (as any failed statement); the
    CHECK constraints and the balanced-entry trigger are the backstop.
    """
    if sum(p.amount for p in postings) != 0:
        raise ValueError(f"{kind} entry does not balance")
    entry = {
        "posted_at": posted_at,
        "kind": kind,
        "description": description[:80],
        "host_transaction_id": host_transaction_id,
    }
    statements: list[tuple[str, dict[str, object]]] = [(_INSERT_ENTRY, entry)]
    for posting in postings:
        available = posting.amount if posting.available_change is None else posting.available_change
        move: dict[str, object] = {
            "account_id": posting.account_id,
            "amount": posting.amount,
            "available": available,
        }
        if posting.amount:
            statements.append((_MOVE_BALANCES_AND_WRITE_LINE, {**move, "memo": posting.memo[:40]}))
        else:
            statements.append((_MOVE_BALANCES, move))
    rows = transaction.first_of_each(statements)[1:]
    balances: dict[int, tuple[int, int]] = {}
    for posting, row in zip(postings, rows, strict=True):
        if row is None:
            raise InsufficientFunds(f"account {posting.account_id} would go below zero")
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
