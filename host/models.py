"""The bank's tables as typed SQLAlchemy 2 models: customers, accounts, cards, terminals, the
double-entry ledger, holds, host transaction records and daily limit counters.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

CUSTOMER_ACCOUNT_KINDS = ("checking", "savings")
BANK_ACCOUNT_KINDS = ("bank_equity", "atm_settlement")
CARD_STATUSES = ("active", "locked", "captured", "blocked")
HOLD_STATUSES = ("held", "completed", "reversed")
USAGE_KINDS = ("withdrawal", "transfer")

Timestamp = sa.DateTime(timezone=True)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)


class Account(Base):
    """A customer account (checking, savings) or a bank-side ledger account (equity, ATM cash).

    Balances are integer cents from the account holder's side; only customer accounts are
    bound to stay at or above zero. available = ledger - held amounts.
    """

    __tablename__ = "accounts"
    __table_args__ = (
        sa.CheckConstraint(_in("kind", CUSTOMER_ACCOUNT_KINDS + BANK_ACCOUNT_KINDS), name="kind"),
        sa.CheckConstraint(
            f"NOT ({_in('kind', CUSTOMER_ACCOUNT_KINDS)}) OR "
            "(ledger_balance >= 0 AND available_balance >= 0 "
            "AND available_balance <= ledger_balance)",
            name="customer_balances_not_negative",
        ),
        sa.CheckConstraint(
            f"({_in('kind', CUSTOMER_ACCOUNT_KINDS)}) = (customer_id IS NOT NULL)",
            name="customer_owns_customer_accounts",
        ),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    number: Mapped[str] = mapped_column(sa.String(34), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    customer_id: Mapped[int | None] = mapped_column(
        sa.BigInteger, sa.ForeignKey("customers.id"), index=True
    )
    currency: Mapped[str] = mapped_column(sa.String(3))
    ledger_balance: Mapped[int] = mapped_column(sa.BigInteger)
    available_balance: Mapped[int] = mapped_column(sa.BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)


class Card(Base):
    """A card: looked up by a keyed hash of its number; only the masked number is kept."""

    __tablename__ = "cards"
    __table_args__ = (
        sa.CheckConstraint(_in("status", CARD_STATUSES), name="status"),
        sa.CheckConstraint("failed_pin_attempts >= 0", name="failed_pin_attempts"),
        sa.CheckConstraint("expiry ~ '^[0-9]{2}(0[1-9]|1[0-2])$'", name="expiry_yymm"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    pan_hash: Mapped[bytes] = mapped_column(sa.LargeBinary(32), unique=True)
    masked_pan: Mapped[str] = mapped_column(sa.String(19))
    customer_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("customers.id"), index=True
    )
    expiry: Mapped[str] = mapped_column(sa.String(4))
    pin_hash: Mapped[str] = mapped_column(sa.String(80))
    failed_pin_attempts: Mapped[int] = mapped_column(sa.Integer)
    locked_until: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    status: Mapped[str] = mapped_column(sa.String(10))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)


class CardAccount(Base):
    """Which accounts a card reaches, under which account type, and which one is the default."""

    __tablename__ = "card_accounts"
    __table_args__ = (
        sa.CheckConstraint(_in("account_type", CUSTOMER_ACCOUNT_KINDS), name="account_type"),
        sa.UniqueConstraint("card_id", "account_type", name="uq_card_accounts_card_type"),
        sa.Index(
            "uq_card_accounts_one_default",
            "card_id",
            unique=True,
            postgresql_where=sa.text("is_default"),
        ),
    )

    card_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("cards.id"), primary_key=True)
    account_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("accounts.id"), primary_key=True
    )
    account_type: Mapped[str] = mapped_column(sa.String(20))
    is_default: Mapped[bool] = mapped_column(sa.Boolean)


class Terminal(Base):
    """An ATM the host knows, with its keys sealed (AES-GCM under a key from SECRET_KEY)."""

    __tablename__ = "terminals"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    terminal_id: Mapped[str] = mapped_column(sa.String(8), unique=True)
    settlement_account_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("accounts.id"), unique=True
    )
    tmk_sealed: Mapped[bytes] = mapped_column(sa.LargeBinary)
    pin_key_tdes_sealed: Mapped[bytes] = mapped_column(sa.LargeBinary)
    pin_key_aes_sealed: Mapped[bytes] = mapped_column(sa.LargeBinary)
    mac_key_sealed: Mapped[bytes] = mapped_column(sa.LargeBinary)
    dukpt_bdk_tdes_sealed: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    dukpt_bdk_aes_sealed: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    # The newest DUKPT KSN accepted (initial key part and counter): an older one is a replay.
    dukpt_key_id: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    dukpt_counter: Mapped[int | None] = mapped_column(sa.BigInteger)
    last_sign_on_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)


class HostTransaction(Base):
    """Every request the host answered, keyed by terminal, STAN and business date.

    The unique key is claimed in the same database transaction as any money movement, so a
    repeated request finds the first answer (kept in `response`) and moves no money twice.
    """

    __tablename__ = "host_transactions"
    __table_args__ = (
        sa.UniqueConstraint(
            "terminal_id", "stan", "business_date", name="uq_host_transactions_idempotency"
        ),
        sa.CheckConstraint("stan ~ '^[0-9]{6}$'", name="stan_digits"),
        sa.CheckConstraint("amount >= 0", name="amount"),
        # A terminal's newest request (the last STAN told at sign-on) in one index probe.
        sa.Index("ix_host_transactions_terminal_id_id", "terminal_id", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    terminal_id: Mapped[str] = mapped_column(sa.String(8), sa.ForeignKey("terminals.terminal_id"))
    stan: Mapped[str] = mapped_column(sa.String(6))
    business_date: Mapped[dt.date] = mapped_column(sa.Date)
    kind: Mapped[str] = mapped_column(sa.String(20))
    request_digest: Mapped[bytes | None] = mapped_column(sa.LargeBinary(32))
    transmitted_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    received_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    card_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("cards.id"))
    account_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("accounts.id"))
    original_id: Mapped[int | None] = mapped_column(
        sa.BigInteger, sa.ForeignKey("host_transactions.id")
    )
    response_code: Mapped[str | None] = mapped_column(sa.String(2))
    retrieval_reference: Mapped[str | None] = mapped_column(sa.String(12))
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class Hold(Base):
    """An authorised withdrawal whose cash has not been confirmed yet."""

    __tablename__ = "holds"
    __table_args__ = (
        sa.CheckConstraint(_in("status", HOLD_STATUSES), name="status"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("posted_amount >= 0 AND posted_amount <= amount", name="posted"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    host_transaction_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("host_transactions.id"), unique=True
    )
    account_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("accounts.id"), index=True)
    terminal_id: Mapped[str] = mapped_column(sa.String(8), sa.ForeignKey("terminals.terminal_id"))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    posted_amount: Mapped[int] = mapped_column(sa.BigInteger)
    usage_day: Mapped[dt.date] = mapped_column(sa.Date)
    status: Mapped[str] = mapped_column(sa.String(10))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    settled_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class JournalEntry(Base):
    """One balanced movement of money; its lines sum to zero (a deferred trigger checks it)."""

    __tablename__ = "journal_entries"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    posted_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    kind: Mapped[str] = mapped_column(sa.String(20))
    description: Mapped[str] = mapped_column(sa.String(80))
    host_transaction_id: Mapped[int | None] = mapped_column(
        sa.BigInteger, sa.ForeignKey("host_transactions.id")
    )


class JournalLine(Base):
    __tablename__ = "journal_lines"
    __table_args__ = (
        sa.CheckConstraint("amount <> 0", name="amount_not_zero"),
        sa.Index("ix_journal_lines_account_id_id", "account_id", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    entry_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("journal_entries.id"), index=True
    )
    account_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("accounts.id"))
    amount: Mapped[int] = mapped_column(sa.BigInteger)  # + credits the account, - debits it
    balance_after: Mapped[int] = mapped_column(sa.BigInteger)
    memo: Mapped[str] = mapped_column(sa.String(40))  # what the account holder sees


class DailyUsage(Base):
    """How much an account has withdrawn or transferred on one calendar day, in cents."""

    __tablename__ = "daily_usage"
    __table_args__ = (
        sa.CheckConstraint(_in("kind", USAGE_KINDS), name="kind"),
        sa.CheckConstraint("used >= 0", name="used_not_negative"),
    )

    account_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("accounts.id"), primary_key=True
    )
    day: Mapped[dt.date] = mapped_column(sa.Date, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    used: Mapped[int] = mapped_column(sa.BigInteger)


OPERATOR_ROLES = ("viewer", "operator", "admin")


class Operator(Base):
    """A person who signs in to the HTTP service; the password is kept as bcrypt only."""

    __tablename__ = "operators"
    __table_args__ = (
        sa.CheckConstraint(_in("role", OPERATOR_ROLES), name="role"),
        sa.CheckConstraint("failed_attempts >= 0", name="failed_attempts"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    role: Mapped[str] = mapped_column(sa.String(10))
    password_hash: Mapped[str] = mapped_column(sa.String(80))
    failed_attempts: Mapped[int] = mapped_column(sa.Integer)
    locked_until: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)


class OperatorSession(Base):
    """A signed-in operator's session: its token ends when unused for SESSION_TIMEOUT_SECONDS."""

    __tablename__ = "operator_sessions"

    session_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    operator_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("operators.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    last_used_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    ended_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


# The ledger's own backstop, created by the migration: every journal entry sums to zero at commit.
BALANCED_ENTRY_FUNCTION = """
CREATE OR REPLACE FUNCTION journal_entry_balanced() RETURNS trigger AS $$
DECLARE
    entry bigint := COALESCE(NEW.entry_id, OLD.entry_id);
    total numeric;
BEGIN
    SELECT COALESCE(SUM(amount), 0) INTO total FROM journal_lines WHERE entry_id = entry;
    IF total <> 0 THEN
        RAISE EXCEPTION 'journal entry % does not balance (sum %)', entry, total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""
BALANCED_ENTRY_TRIGGER = """
CREATE CONSTRAINT TRIGGER journal_lines_balanced
AFTER INSERT OR UPDATE OR DELETE ON journal_lines
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION journal_entry_balanced()
"""
