"""What readiness means for the bank: its database answers and its schema is at the newest
migration; each check says in a few words what it found.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sqlalchemy as sa
from alembic.script import ScriptDirectory

from host.bank_admin import alembic_config

CHECK_TIMEOUT_MS = 2000


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


@cache
def migration_head() -> str:
    head = ScriptDirectory.from_config(alembic_config("unused")).get_current_head()
    return head or ""


def bank_checks(engine: sa.Engine) -> dict[str, Check]:
    """The database and migration checks; never raises."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f"SET LOCAL statement_timeout = {CHECK_TIMEOUT_MS}"))
            conn.execute(sa.text("SELECT 1"))
            # Read directly: alembic's MigrationContext logs a line per call, /ready is polled.
            has_table = conn.scalar(sa.text("SELECT to_regclass('alembic_version')"))
            current = (
                conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
                if has_table
                else None
            )
    except sa.exc.SQLAlchemyError as err:
        reason = str(err.orig if isinstance(err, sa.exc.DBAPIError) else err)
        first = reason.strip().splitlines()[0] if reason.strip() else type(err).__name__
        return {
            "database": Check(False, f"not reachable: {first}"),
            "migrations": Check(False, "unknown: the database is not reachable"),
        }
    head = migration_head()
    if current == head:
        migrations = Check(True, f"at head {head}")
    else:
        migrations = Check(
            False, f"at {current or 'no revision'}, head is {head}: run `atm-sim db upgrade`"
        )
    return {"database": Check(True, "reachable"), "migrations": migrations}
