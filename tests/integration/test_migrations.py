"""The Alembic migrations build exactly the models' schema, go down and up again and work from the
command line; the database's own guards (CHECKs, balanced entries, unique keys) hold."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from config.settings import Settings
from host.bank_admin import alembic_config, upgrade_database
from host.models import Base

REPO = Path(__file__).resolve().parents[2]
TABLES = {
    "customers",
    "accounts",
    "cards",
    "card_accounts",
    "terminals",
    "host_transactions",
    "holds",
    "journal_entries",
    "journal_lines",
    "daily_usage",
}


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config("unused")).get_current_head()
    assert head is not None
    return head


def _version(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def test_migrations_match_the_models_and_go_down_and_up(
    make_database: Callable[[], str], settings_for: Callable[..., Settings]
) -> None:
    url = make_database()
    upgrade_database(settings_for(DATABASE_URL=url))
    assert _version(url) == _head()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )
            assert diff == []
            assert set(sa.inspect(conn).get_table_names()) >= TABLES
        command.downgrade(alembic_config(url), "base")
        with engine.connect() as conn:
            assert set(sa.inspect(conn).get_table_names()) == {"alembic_version"}
        upgrade_database(settings_for(DATABASE_URL=url))
        with engine.connect() as conn:
            assert set(sa.inspect(conn).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_alembic_command_line_from_the_repository_root(make_database: Callable[[], str]) -> None:
    url = make_database()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["DATABASE_URL"] = url
    alembic = Path(sys.executable).with_name("alembic")
    result = subprocess.run(
        [str(alembic), "upgrade", "head"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert _version(url) == _head()


@pytest.fixture
def schema(make_database: Callable[[], str], settings_for: Callable[..., Settings]) -> sa.Engine:
    url = make_database()
    upgrade_database(settings_for(DATABASE_URL=url))
    return sa.create_engine(url)


def _customer_account(conn: sa.Connection, **values: object) -> int:
    now = dt.datetime.now(dt.UTC)
    customer = conn.scalar(
        sa.text("INSERT INTO customers (name, created_at) VALUES ('T', :n) RETURNING id"),
        {"n": now},
    )
    row = {
        "number": "1",
        "kind": "checking",
        "customer_id": customer,
        "currency": "978",
        "ledger_balance": 100,
        "available_balance": 100,
        "created_at": now,
    }
    row.update(values)
    account = conn.scalar(
        sa.text(
            "INSERT INTO accounts (number, kind, customer_id, currency, ledger_balance, "
            "available_balance, created_at) VALUES (:number, :kind, :customer_id, :currency, "
            ":ledger_balance, :available_balance, :created_at) RETURNING id"
        ),
        row,
    )
    return int(account)


def test_database_refuses_negative_balances(schema: sa.Engine) -> None:
    with schema.begin() as conn:
        account = _customer_account(conn)
    for update in (
        "UPDATE accounts SET available_balance = -1 WHERE id = :id",
        "UPDATE accounts SET ledger_balance = -1, available_balance = -1 WHERE id = :id",
        "UPDATE accounts SET available_balance = 101 WHERE id = :id",
    ):
        refused = pytest.raises(sa.exc.IntegrityError, match="customer_balances_not_negative")
        with refused, schema.begin() as conn:
            conn.execute(sa.text(update), {"id": account})
    schema.dispose()


def test_database_refuses_an_unbalanced_journal_entry(schema: sa.Engine) -> None:
    with schema.begin() as conn:
        account = _customer_account(conn)
    with pytest.raises(sa.exc.IntegrityError, match="does not balance"), schema.begin() as conn:
        entry = conn.scalar(
            sa.text(
                "INSERT INTO journal_entries (posted_at, kind, description) "
                "VALUES (now(), 'test', 'x') RETURNING id"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO journal_lines (entry_id, account_id, amount, balance_after, memo) "
                "VALUES (:e, :a, 5, 105, 'x')"
            ),
            {"e": entry, "a": account},
        )
    schema.dispose()


def test_database_refuses_a_second_claim_of_one_idempotency_key(schema: sa.Engine) -> None:
    insert = sa.text(
        "INSERT INTO host_transactions (terminal_id, stan, business_date, kind, transmitted_at, "
        "received_at, amount) VALUES ('ATM1', '000001', '2026-11-28', 'echo', now(), now(), 0)"
    )
    with schema.begin() as conn:
        settlement = conn.scalar(
            sa.text(
                "INSERT INTO accounts (number, kind, currency, ledger_balance, available_balance, "
                "created_at) VALUES ('S', 'atm_settlement', '978', 0, 0, now()) RETURNING id"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO terminals (terminal_id, settlement_account_id, tmk_sealed, "
                "pin_key_tdes_sealed, pin_key_aes_sealed, mac_key_sealed, created_at) "
                "VALUES ('ATM1', :s, '', '', '', '', now())"
            ),
            {"s": settlement},
        )
        conn.execute(insert)
    refused = pytest.raises(sa.exc.IntegrityError, match="uq_host_transactions_idempotency")
    with refused, schema.begin() as conn:
        conn.execute(insert)
    schema.dispose()


def test_migrations_of_several_databases_at_once_in_one_process_all_finish(
    make_database: Callable[[], str], settings_for: Callable[..., Settings]
) -> None:
    # Alembic keeps the migration under way in module globals: two threads migrating at once
    # (two scenario runs started together from the HTTP API) must not run into each other.
    urls = [make_database() for _ in range(4)]
    barrier = threading.Barrier(len(urls))
    failures: list[BaseException] = []

    def migrate(url: str) -> None:
        barrier.wait(timeout=30)
        try:
            upgrade_database(settings_for(DATABASE_URL=url))
        except BaseException as err:
            failures.append(err)

    threads = [threading.Thread(target=migrate, args=(url,), daemon=True) for url in urls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a migration hung"
    assert failures == []
    assert [_version(url) for url in urls] == [_head()] * len(urls)
