"""Scratch databases for fleet runs, examples and benchmarks: made for the block, gone after it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from host.database import create_database, drop_database, scratch_database


def databases(server_url: str) -> set[str]:
    engine = sa.create_engine(server_url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.text("SELECT datname FROM pg_database")).scalars())
    finally:
        engine.dispose()


def test_the_database_exists_in_the_block_and_is_dropped_even_while_in_use(
    postgres_url: str,
) -> None:
    with scratch_database(postgres_url, "atm_scratch_test") as url:
        name = make_url(url).database
        assert name is not None and name.startswith("atm_scratch_test_")
        assert name in databases(postgres_url)
        holder = sa.create_engine(url)
        held = holder.connect()  # a session left open must not keep the database alive
        held.execute(sa.text("SELECT 1"))
    assert name not in databases(postgres_url)
    holder.dispose()


def test_a_failing_block_still_drops_the_database(postgres_url: str) -> None:
    with pytest.raises(RuntimeError), scratch_database(postgres_url, "atm_scratch_test") as url:
        name = make_url(url).database
        raise RuntimeError("the run failed")
    assert name not in databases(postgres_url)


@pytest.mark.parametrize("name", ['atm"; DROP DATABASE postgres; --', "ATM", "", "a-b"])
def test_only_names_the_simulator_makes_reach_create_and_drop(postgres_url: str, name: str) -> None:
    before = databases(postgres_url)
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            with pytest.raises(ValueError, match="database name"):
                create_database(conn, name)
            with pytest.raises(ValueError, match="database name"):
                drop_database(conn, name)
            with pytest.raises(ValueError, match="database name"):
                create_database(conn, "atm_ok_name", template=name)
    finally:
        admin.dispose()
    assert databases(postgres_url) == before
