"""Statement jobs of the HTTP API on a real `atm-sim worker` (tasks through the bank's PostgreSQL)
when one answers, and on the API's own thread pool when none does.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from config.settings import Settings
from device.sim.api.app import create_app
from tests.api_support import add_operators, sign_in, wait_for_job
from tests.conftest import TEST_SECRETS
from tests.integration.worker_processes import worker_environment, workers


@pytest.fixture
def client(bank_engine: sa.Engine, bank_settings: Settings) -> Iterator[TestClient]:
    add_operators(bank_engine, bank_settings)
    with TestClient(create_app(bank_settings, engine=bank_engine)) as test_client:
        yield test_client


def _statement(client: TestClient) -> tuple[dict[str, Any], bytes]:
    viewer = sign_in(client, "viewer")
    today = dt.datetime.now(dt.UTC).date().isoformat()
    asked = client.post(
        "/bank/statements",
        json={"account": "10000001", "from": today, "to": today},
        headers=viewer,
    )
    assert asked.status_code == 202, asked.text
    done = wait_for_job(client, asked.headers["location"], viewer, seconds=60)
    assert done["status"] == "succeeded", done
    assert done["files"] == ["statement.pdf"]
    pdf = client.get(f"{asked.headers['location']}/pdf", headers=viewer)
    assert pdf.status_code == 200, pdf.text
    return done, pdf.content


@pytest.mark.timeout(120)
def test_statement_is_made_by_a_worker_when_one_answers(
    bank_settings: Settings, bank_engine: sa.Engine, tmp_path: Path
) -> None:
    env = worker_environment(
        {
            **TEST_SECRETS,
            "DATABASE_URL": str(bank_settings.database_url),
            "STATEMENT_OUTPUT_DIR": str(bank_settings.statement_output_dir),  # the shared volume
            "ATM_SIM_HOME": str(tmp_path / "worker-home"),
        }
    )
    with workers(env, tmp_path):
        add_operators(bank_engine, bank_settings)
        with TestClient(create_app(bank_settings, engine=bank_engine)) as client:
            done, pdf = _statement(client)
            ran_here = client.app.state.jobs.counts()  # type: ignore[attr-defined]
    assert pdf.startswith(b"%PDF")
    host, _, pid = done["result"]["worker"].rpartition(":")
    assert host and int(pid) != os.getpid()  # made in the worker's process
    assert ran_here == {}  # the API's own pool ran nothing
    assert done["result"]["location"] == "file"
    assert Path(done["result"]["path"]).parent == bank_settings.statement_output_dir


@pytest.mark.timeout(60)
def test_statement_is_made_in_process_when_no_worker_answers(client: TestClient) -> None:
    done, pdf = _statement(client)
    assert pdf.startswith(b"%PDF")
    assert "worker" not in done["result"]
    assert done["result"]["closing_balance"] == 250000
    assert client.app.state.jobs.counts() == {"succeeded": 1}  # type: ignore[attr-defined]
