"""Scenario runs as jobs: shipped scenarios by name or one uploaded as YAML, each on a fresh bank
copied beside the service's database, with the results table and JUnit XML kept as the outcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

from config.settings import Settings
from device.sim.scenarios.report import MARKS, junit_xml, table
from device.sim.scenarios.runner import ScenarioResult, ScenarioRunner
from device.sim.scenarios.schema import Scenario, load_scenario, parse_scenario
from host.api.job_port import JobOutcome, Work
from peripherals.harness.profile import PROJECT_ROOT

SCENARIO_DIR = PROJECT_ROOT / "config" / "scenarios"
JUNIT_FILE = "junit.xml"
UPLOAD_NAME = "uploaded.yaml"


def scenario_names() -> list[str]:
    return sorted(path.stem for path in SCENARIO_DIR.glob("*.yaml"))


def load_named(names: Sequence[str]) -> list[Scenario]:
    """The shipped scenarios by name; ValueError names the first unknown one."""
    known = set(scenario_names())
    for name in names:
        if name not in known:
            raise ValueError(f"no scenario {name!r}; see GET /lab/scenarios")
    return [load_scenario(SCENARIO_DIR / f"{name}.yaml") for name in names]


def parse_upload(text: str) -> Scenario:
    """An uploaded scenario, checked before it is queued (DataFileError: line and reason)."""
    return parse_scenario(text, UPLOAD_NAME)


def _result(result: ScenarioResult) -> dict[str, object]:
    return {
        "name": result.scenario.name,
        "status": result.status,
        "result": MARKS[result.status],
        "checks": result.checks,
        "wall_seconds": round(result.wall_seconds, 3),
        "virtual_seconds": round(result.virtual_seconds, 3),
        "failures": [str(failure) for failure in result.failures],
        "error": result.error or None,
    }


def scenario_work(
    scenarios: list[Scenario], *, server_url: str, settings: Settings, seed: int, out_dir: Path
) -> Work:
    """The job: run the scenarios on databases made on the service's PostgreSQL server."""

    def work() -> JobOutcome:
        results: list[ScenarioResult] = []
        with ScenarioRunner(server_url, settings, seed=seed) as runner:
            for scenario in scenarios:
                results.append(runner.run(scenario))
        out_dir.mkdir(parents=True, exist_ok=True)
        junit = out_dir / f"scenarios-{uuid.uuid4().hex[:12]}.xml"
        junit.write_text(junit_xml(results), encoding="utf-8")
        return JobOutcome(
            result={
                "passed": all(r.ok for r in results),
                "seed": seed,
                "scenarios": [_result(r) for r in results],
                "table": table(results),
            },
            files={JUNIT_FILE: junit},
        )

    return work
