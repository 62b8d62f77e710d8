"""Shared test fixtures: a real PostgreSQL server (embedded unless DATABASE_URL is set)."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from config.settings import Settings, load_settings
from host.database import database_url, stop_embedded

TEST_SECRETS = {
    "SECRET_KEY": "test-secret-key-0123456789",
    "PIN_PEPPER": "test-pin-pepper-0123456789",
    "BCRYPT_ROUNDS": "4",
    "ENVIRONMENT": "testing",
}


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a real PostgreSQL server for the whole run."""
    # Not under pytest's 0700 temp dirs: the embedded server runs as its own system user.
    home = Path(tempfile.mkdtemp(prefix="atm-sim-test-"))
    env = {"ATM_SIM_HOME": str(home)}
    if os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = os.environ["DATABASE_URL"]
    yield database_url(load_settings(env))
    stop_embedded()
    shutil.rmtree(home, ignore_errors=True)


_counter = itertools.count()


@pytest.fixture(scope="session")
def make_database(postgres_url: str) -> Iterator[Callable[[], str]]:
    """A factory of new, empty databases on the test server; all dropped at the end."""
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def create() -> str:
        name = f"atm_test_{next(_counter)}_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return make_url(postgres_url).set(database=name).render_as_string(hide_password=False)

    yield create
    with admin.connect() as conn:
        for name in created:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def settings_for(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test, with fast bcrypt and test secrets; keyword overrides by env name."""

    def build(**overrides: str) -> Settings:
        env = dict(TEST_SECRETS)
        env["ATM_SIM_HOME"] = str(tmp_path / "home")
        env["STATEMENT_OUTPUT_DIR"] = str(tmp_path / "statements")
        env.update(overrides)
        return load_settings(env)

    return build
