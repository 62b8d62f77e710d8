"""Where Celery's messages and results travel: Redis when REDIS_URL is set, else a database of
its own on the bank's PostgreSQL server (kombu's SQLAlchemy transport), so nothing else is needed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from config.settings import Settings, SettingsError
from host.database import create_database, database_url

log = logging.getLogger(__name__)

TASKS_DATABASE = "atm_tasks"
# A fleet shard may run for hours; Redis gives an unacknowledged task to another worker after
# this long, so it must outlast the longest task.
REDIS_VISIBILITY_SECONDS = 12 * 3600


@dataclass(frozen=True)
class TaskTransport:
    broker_url: str
    result_backend: str
    description: str  # one line for start-up messages, without any password
    transport_options: dict[str, Any]

    @property
    def can_broadcast(self) -> bool:
        """Redis carries Celery's broadcast commands (ping, inspect); the database does not."""
        return self.broker_url.startswith(("redis://", "rediss://", "unix://"))


def task_transport(settings: Settings) -> TaskTransport:
    """The broker and result backend the product's Celery app uses with these settings.

    TASK_BROKER=database keeps tasks on PostgreSQL even with REDIS_URL set: in the cloud the API's
    Redis is a sidecar of its own task, which a worker in another task cannot reach.
    """
    if settings.task_broker == "redis" and not settings.redis_url:
        raise SettingsError("TASK_BROKER=redis: set REDIS_URL too, or use auto or database")
    if settings.redis_url and settings.task_broker != "database":
        return TaskTransport(
            settings.redis_url,
            settings.redis_url,
            f"Redis at {_redis_place(settings.redis_url)} (REDIS_URL)",
            {"visibility_timeout": REDIS_VISIBILITY_SECONDS},
        )
    bank = make_url(database_url(settings))
    database = _tasks_database(bank)
    url = bank.set(database=database).render_as_string(hide_password=False)
    return TaskTransport(
        "sqla+" + url,
        "db+" + url,
        f"PostgreSQL database {database} on {_database_place(bank)} "
        f"(kombu's SQLAlchemy transport; {_why_database(settings)})",
        # kombu hands this transport's options to create_engine, so its polling interval cannot
        # be set here: a task waits up to a second (kombu's default) before a worker sees it.
        {},
    )


def _why_database(settings: Settings) -> str:
    return "TASK_BROKER=database" if settings.redis_url else "REDIS_URL is unset"


def _redis_place(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"


def _database_place(url: sa.URL) -> str:
    if url.host:
        return f"{url.host}:{url.port or 5432}"
    socket_dir = url.query.get("host")  # the embedded server listens on a Unix socket
    return f"the socket in {socket_dir}" if socket_dir else "the local socket"


def _tasks_database(bank: sa.URL) -> str:
    """A database beside the bank's for the task tables, so the bank's schema stays exactly what
    its migrations make; the bank's own database when the server refuses to create one."""
    engine = sa.create_engine(bank, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if _exists(conn):
                return TASKS_DATABASE
            try:
                create_database(conn, TASKS_DATABASE)
            except sa.exc.DBAPIError as err:
                if _exists(conn):  # another worker made it at the same moment
                    return TASKS_DATABASE
                log.warning(
                    "cannot create database %s (%s); task tables go in the bank's database",
                    TASKS_DATABASE,
                    str(err.orig).splitlines()[0] if err.orig else err,
                )
                return str(bank.database)
    finally:
        engine.dispose()
    return TASKS_DATABASE


def _exists(conn: sa.Connection) -> bool:
    found = conn.scalar(
        sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": TASKS_DATABASE}
    )
    return found is not None
