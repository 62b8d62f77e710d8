"""Alembic environment of the bank schema: online migrations only, on PostgreSQL.

The URL comes from the caller (bank_admin passes it in the config attributes) or, from the
command line, from host.database.database_url(load_settings()).
"""

from __future__ import annotations

import logging.config

import sqlalchemy as sa
from alembic import context

from config.settings import load_settings
from host.database import database_url, make_engine
from host.models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        compare_type=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if isinstance(connection, sa.Connection):
        _run(connection)
        return
    url = config.attributes.get("url") or database_url(load_settings())
    engine = make_engine(str(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("the bank schema is migrated online only: unset --sql")
run_migrations_online()
