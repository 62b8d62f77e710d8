"""Worker settings and the distributed fleet's arithmetic: which transport REDIS_URL picks, what a
bad REDIS_URL or bucket name says, and how ATMs are dealt to shards."""

from __future__ import annotations

import pytest

from config.settings import SettingsError, load_settings
from device.sim.distributed_fleet import deal, shard_count
from device.sim.worker import transport as transport_module
from device.sim.worker.transport import task_transport


def test_redis_url_makes_redis_broker_and_backend_without_showing_the_password() -> None:
    settings = load_settings({"REDIS_URL": "redis://:s3cret@cache.internal:6380/2"})
    transport = task_transport(settings)
    assert transport.broker_url == transport.result_backend == settings.redis_url
    assert transport.description == "Redis at cache.internal:6380/2 (REDIS_URL)"
    assert transport.can_broadcast


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("REDIS_URL", "localhost:6379", "REDIS_URL='localhost:6379': expected a redis://"),
        ("STATEMENT_BUCKET", "My_Bucket", "STATEMENT_BUCKET='My_Bucket': expected an S3 bucket"),
        ("STATEMENT_BUCKET", "ab", "3-63 lowercase letters"),
    ],
)
def test_bad_worker_settings_name_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({name: value})
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_empty_worker_settings_mean_unset() -> None:
    settings = load_settings({"REDIS_URL": "", "STATEMENT_BUCKET": ""})
    assert settings.redis_url is None and settings.statement_bucket is None
    assert load_settings({"STATEMENT_BUCKET": "atm-simulator-dev-statements"}).statement_bucket


def test_shards_follow_the_workers_but_never_exceed_one_process_worth_of_atms() -> None:
    assert shard_count(8, None, workers=2) == 2
    assert shard_count(8, None, workers=0) == 1
    assert shard_count(60, None, workers=1) == 3  # 25 ATMs at most per shard
    assert shard_count(3, 10, workers=0) == 3  # never more shards than ATMs
    assert deal(5, 2) == [[0, 1, 2], [3, 4]]
    assert sorted(i for shard in deal(60, 3) for i in shard) == list(range(60))


def test_task_broker_database_keeps_tasks_off_the_api_sidecar_redis(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        transport_module, "database_url", lambda _: "postgresql+psycopg://u:pw@db:5432/atm"
    )
    monkeypatch.setattr(transport_module, "_tasks_database", lambda _: "atm_tasks")
    settings = load_settings({"REDIS_URL": "redis://localhost:6379/0", "TASK_BROKER": "database"})
    transport = task_transport(settings)
    assert transport.broker_url == "sqla+postgresql+psycopg://u:pw@db:5432/atm_tasks"
    assert transport.description.endswith("(kombu's SQLAlchemy transport; TASK_BROKER=database)")
    assert "pw" not in transport.description
    with pytest.raises(SettingsError, match="TASK_BROKER=redis: set REDIS_URL"):
        task_transport(load_settings({"TASK_BROKER": "redis"}))
