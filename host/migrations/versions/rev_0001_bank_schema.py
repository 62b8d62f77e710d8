"""The bank schema: customers, accounts, cards, terminals, ledger, holds, host records, limits.

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from host.models import BALANCED_ENTRY_FUNCTION, BALANCED_ENTRY_TRIGGER

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CUSTOMER_KINDS = "kind IN ('checking', 'savings')"


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True)


def _at(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "customers",
        _id(),
        sa.Column("name", sa.String(120), nullable=False),
        _at("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_customers"),
        sa.UniqueConstraint("name", name="uq_customers_name"),
    )
    op.create_table(
        "accounts",
        _id(),
        sa.Column("number", sa.String(34), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("ledger_balance", sa.BigInteger(), nullable=False),
        sa.Column("available_balance", sa.BigInteger(), nullable=False),
        _at("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.UniqueConstraint("number", name="uq_accounts_number"),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_accounts_customer_id_customers"
        ),
        sa.CheckConstraint(
            "kind IN ('checking', 'savings', 'bank_equity', 'atm_settlement')",
            name="ck_accounts_kind",
        ),
        sa.CheckConstraint(
            f"NOT ({CUSTOMER_KINDS}) OR (ledger_balance >= 0 AND available_balance >= 0 "
            "AND available_balance <= ledger_balance)",
            name="ck_accounts_customer_balances_not_negative",
        ),
        sa.CheckConstraint(
            f"({CUSTOMER_KINDS}) = (customer_id IS NOT NULL)",
            name="ck_accounts_customer_owns_customer_accounts",
        ),
    )
    op.create_index("ix_accounts_customer_id", "accounts", ["customer_id"])
    op.create_table(
        "cards",
        _id(),
        sa.Column("pan_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("masked_pan", sa.String(19), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("expiry", sa.String(4), nullable=False),
        sa.Column("pin_hash", sa.String(80), nullable=False),
        sa.Column("failed_pin_attempts", sa.Integer(), nullable=False),
        _at("locked_until", nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        _at("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_cards"),
        sa.UniqueConstraint("pan_hash", name="uq_cards_pan_hash"),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_cards_customer_id_customers"
        ),
        sa.CheckConstraint(
            "status IN ('active', 'locked', 'captured', 'blocked')", name="ck_cards_status"
        ),
        sa.CheckConstraint("failed_pin_attempts >= 0", name="ck_cards_failed_pin_attempts"),
        sa.CheckConstraint("expiry ~ '^[0-9]{2}(0[1-9]|1[0-2])$'", name="ck_cards_expiry_yymm"),
    )
    op.create_index("ix_cards_customer_id", "cards", ["customer_id"])
    op.create_table(
        "card_accounts",
        sa.Column("card_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("account_type", sa.String(20), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("card_id", "account_id", name="pk_card_accounts"),
        sa.ForeignKeyConstraint(["card_id"], ["cards.id"], name="fk_card_accounts_card_id_cards"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_card_accounts_account_id_accounts"
        ),
        sa.UniqueConstraint("card_id", "account_type", name="uq_card_accounts_card_type"),
        sa.CheckConstraint(
            "account_type IN ('checking', 'savings')", name="ck_card_accounts_account_type"
        ),
    )
    op.create_index(
        "uq_card_accounts_one_default",
        "card_accounts",
        ["card_id"],
        unique=True,
        postgresql_where=sa.text("is_default"),
    )
    op.create_table(
        "terminals",
        _id(),
        sa.Column("terminal_id", sa.String(8), nullable=False),
        sa.Column("settlement_account_id", sa.BigInteger(), nullable=False),
        sa.Column("tmk_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("pin_key_tdes_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("pin_key_aes_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("mac_key_sealed", sa.LargeBinary(), nullable=False),
        _at("last_sign_on_at", nullable=True),
        _at("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_terminals"),
        sa.UniqueConstraint("terminal_id", name="uq_terminals_terminal_id"),
        sa.UniqueConstraint("settlement_account_id", name="uq_terminals_settlement_account_id"),
        sa.ForeignKeyConstraint(
            ["settlement_account_id"],
            ["accounts.id"],
            name="fk_terminals_settlement_account_id_accounts",
        ),
    )
    op.create_table(
        "host_transactions",
        _id(),
        sa.Column("terminal_id", sa.String(8), nullable=False),
        sa.Column("stan", sa.String(6), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("request_digest", sa.LargeBinary(32), nullable=True),
        _at("transmitted_at"),
        _at("received_at"),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("card_id", sa.BigInteger(), nullable=True),
        sa.Column("account_id", sa.BigInteger(), nullable=True),
        sa.Column("original_id", sa.BigInteger(), nullable=True),
        sa.Column("response_code", sa.String(2), nullable=True),
        sa.Column("retrieval_reference", sa.String(12), nullable=True),
        sa.Column("response", postgresql.JSONB(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_host_transactions"),
        sa.UniqueConstraint(
            "terminal_id", "stan", "business_date", name="uq_host_transactions_idempotency"
        ),
        sa.ForeignKeyConstraint(
            ["terminal_id"],
            ["terminals.terminal_id"],
            name="fk_host_transactions_terminal_id_terminals",
        ),
        sa.ForeignKeyConstraint(
            ["card_id"], ["cards.id"], name="fk_host_transactions_card_id_cards"
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_host_transactions_account_id_accounts"
        ),
        sa.ForeignKeyConstraint(
            ["original_id"],
            ["host_transactions.id"],
            name="fk_host_transactions_original_id_host_transactions",
        ),
        sa.CheckConstraint("stan ~ '^[0-9]{6}$'", name="ck_host_transactions_stan_digits"),
        sa.CheckConstraint("amount >= 0", name="ck_host_transactions_amount"),
    )
    op.create_table(
        "holds",
        _id(),
        sa.Column("host_transaction_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("terminal_id", sa.String(8), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("posted_amount", sa.BigInteger(), nullable=False),
        sa.Column("usage_day", sa.Date(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        _at("created_at"),
        _at("settled_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_holds"),
        sa.UniqueConstraint("host_transaction_id", name="uq_holds_host_transaction_id"),
        sa.ForeignKeyConstraint(
            ["host_transaction_id"],
            ["host_transactions.id"],
            name="fk_holds_host_transaction_id_host_transactions",
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_holds_account_id_accounts"
        ),
        sa.ForeignKeyConstraint(
            ["terminal_id"], ["terminals.terminal_id"], name="fk_holds_terminal_id_terminals"
        ),
        sa.CheckConstraint("status IN ('held', 'completed', 'reversed')", name="ck_holds_status"),
        sa.CheckConstraint("amount > 0", name="ck_holds_amount_positive"),
        sa.CheckConstraint(
            "posted_amount >= 0 AND posted_amount <= amount", name="ck_holds_posted"
        ),
    )
    op.create_index("ix_holds_account_id", "holds", ["account_id"])
    op.create_table(
        "journal_entries",
        _id(),
        _at("posted_at"),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("description", sa.String(80), nullable=False),
        sa.Column("host_transaction_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_journal_entries"),
        sa.ForeignKeyConstraint(
            ["host_transaction_id"],
            ["host_transactions.id"],
            name="fk_journal_entries_host_transaction_id_host_transactions",
        ),
    )
    op.create_table(
        "journal_lines",
        _id(),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("memo", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_journal_lines"),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["journal_entries.id"], name="fk_journal_lines_entry_id_journal_entries"
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_journal_lines_account_id_accounts"
        ),
        sa.CheckConstraint("amount <> 0", name="ck_journal_lines_amount_not_zero"),
    )
    op.create_index("ix_journal_lines_entry_id", "journal_lines", ["entry_id"])
    op.create_index("ix_journal_lines_account_id_id", "journal_lines", ["account_id", "id"])
    op.execute(BALANCED_ENTRY_FUNCTION)
    op.execute(BALANCED_ENTRY_TRIGGER)
    op.create_table(
        "daily_usage",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "day", "kind", name="pk_daily_usage"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_daily_usage_account_id_accounts"
        ),
        sa.CheckConstraint("kind IN ('withdrawal', 'transfer')", name="ck_daily_usage_kind"),
        sa.CheckConstraint("used >= 0", name="ck_daily_usage_used_not_negative"),
    )


def downgrade() -> None:
    op.drop_table("daily_usage")
    op.execute("DROP TRIGGER IF EXISTS journal_lines_balanced ON journal_lines")
    op.execute("DROP FUNCTION IF EXISTS journal_entry_balanced()")
    op.drop_table("journal_lines")
    op.drop_table("journal_entries")
    op.drop_table("holds")
    op.drop_table("host_transactions")
    op.drop_table("terminals")
    op.drop_table("card_accounts")
    op.drop_table("cards")
    op.drop_table("accounts")
    op.drop_table("customers")
