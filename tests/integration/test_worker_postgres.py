"""Celery with REDIS_URL unset, on a fresh machine's only server: tasks travel through the bank's
PostgreSQL (kombu's SQLAlchemy transport) to a real `atm-sim worker` process and back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from config.settings import Settings
from device.sim.worker.celery_app import TABLES_LOCK, make_celery
from device.sim.worker.tasks import SCENARIO_BATCH_TASK, STATEMENT_TASK
from device.sim.worker.transport import TASKS_DATABASE, task_transport
from tests.conftest import TEST_SECRETS
from tests.integration.worker_processes import seeded_bank, worker_environment, workers


def test_transport_is_a_database_of_its_own_beside_the_bank(
    seeded_url: str, settings_for: Callable[..., Settings]
) -> None:
    transport = task_transport(settings_for(DATABASE_URL=seeded_url))
    assert transport.broker_url.startswith("sqla+postgresql+psycopg://")
    assert make_url(transport.broker_url.removeprefix("sqla+")).database == TASKS_DATABASE
    assert "REDIS_URL is unset" in transport.description
    assert "@" not in transport.description  # no user or password in the start-up line
    assert not transport.can_broadcast
    engine = sa.create_engine(seeded_url)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert not {t for t in tables if t.startswith(("kombu", "celery"))}  # bank schema untouched


@pytest.mark.timeout(60)
def test_task_tables_are_made_under_an_advisory_lock(
    seeded_url: str, settings_for: Callable[..., Settings]
) -> None:
    """Two workers starting together on a new database collided making kombu's queue row; the
    tables are made under one lock, so they take turns. Exact: the lock's waiter is seen in
    pg_locks while this test holds it, and the app is built only once it is released. (The
    task database is shared by every test on the server: its tables are left as they are.)"""
    settings = settings_for(DATABASE_URL=seeded_url)
    tasks_url = task_transport(settings).broker_url.removeprefix("sqla+")
    engine = sa.create_engine(tasks_url, isolation_level="AUTOCOMMIT")
    outcome: list[object] = []

    def build() -> None:
        try:
            outcome.append(make_celery(settings))
        except Exception as err:  # reported by the assertion below
            outcome.append(err)

    try:
        with engine.connect() as holder:
            holder.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": TABLES_LOCK})
            maker = threading.Thread(target=build)
            maker.start()
            waiting = sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND objid = :key"
            )
            deadline = time.monotonic() + 30
            while not holder.scalar(waiting, {"key": TABLES_LOCK}):
                assert maker.is_alive(), f"built without waiting for the lock: {outcome}"
                assert time.monotonic() < deadline, "no one waited for the lock"
                time.sleep(0.01)
            assert outcome == []
            holder.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": TABLES_LOCK})
            maker.join(timeout=30)
            queues = holder.scalars(sa.text("SELECT name FROM kombu_queue")).all()
            tables = set(sa.inspect(holder).get_table_names())
    finally:
        engine.dispose()
    assert len(outcome) == 1 and not isinstance(outcome[0], Exception), outcome
    assert queues.count("celery") == 1
    assert {"kombu_queue", "kombu_message", "celery_taskmeta"} <= tables


@pytest.mark.timeout(120)
def test_statement_and_scenario_batch_through_postgres(
    seeded_url: str, settings_for: Callable[..., Settings], tmp_path: Path
) -> None:
    out_dir = tmp_path / "statements"
    env = worker_environment(
        {
            **TEST_SECRETS,
            "DATABASE_URL": seeded_url,
            "STATEMENT_OUTPUT_DIR": str(out_dir),
            "ATM_SIM_HOME": str(tmp_path),
        }
    )
    app = make_celery(settings_for(DATABASE_URL=seeded_url))
    with workers(env, tmp_path) as logs:
        statement = app.send_task(STATEMENT_TASK, args=["10000001", "2020-01-01", "2030-12-31"])
        batch = app.send_task(SCENARIO_BATCH_TASK, args=[["balance_inquiry"]], kwargs={"seed": 5})
        pdf = statement.get(timeout=60)
        scenarios = batch.get(timeout=90)
    assert "tasks through PostgreSQL database atm_tasks" in logs[0].read_text()
    assert pdf["location"] == "file"
    path = Path(pdf["path"])
    assert path.parent == out_dir and path.read_bytes().startswith(b"%PDF")
    assert scenarios["ok"] is True, scenarios["results"]
    assert [r["status"] for r in scenarios["results"]] == ["passed"]
    assert 'tests="1"' in scenarios["junit_xml"]


@pytest.fixture
def seeded_url(make_database: Callable[[], str], tmp_path: Path) -> str:
    return seeded_bank(make_database, tmp_path / "seed-home")
