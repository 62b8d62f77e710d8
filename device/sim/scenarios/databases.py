"""The bank database a scenario runner reuses: one copy of the seeded template per runner, put
back into its seeded state (every row, every identity sequence) in one transaction per scenario.

A scenario's host may outlive its scenario by a reply still being written. `fresh` therefore
first makes every engine it handed out before unable to connect, then ends every other
connection to the database, and only then restores it: nothing of the last scenario can write
into the next one's bank.
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
    """An engine of a scenario that is over was asked for a connection."""


def keep_seed(engine: sa.Engine) -> None:
    """In a freshly seeded bank: copy every table's rows and every identity sequence's position
    into schema scenario_seed, from which `ScenarioBank.fresh` restores them (copies of this
    database carry the schema with them)."""
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


def _restore_statement() -> str:
    """One DO block: children emptied before parents, parents filled before children.

    Only the models' own table names go into it (the S608 waivers below): nothing from input.
    """
    tables = [f'"{table.name}"' for table in Base.metadata.sorted_tables]
    # A lock no one can end (the connections were) must fail the reset, not hang it.
    steps = ["PERFORM set_config('lock_timeout', '10s', true);"]
    steps += [f"DELETE FROM public.{name};" for name in reversed(tables)]  # noqa: S608
    steps += [
        f"INSERT INTO public.{name} OVERRIDING SYSTEM VALUE SELECT * FROM {SEED_SCHEMA}.{name};"  # noqa: S608
        for name in tables
    ]
    steps.append(
        "PERFORM setval(name::regclass, coalesce(last_value, start_value), last_value IS NOT NULL)"
        f" FROM {_SEQUENCES};"
    )
    return "DO $restore$ BEGIN\n" + "\n".join(steps) + "\nEND $restore$"


_RESTORE = _restore_statement()
_END_OTHER_CONNECTIONS = sa.text(
    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


class ScenarioBank:
    """One database copied from `template` (which `keep_seed` prepared), reused scenario after
    scenario. `url_for(name)` gives the URL of a database on the same server."""

    def __init__(self, admin: sa.Engine, template: str, url_for: Callable[[str], str]) -> None:
        self._admin = admin
        self.name = f"atm_scenario_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            create_database(conn, self.name, template)
        self.url = url_for(self.name)
        self._restorer = sa.create_engine(self.url, pool_size=1, max_overflow=0)
        self._generation = 0
        self._lock = threading.Lock()
        self._closed = False

    def fresh(self) -> sa.Engine:
        """The bank in its seeded state, and an engine on it that works until the next call."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the scenario bank is closed")
            self._generation += 1
            generation = self._generation
        with self._restorer.begin() as conn:
            conn.execute(_END_OTHER_CONNECTIONS)
            conn.exec_driver_sql(_RESTORE)
        engine = make_engine(self.url, pool_pre_ping=False)

        def refuse_if_stale(*_: object) -> None:
            if generation != self._generation:
                raise StaleScenarioEngine("this scenario is over: its bank was reset")

        sa.event.listen(engine, "checkout", refuse_if_stale)
        return engine

    def close(self) -> None:
        """Drop the database, even with connections still open."""
        with self._lock:
            self._closed = True
            self._generation += 1
        self._restorer.dispose()
        with self._admin.connect() as conn:
            drop_database(conn, self.name)
