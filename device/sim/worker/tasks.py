"""The work a worker does, as plain functions of JSON-able arguments: a statement PDF, a batch of
scenarios, a shard of a fleet. Each reads its settings from the worker's own environment.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from pathlib import Path
from typing import Any

from celery import Celery

from config.settings import load_settings

STATEMENT_TASK = "atm_sim.statement"
SCENARIO_BATCH_TASK = "atm_sim.scenario_batch"
FLEET_SHARD_TASK = "atm_sim.fleet_shard"
PING_TASK = "atm_sim.ping"
SHIPPED_SCENARIOS = Path(__file__).parents[3] / "config" / "scenarios"


def worker_id() -> str:
    """hostname:pid of the process doing the work."""
    return f"{socket.gethostname()}:{os.getpid()}"


def ping() -> str:
    """A worker's answer where the transport has no broadcast ping (the database): who it is."""
    return worker_id()


def statement_pdf(account: str, date_from: str, date_to: str) -> dict[str, Any]:
    """The PDF statement of `account` for the period (ISO dates), stored as the settings say."""
    from device.sim.worker.statement_store import store_statement
    from host.statements import write_statement

    settings = load_settings()
    path = write_statement(
        settings, account, dt.date.fromisoformat(date_from), dt.date.fromisoformat(date_to)
    )
    stored = store_statement(settings, path)
    return {"account": account, "from": date_from, "to": date_to, **stored, "worker": worker_id()}


def scenario_batch(
    names: list[str], documents: list[dict[str, str]] | None = None, seed: int = 0
) -> dict[str, Any]:
    """Run shipped scenarios (by file stem) and uploaded ones ({"name", "yaml"}) on fresh banks
    made on the worker's PostgreSQL server; the results and their JUnit XML."""
    from device.sim.scenarios.report import junit_xml
    from device.sim.scenarios.runner import ScenarioRunner
    from device.sim.scenarios.schema import load_scenario, parse_scenario
    from host.database import database_url

    settings = load_settings()
    scenarios = [load_scenario(_shipped(name)) for name in names]
    scenarios += [parse_scenario(d["yaml"], f"{d['name']}.yaml") for d in documents or []]
    with ScenarioRunner(database_url(settings), settings, seed=seed) as runner:
        results = [runner.run(scenario) for scenario in scenarios]
    return {
        "seed": seed,
        "ok": all(r.ok for r in results),
        "results": [
            {
                "name": r.scenario.name,
                "status": r.status,
                "failures": [str(f) for f in r.failures],
                "error": r.error,
                "wall_seconds": round(r.wall_seconds, 3),
                "replay": r.replay,
            }
            for r in results
        ],
        "junit_xml": junit_xml(results),
    }


def _shipped(name: str) -> Path:
    path = SHIPPED_SCENARIOS / f"{Path(name).stem}.yaml"
    if Path(name).name != name or not path.is_file():
        known = ", ".join(sorted(p.stem for p in SHIPPED_SCENARIOS.glob("*.yaml")))
        raise ValueError(f"no shipped scenario {name!r}; known: {known}")
    return path


def fleet_shard(spec: dict[str, Any]) -> dict[str, Any]:
    """Some ATMs of a distributed fleet (or chaos run, with `spec["chaos"]`) against the host
    address in `spec`; their results."""
    from device.sim.distributed_fleet import run_remote_shard

    return run_remote_shard(spec)


def register_tasks(app: Celery) -> None:
    # A statement or a scenario batch may run twice after a worker dies (both are repeatable);
    # a fleet shard must not: its sessions would move the bank's money a second time.
    app.task(name=STATEMENT_TASK, acks_late=True)(statement_pdf)
    app.task(name=SCENARIO_BATCH_TASK, acks_late=True)(scenario_batch)
    app.task(name=FLEET_SHARD_TASK, acks_late=False)(fleet_shard)
    app.task(name=PING_TASK)(ping)
