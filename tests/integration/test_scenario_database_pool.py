"""The scenario runner's pool of bank databases: fresh copies made ahead, never handed out twice,
a used one dropped even with a connection still open, nothing left behind."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from device.sim.scenarios.databases import DatabasePool


@pytest.fixture
def admin(postgres_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture
def template(admin: sa.Engine, postgres_url: str) -> Iterator[str]:
    name = f"atm_pool_template_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = sa.create_engine(_url(postgres_url, name))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE account (number text PRIMARY KEY, cents bigint)"))
        conn.execute(sa.text("INSERT INTO account VALUES ('10000003', 75000)"))
    engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _url(server_url: str, database: str) -> str:
    return make_url(server_url).set(database=database).render_as_string(False)


def _databases(admin: sa.Engine) -> set[str]:
    with admin.connect() as conn:
        return set(conn.execute(sa.text("SELECT datname FROM pg_database")).scalars())


def _cents(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT cents FROM account")).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.parametrize("size", [2, 0])
def test_each_take_is_a_fresh_copy_and_a_used_one_is_dropped(
    admin: sa.Engine, template: str, postgres_url: str, size: int
) -> None:
    before = _databases(admin)
    pool = DatabasePool(admin, template, size)
    try:
        assert pool.wait_ready(size, timeout=60)
        assert pool.ready() == size
        handed: list[str] = []
        for _ in range(4):
            name = pool.take()
            assert name not in handed and name != template
            handed.append(name)
            url = _url(postgres_url, name)
            assert _cents(url) == 75000  # as seeded, whatever the one before it did
            # The scenario spends money, and its host keeps a connection open past the end.
            host = sa.create_engine(url)
            lingering = host.connect()
            lingering.execute(sa.text("UPDATE account SET cents = 1"))
            lingering.commit()
            pool.release(name)
            if size == 0:
                assert name not in _databases(admin)  # dropped at once, connection and all
            lingering.invalidate()
            host.dispose()
        if size:
            assert pool.taken_ready >= 1
    finally:
        pool.close()
    assert _databases(admin) == before  # every copy dropped, the template kept
    with pytest.raises(RuntimeError, match="closed"):
        pool.take()
