"""Celery on a real Redis server: two `atm-sim worker` processes run a distributed fleet's
shards against one host and one PostgreSQL, and a worker puts a statement PDF in an S3 bucket.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest

from config.settings import Settings
from device.sim.distributed_fleet import DistributedOptions, run_distributed_fleet
from device.sim.worker.celery_app import make_celery
from device.sim.worker.tasks import STATEMENT_TASK
from tests.conftest import TEST_SECRETS
from tests.integration.worker_processes import (
    moto_s3,
    redis_server,
    seeded_bank,
    worker_environment,
    workers,
)


@pytest.fixture
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with moto_s3(monkeypatch) as endpoint:
        yield endpoint


@pytest.mark.timeout(180)
def test_distributed_fleet_runs_its_shards_on_two_workers(
    redis_url: str, postgres_url: str, settings_for: Callable[..., Settings], tmp_path: Path
) -> None:
    env = worker_environment(
        {**TEST_SECRETS, "REDIS_URL": redis_url, "ATM_SIM_HOME": str(tmp_path)}
    )
    settings = settings_for(REDIS_URL=redis_url, DATABASE_URL=postgres_url)
    lines: list[str] = []
    with workers(env, tmp_path, count=2):
        code = run_distributed_fleet(
            settings,
            atms=2,
            sessions=4,
            seed=3,
            customers=0,
            options=DistributedOptions(timeout=150),
            out=lines.append,
        )
    text = "\n".join(lines)
    assert code == 0, text
    assert "tasks through Redis at 127.0.0.1" in text
    assert "2 shard(s), 2 worker(s) seen" in text
    assert "sessions 4 in" in text
    shards_line = next(line for line in lines if "shards 2 on" in line)
    assert "shards 2 on 2 worker(s)" in shards_line, shards_line  # both workers took a shard
    assert "every invariant held at the final check" in text


@pytest.mark.timeout(120)
def test_worker_puts_a_statement_pdf_in_the_s3_bucket(
    redis_url: str,
    seeded_url: str,
    s3_endpoint: str,
    settings_for: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    boto3.client("s3").create_bucket(
        Bucket="atm-statements-test",
        CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
    )
    out_dir = tmp_path / "statements"
    env = worker_environment(
        {
            **TEST_SECRETS,
            "REDIS_URL": redis_url,
            "DATABASE_URL": seeded_url,
            "STATEMENT_BUCKET": "atm-statements-test",
            "STATEMENT_OUTPUT_DIR": str(out_dir),
            "ATM_SIM_HOME": str(tmp_path),
        }
    )
    app = make_celery(settings_for(REDIS_URL=redis_url))
    with workers(env, tmp_path):
        task = app.send_task(STATEMENT_TASK, args=["10000001", "2020-01-01", "2030-12-31"])
        result = task.get(timeout=60)
    assert result["location"] == "s3"
    assert result["uri"] == "s3://atm-statements-test/statements/" + Path(result["key"]).name
    body = boto3.client("s3").get_object(Bucket="atm-statements-test", Key=result["key"])
    pdf = body["Body"].read()
    assert pdf.startswith(b"%PDF") and len(pdf) == result["bytes"]
    assert list(out_dir.glob("*.pdf")) == []  # uploaded, not left behind


@pytest.fixture
def seeded_url(make_database: Callable[[], str], tmp_path: Path) -> str:
    return seeded_bank(make_database, tmp_path / "seed-home")
