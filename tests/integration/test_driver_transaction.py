"""The bank's transactions on the driver: deferred writes and savepoints wait for the next
statement's round trip, and still do exactly what they say (on the real database)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from host.driver_sql import DriverTransaction
from tests.integration.test_bank_round_trips import traced_round_trips

INSERT = "INSERT INTO driver_probe (name) VALUES (%(name)s)"


@pytest.fixture
def engine(bank_engine: sa.Engine) -> Iterator[sa.Engine]:
    with bank_engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE driver_probe (name text PRIMARY KEY)")
    try:
        yield bank_engine
    finally:
        with bank_engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE driver_probe")


def names(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.exec_driver_sql("SELECT name FROM driver_probe ORDER BY name").scalars())


def test_a_deferred_write_goes_with_the_next_statement_or_at_the_end(engine: sa.Engine) -> None:
    with DriverTransaction.begin(engine) as tx:
        tx.defer(INSERT, {"name": "a"})
        assert tx.scalar("SELECT count(*) FROM driver_probe") == 1
        tx.defer(INSERT, {"name": "b"})  # nothing follows: sent as the transaction ends
    assert names(engine) == ["a", "b"]


def test_a_savepoint_undoes_its_block_and_keeps_what_came_before(engine: sa.Engine) -> None:
    with DriverTransaction.begin(engine) as tx:
        tx.defer(INSERT, {"name": "before"})
        with pytest.raises(LookupError), tx.savepoint():
            tx.defer(INSERT, {"name": "never sent"})
            raise LookupError  # before anything of the block went
        with pytest.raises(LookupError), tx.savepoint():
            tx.run(INSERT, {"name": "sent, then undone"})
            tx.defer(INSERT, {"name": "never sent either"})
            raise LookupError
        with pytest.raises(psycopg.errors.UniqueViolation), tx.savepoint():
            tx.run(INSERT, {"name": "before"})  # fails on the server
        with tx.savepoint():
            tx.defer(INSERT, {"name": "kept"})
    assert names(engine) == ["before", "kept"]


def test_a_savepoint_costs_no_round_trip_of_its_own(engine: sa.Engine) -> None:
    with DriverTransaction.begin(engine) as tx:
        tx.run(INSERT, {"name": "first"})

        def in_a_savepoint() -> None:
            with tx.savepoint():
                tx.run(INSERT, {"name": "inside"})
            with tx.savepoint():
                pass
            tx.run_and_commit(INSERT, {"name": "last"})

        # the savepoint with the insert, its release with the last statement and COMMIT
        assert traced_round_trips(tx.connection.connection.driver_connection, in_a_savepoint) == 2
    assert names(engine) == ["first", "inside", "last"]
