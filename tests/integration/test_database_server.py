"""The test suite runs against a real PostgreSQL server."""

from collections.abc import Callable

import sqlalchemy as sa


def test_server_is_real_postgresql(make_database: Callable[[], str]) -> None:
    engine = sa.create_engine(make_database())
    with engine.connect() as conn:
        version = conn.scalar(sa.text("SHOW server_version_num"))
    engine.dispose()
    assert int(version) >= 150000
