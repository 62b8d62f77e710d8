"""The scenario runner's bank: one database per runner, put back exactly as seeded (every row,
every identity sequence) before each scenario, with nothing of the last scenario left able to
write into it; dropped when the runner closes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from config.settings import load_settings
from device.sim.scenarios.databases import ScenarioBank, StaleScenarioEngine
from device.sim.scenarios.runner import ScenarioRunner
from host.driver_sql import DriverTransaction
from host.models import Base
from tests.conftest import TEST_SECRETS

Snapshot = dict[str, list[tuple[object, ...]]]


@pytest.fixture(scope="module")
def template(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The seeded template exactly as the scenario runner makes it."""
    settings = load_settings({**TEST_SECRETS, "ATM_SIM_HOME": str(tmp_path_factory.mktemp("home"))})
    with ScenarioRunner(postgres_url, settings) as runner:
        yield runner.template()


@pytest.fixture
def admin(postgres_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture
def url_for(postgres_url: str) -> Callable[[str], str]:
    return lambda name: make_url(postgres_url).set(database=name).render_as_string(False)


@pytest.fixture
def bank(admin: sa.Engine, template: str, url_for: Callable[[str], str]) -> Iterator[ScenarioBank]:
    made = ScenarioBank(admin, template, url_for)
    yield made
    made.close()


def snapshot(engine: sa.Engine) -> Snapshot:
    """Every row of every table, and every sequence's position."""
    found: Snapshot = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = conn.execute(sa.select(table)).all()
            found[table.name] = sorted((tuple(row) for row in rows), key=repr)
        found["sequences"] = [
            tuple(row)
            for row in conn.execute(
                sa.text(
                    "SELECT sequencename, last_value FROM pg_sequences "
                    "WHERE schemaname = 'public' ORDER BY sequencename"
                )
            )
        ]
    return found


def spoil(engine: sa.Engine) -> None:
    """What a scenario might leave: every table emptied, every sequence moved on."""
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
        conn.execute(
            sa.text(
                "SELECT nextval(format('%I.%I', schemaname, sequencename)) FROM pg_sequences "
                "WHERE schemaname = 'public'"
            )
        )


def test_each_scenario_gets_the_bank_exactly_as_seeded(
    template: str, url_for: Callable[[str], str], bank: ScenarioBank
) -> None:
    template_engine = sa.create_engine(url_for(template))
    seeded = snapshot(template_engine)
    template_engine.dispose()
    assert seeded["accounts"] and seeded["cards"] and seeded["terminals"]
    assert any(last is not None for _, last in seeded["sequences"])

    for _ in range(3):
        engine = bank.fresh()
        assert snapshot(engine) == seeded
        spoil(engine)
        assert snapshot(engine) != seeded


def test_the_last_scenarios_transactions_are_ended_and_its_statements_refused(
    bank: ScenarioBank,
) -> None:
    last = bank.fresh()
    seeded = snapshot(last)
    # A host thread still in the middle of a reply: a transaction open, rows locked.
    lingering = last.connect()
    lingering.execute(sa.text("UPDATE accounts SET ledger_balance = 1, available_balance = 1"))
    following = bank.fresh()  # must neither wait for it nor let it write afterwards
    with pytest.raises((StaleScenarioEngine, sa.exc.DBAPIError)):
        lingering.execute(sa.text("UPDATE accounts SET ledger_balance = 2"))
        lingering.commit()
    lingering.invalidate()
    with last.connect() as conn, pytest.raises(StaleScenarioEngine):
        conn.execute(sa.text("SELECT 1"))
    # The bank runs its statements on the driver, unseen by statement hooks: its transaction is
    # refused as it begins.
    with pytest.raises(StaleScenarioEngine), last.begin() as conn:
        DriverTransaction(conn).run("UPDATE accounts SET ledger_balance = 3")
    assert snapshot(following) == seeded


def test_a_statement_of_the_last_scenario_finishes_before_the_bank_is_reset(
    bank: ScenarioBank, admin: sa.Engine
) -> None:
    order: list[str] = []
    last = bank.fresh()
    seeded = snapshot(last)

    def slow_write() -> None:
        with last.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE accounts SET ledger_balance = 7, available_balance = 7 "
                    "FROM pg_sleep(0.5) WHERE true"
                )
            )
            order.append("statement done")

    writer = threading.Thread(target=slow_write)
    writer.start()
    deadline = time.monotonic() + 5
    while not _running(admin, "pg_sleep(0.5)") and time.monotonic() < deadline:
        time.sleep(0.01)
    following = bank.fresh()
    order.append("reset done")
    writer.join(5)
    assert order == ["statement done", "reset done"]
    assert snapshot(following) == seeded  # its commit, if it came, was restored over


def _running(admin: sa.Engine, fragment: str) -> bool:
    with admin.connect() as conn:
        found = conn.scalar(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                "AND query LIKE '%' || :fragment || '%' AND pid <> pg_backend_pid()"
            ),
            {"fragment": fragment},
        )
    return bool(found)


def test_close_drops_the_database_and_refuses_more(
    bank: ScenarioBank, admin: sa.Engine, template: str
) -> None:
    engine = bank.fresh()
    still_open = engine.connect()
    bank.close()
    still_open.invalidate()
    with admin.connect() as conn:
        names = set(conn.execute(sa.text("SELECT datname FROM pg_database")).scalars())
    assert bank.name not in names and template in names
    with pytest.raises(RuntimeError, match="closed"):
        bank.fresh()
