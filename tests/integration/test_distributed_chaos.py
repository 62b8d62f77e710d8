"""`atm-sim chaos --distributed` with real processes: two `atm-sim worker` processes run chaos
shards (each ATM behind a host fault proxy of the worker's own, with device, link and host faults
and power cuts) against one real host and PostgreSQL; the coordinator checks the invariants.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config.settings import Settings
from device.sim.distributed_fleet import DistributedOptions, run_distributed_fleet
from tests.conftest import TEST_SECRETS
from tests.integration.worker_processes import redis_server, worker_environment, workers

# The money invariants of device/sim/invariants.py, each a PASS line at the final check.
INVARIANTS = (
    "money conservation",
    "no open holds",
    "withdrawals settled",
    "no negative balance",
    "daily limits",
    "one posting per terminal/STAN/day",
    "ATM cash ledger = dispensed notes",
    "balances = journal lines",
)


@pytest.fixture
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


def _chaos(settings: Settings, env: dict[str, str], tmp_path: Path, shards: int | None) -> str:
    lines: list[str] = []
    with workers(env, tmp_path, count=2):
        code = run_distributed_fleet(
            settings,
            atms=2,
            sessions=8,
            seed=7,
            options=DistributedOptions(shards=shards, timeout=200),
            chaos=True,
            out=lines.append,
        )
    text = "\n".join(lines)
    assert code == 0, text
    return text


def _assert_checked_and_faulted(text: str) -> None:
    assert "chaos: 2 ATMs, 8 sessions, seed 7" in text
    assert "sessions 8 in" in text
    # Every invariant was checked at the end on the bank's database, and held.
    final = text.split("invariants final:", 1)[1].split("summary:", 1)[0]
    checks = [line.strip() for line in final.splitlines() if line.strip()]
    assert [c.split(":")[0] for c in checks] == [f"PASS {name}" for name in INVARIANTS], final
    assert "every invariant held at the final check" in text
    # Each shard played faults of its own, and together they include the planned first events
    # (a host outage, a power cut, a device fault).
    shard_lines = [line for line in text.splitlines() if line.startswith("progress: ")]
    assert len(shard_lines) == 2, text
    for line in shard_lines:
        assert re.search(r"faults by kind: \w+ [1-9]", line), line
    kinds = next(line for line in text.splitlines() if line.strip().startswith("faults by kind:"))
    for kind in ("crash", "device", "host"):
        assert re.search(rf"\b{kind} [1-9]", kinds), kinds
    assert "power cut (" in text  # a session's outcome after the cut and the restart


@pytest.mark.timeout(300)
def test_distributed_chaos_through_redis(
    redis_url: str, postgres_url: str, settings_for: Callable[..., Settings], tmp_path: Path
) -> None:
    env = worker_environment(
        {**TEST_SECRETS, "REDIS_URL": redis_url, "ATM_SIM_HOME": str(tmp_path)}
    )
    settings = settings_for(REDIS_URL=redis_url, DATABASE_URL=postgres_url)
    text = _chaos(settings, env, tmp_path, shards=None)
    assert "2 shard(s), 2 worker(s) seen" in text
    assert "shards 2 on 2 worker(s)" in text  # both workers took a shard
    _assert_checked_and_faulted(text)


@pytest.mark.timeout(300)
def test_distributed_chaos_through_postgres(
    postgres_url: str, settings_for: Callable[..., Settings], tmp_path: Path
) -> None:
    env = worker_environment(
        {**TEST_SECRETS, "DATABASE_URL": postgres_url, "ATM_SIM_HOME": str(tmp_path)}
    )
    settings = settings_for(DATABASE_URL=postgres_url)
    text = _chaos(settings, env, tmp_path, shards=2)
    assert "tasks through PostgreSQL database atm_tasks" in text
    assert "shards 2 on" in text
    _assert_checked_and_faulted(text)
