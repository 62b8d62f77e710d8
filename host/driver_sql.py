"""Plain SQL on the database driver (psycopg) inside a transaction an SQLAlchemy Connection holds:
the bank's request path without the ORM and statement compilation on every call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import pq
from psycopg.rows import namedtuple_row

Params = Mapping[str, object]


class DriverTransaction:
    """Statements run straight on the psycopg connection of an SQLAlchemy Connection.

    The SQLAlchemy Connection keeps the transaction (it commits or rolls back), the pool and the
    engine's events for what it runs itself; this only skips SQLAlchemy's ~80-100 us of Python
    per statement (compilation cache, execution context, result wrapping: measured against
    psycopg's own ~40-60 us). Rows are named tuples; psycopg prepares a statement on the server
    once it has run a few times on a connection. A connection that breaks under a statement
    fails the transaction's rollback too, so SQLAlchemy drops it from the pool and raises its
    "connection invalidated" error, on which the bank runs the request again.

    On a connection in autocommit mode (see `begin`) the transaction's BEGIN is sent with its
    first statement, in one round trip, where psycopg would send and await it on its own. In the
    same way a savepoint and its release, and the writes given to `defer`, wait for the next
    statement and go in its round trip, in the order they were made.
    """

    def __init__(self, connection: sa.Connection) -> None:
        self._connection = connection
        driver = connection.connection.driver_connection
        if not isinstance(driver, psycopg.Connection):
            raise TypeError("DriverTransaction needs a psycopg connection")
        self._driver: psycopg.Connection[Any] = driver
        self._cursor: psycopg.Cursor[Any] = driver.cursor(row_factory=namedtuple_row)
        self._savepoints = 0
        # Statements waiting for the next round trip, each with whether it is a write that must
        # still be sent if nothing follows (a savepoint's own statements need not: COMMIT ends
        # them all).
        self._waiting: list[tuple[str, Params | None, bool]] = []

    @classmethod
    @contextlib.contextmanager
    def begin(cls, engine: sa.Engine) -> Iterator[DriverTransaction]:
        """A transaction on a connection of `engine`, committed when the block ends, rolled back
        if it raises. The engine's "begin" event fires as with `engine.begin()`."""
        with engine.connect() as connection:
            # Autocommit stops psycopg sending BEGIN on its own; psycopg's commit and rollback
            # still end the transaction BEGIN opened, as they look at the server's status. The
            # pool puts the connection's own mode back when it takes the connection back.
            connection.execution_options(isolation_level="AUTOCOMMIT")
            with connection.begin():
                transaction = cls(connection)
                yield transaction
                transaction.send_deferred()

    @property
    def connection(self) -> sa.Connection:
        """The SQLAlchemy Connection of the transaction, for a statement built with SQLAlchemy."""
        self._open()
        return self._connection

    def _begun(self) -> bool:
        return (
            not self._driver.autocommit
            or self._driver.info.transaction_status != pq.TransactionStatus.IDLE
        )

    def _ready(self) -> bool:
        """Whether a statement can go at once: the transaction begun, nothing waiting."""
        return self._begun() and not self._waiting

    @contextlib.contextmanager
    def _round_trip(self) -> Iterator[None]:
        """A pipeline sending BEGIN if the transaction has not begun, then what waits, then the
        block's statements, all in one round trip."""
        begun = self._begun()
        with self._driver.pipeline():
            if not begun:
                self._cursor.execute("BEGIN")
            waiting, self._waiting = self._waiting, []
            for sql, params, _ in waiting:
                self._cursor.execute(sql, params)
            yield

    def _open(self) -> None:
        if not self._ready():
            with self._round_trip():
                pass

    def _execute(self, sql: str, params: Params | None) -> psycopg.Cursor[Any]:
        if self._ready():
            return self._cursor.execute(sql, params)
        with self._round_trip():
            self._cursor.execute(sql, params)
        return self._cursor

    def defer(self, sql: str, params: Params | None = None) -> None:
        """A write whose result is not needed: sent before the next statement, in its round trip
        (at the latest when the transaction of `begin` ends). A failure raises there."""
        self._waiting.append((sql, params, True))

    def send_deferred(self) -> None:
        """Send the deferred writes now, if any (a savepoint's own statements need not go)."""
        if any(write for _, _, write in self._waiting):
            self._open()
        self._waiting.clear()

    def first_of_each(self, statements: Sequence[tuple[str, Params | None]]) -> list[Any]:
        """Run the statements in order in one round trip; the first row of each (None for a
        statement without rows)."""
        cursors = [self._driver.cursor(row_factory=namedtuple_row) for _ in statements]
        with self._round_trip():
            for cursor, (sql, params) in zip(cursors, statements, strict=True):
                cursor.execute(sql, params)
        return [cursor.fetchone() if cursor.description else None for cursor in cursors]

    def run(self, sql: str, params: Params | None = None) -> None:
        self._execute(sql, params)

    def all(self, sql: str, params: Params | None = None) -> list[Any]:
        return self._execute(sql, params).fetchall()

    def first(self, sql: str, params: Params | None = None) -> Any:
        """The first row, or None."""
        return self._execute(sql, params).fetchone()

    def one(self, sql: str, params: Params | None = None) -> Any:
        row = self.first(sql, params)
        if row is None:
            raise LookupError("the statement returned no row")
        return row

    def scalar(self, sql: str, params: Params | None = None) -> Any:
        """The first column of the first row, or None when there is no row."""
        row = self.first(sql, params)
        return None if row is None else row[0]

    def run_and_commit(self, sql: str, params: Params | None = None) -> None:
        """Run the transaction's last statement and commit, both sent at once (psycopg's
        pipeline mode: one round trip instead of two); the SQLAlchemy Connection's own commit
        then finds nothing left to do. A failure raises here, with nothing committed."""
        # COMMIT as a statement: Connection.commit() would wait for a sync of its own before
        # the pipeline's closing one.
        with self._round_trip():
            self._cursor.execute(sql, params)
            self._cursor.execute("COMMIT")

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo what the block wrote if it raises; the transaction goes on. The savepoint and its
        release go with the statements after them, and neither goes if the block ran none."""
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        opening: tuple[str, Params | None, bool] = (f"SAVEPOINT {name}", None, False)
        self._waiting.append(opening)
        try:
            yield
        except BaseException:
            if opening in self._waiting:  # nothing was sent since: nothing to undo
                del self._waiting[self._waiting.index(opening) :]
            elif not self._cursor.connection.broken:
                self._waiting.clear()  # the block's own writes, made after the savepoint went
                self.run(f"ROLLBACK TO SAVEPOINT {name}")
            raise
        if self._waiting and self._waiting[-1] == opening:
            self._waiting.pop()
        else:
            self._waiting.append((f"RELEASE SAVEPOINT {name}", None, False))
