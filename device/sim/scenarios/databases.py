"""The bank database a scenario runner reuses: one copy of the seeded template per runner, put
back into its seeded state (every row, every identity sequence) in one transaction per scenario,
and one engine on it whose connections and compiled statements stay warm from one to the next.

A scenario's host may outlive its scenario by a reply still being written. Each scenario gets
its own view of the engine, and `fresh` first refuses every statement of the views it handed out
before, waits for those already running, ends every connection left inside a transaction, and
only then restores the bank: nothing of the last scenario can write into the next one's bank.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import sqlalchemy as sa

from host.database import create_database, drop_database, make_engine
from host.models import Base

SEED_SCHEMA = "scenario_seed"
_SEQUENCES = f"{SEED_SCHEMA}.identity_sequences"


class StaleScenarioEngine(RuntimeError):
    """A statement came through the engine view of a scenario that is over."""


def keep_seed(engine: sa.Engine) -> None:
    """In a freshly seeded bank: copy every table's rows and every identity sequence's position
    into schema scenario_seed, and the function that restores them (`ScenarioBank.fresh` calls
    it); copies of this database carry both with them."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {SEED_SCHEMA}"))
        for table in Base.metadata.sorted_tables:
            conn.execute(
                sa.text(f'CREATE TABLE {SEED_SCHEMA}."{table.name}" AS TABLE public."{table.name}"')
            )
        conn.execute(
            sa.text(
                f"CREATE TABLE {_SEQUENCES} AS SELECT format('%I.%I', schemaname, sequencename) "  # noqa: S608
                "AS name, start_value, last_value FROM pg_sequences WHERE schemaname = 'public'"
            )
        )
        conn.exec_driver_sql(_restore_function())


def _restore_function() -> str:
    """scenario_seed.restore(): ends every other connection still inside a transaction, then
    empties children before parents and fills parents before children; returns how many
    connections it ended. A function, not a DO block: compiled once per connection.

    Only the models' own table names go into it (the S608 waivers below): nothing from input.
    """
    tables = [f'"{table.name}"' for table in Base.metadata.sorted_tables]
    # An idle pooled connection holds nothing; any other state is a transaction of the last
    # scenario.
    steps = [
        "SELECT count(pg_terminate_backend(pid, 5000)) INTO ended FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle';",
        # A lock no one can end (the connections were) must fail the reset, not hang it.
        "PERFORM set_config('lock_timeout', '10s', true);",
        # A reset need not wait for its WAL to reach the disk (4-5 ms): a server crash ends the
        # run anyway, and the next scenario's own transactions commit as the bank always does.
        "PERFORM set_config('synchronous_commit', 'off', true);",
    ]
    steps += [f"DELETE FROM public.{name};" for name in reversed(tables)]  # noqa: S608
    steps += [
        f"INSERT INTO public.{name} OVERRIDING SYSTEM VALUE SELECT * FROM {SEED_SCHEMA}.{name};"  # noqa: S608
        for name in tables
    ]
    steps.append(
        "PERFORM setval(name::regclass, coalesce(last_value, start_value), last_value IS NOT NULL)"
        f" FROM {_SEQUENCES};"
    )
    steps.append("RETURN ended;")
    return (
        f"CREATE FUNCTION {_RESTORE_FUNCTION}() RETURNS integer LANGUAGE plpgsql AS $restore$\n"
        "DECLARE ended integer;\nBEGIN\n" + "\n".join(steps) + "\nEND $restore$"
    )


_RESTORE_FUNCTION = f"{SEED_SCHEMA}.restore"
_GENERATION = "scenario_generation"
DRAIN_SECONDS = 10.0


class ScenarioBank:
    """One database copied from `template` (which `keep_seed` prepared), reused scenario after
    scenario. `url_for(name)` gives the URL of a database on the same server."""

    def __init__(self, admin: sa.Engine, template: str, url_for: Callable[[str], str]) -> None:
        self._admin = admin
        self.name = f"atm_scenario_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            create_database(conn, self.name, template)
        url = url_for(self.name)
        self._restorer = sa.create_engine(url, pool_size=1, max_overflow=0)
        self._engine = make_engine(url, pool_pre_ping=False)
        self._generation = 0
        self._running: set[int] = set()  # execution contexts of statements under way
        self._cond = threading.Condition()
        self._closed = False
        # A transaction is refused as it begins: the bank runs its statements on the driver,
        # where no statement hook sees them (restore() ends any transaction still open).
        sa.event.listen(self._engine, "begin", self._admit_transaction)
        sa.event.listen(self._engine, "before_cursor_execute", self._admit)
        sa.event.listen(self._engine, "after_cursor_execute", self._finished)
        sa.event.listen(self._engine, "handle_error", self._failed)

    def fresh(self) -> sa.Engine:
        """The bank in its seeded state, and a view of its engine that works until the next call."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the scenario bank is closed")
            self._generation += 1
            generation = self._generation
            if not self._cond.wait_for(lambda: not self._running, DRAIN_SECONDS):
                raise RuntimeError("a statement of the last scenario is still running")
        with self._restorer.begin() as conn:
            ended = conn.exec_driver_sql(f"SELECT {_RESTORE_FUNCTION}()").scalar_one()
        if ended:
            self._engine.dispose()  # the pool may hold the connections just ended
        return self._engine.execution_options(**{_GENERATION: generation})

    def close(self) -> None:
        """Drop the database, even with connections still open."""
        with self._cond:
            self._closed = True
            self._generation += 1
        self._engine.dispose()
        self._restorer.dispose()
        with self._admin.connect() as conn:
            drop_database(conn, self.name)

    # ----- the gate every statement passes ------------------------------------------------------

    def _admit_transaction(self, conn: sa.Connection) -> None:
        with self._cond:
            self._refuse_stale(conn)

    def _admit(self, conn: sa.Connection, cursor: object, statement: str, *args: object) -> None:
        context = args[-2]
        with self._cond:
            self._refuse_stale(conn)
            self._running.add(id(context))

    def _refuse_stale(self, conn: sa.Connection) -> None:
        if conn.get_execution_options().get(_GENERATION) != self._generation:
            raise StaleScenarioEngine("this scenario is over: its bank was reset")

    def _finished(self, conn: sa.Connection, cursor: object, statement: str, *args: object) -> None:
        self._done(args[-2])

    def _failed(self, context: sa.engine.ExceptionContext) -> None:
        self._done(context.execution_context)

    def _done(self, context: object) -> None:
        with self._cond:
            self._running.discard(id(context))
            self._cond.notify_all()
