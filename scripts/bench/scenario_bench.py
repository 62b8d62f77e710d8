"""Benchmark of the scenario runner: scenarios per second, and virtual time covered per wall second.

Usage: python -m scripts.bench.scenario_bench [PATH...] (default: config/scenarios)
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from config.settings import load_settings
from device.sim.scenarios.runner import ScenarioRunner
from device.sim.scenarios.schema import load_scenarios
from host.database import database_url

DEFAULT = Path(__file__).resolve().parents[2] / "config" / "scenarios"


def main(argv: list[str]) -> int:
    logging.basicConfig(level="ERROR")
    settings = load_settings()
    scenarios = load_scenarios([Path(a) for a in argv] or [DEFAULT])
    with ScenarioRunner(database_url(settings), settings) as runner:
        runner.prepare()
        started = time.perf_counter()
        results = [runner.run(s) for s in scenarios]
        wall = time.perf_counter() - started
    virtual = sum(r.virtual_seconds for r in results)
    ok = sum(r.ok for r in results)
    print(f"template database (migrate + seed, once): {runner.template_seconds:.2f} s")
    print(f"scenarios: {len(results)} ({ok} passed or known failures) in {wall:.2f} s wall")
    print(f"scenarios per second: {len(results) / wall:.2f}")
    print(
        f"slowest: {max(results, key=lambda r: r.wall_seconds).scenario.name} "
        f"{max(r.wall_seconds for r in results):.2f} s"
    )
    print(f"virtual time covered: {virtual:.1f} s; virtual/wall ratio: {virtual / wall:.1f}")
    return 0 if ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
