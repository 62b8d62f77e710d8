"""Benchmark of the scenario runner: scenarios per second, and virtual time covered per wall second.

Usage: python -m scripts.bench.scenario_bench [--jobs N] [--pool-size N] [--count N] [PATH...]
(default: config/scenarios; --jobs 1: one by one in this process; N > 1: N worker processes, as
`scenario run --jobs N`; --pool-size 0: each database copied and dropped in line, as before)
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import time
from pathlib import Path

from config.settings import load_settings
from device.sim.scenarios.databases import DEFAULT_POOL_SIZE
from device.sim.scenarios.parallel import run_parallel
from device.sim.scenarios.report import details
from device.sim.scenarios.runner import ScenarioRunner
from device.sim.scenarios.schema import load_scenarios
from host.database import database_url

DEFAULT = Path(__file__).resolve().parents[2] / "config" / "scenarios"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scenario_bench")
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--jobs", "-j", type=int, default=1)
    parser.add_argument(
        "--pool-size",
        type=int,
        default=DEFAULT_POOL_SIZE,
        help="database copies kept ready (0: copy and drop in line, as before the pool)",
    )
    parser.add_argument(
        "--count",
        type=int,
        default=0,
        help="run this many scenarios, going round the given ones again (each run on its own "
        "fresh bank and ATM); default: each once",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level="ERROR")
    settings = load_settings()
    scenarios = load_scenarios(args.paths or [DEFAULT])
    if args.count:
        scenarios = list(itertools.islice(itertools.cycle(scenarios), args.count))
    # In parallel this process makes the template only; the workers copy it.
    pool_size = 0 if args.jobs > 1 else args.pool_size
    with ScenarioRunner(database_url(settings), settings, pool_size=pool_size) as runner:
        runner.prepare()
        started = time.perf_counter()
        if args.jobs > 1:
            results = run_parallel(scenarios, runner, args.jobs)
        else:
            results = [runner.run(s) for s in scenarios]
        wall = time.perf_counter() - started
    virtual = sum(r.virtual_seconds for r in results)
    ok = sum(r.ok for r in results)
    pool = f"{DEFAULT_POOL_SIZE} per worker" if args.jobs > 1 else str(pool_size)
    print(f"jobs: {args.jobs}; database copies kept ready: {pool}")
    print(f"template database (migrate + seed, once): {runner.template_seconds:.2f} s")
    print(f"scenarios: {len(results)} ({ok} passed or known failures) in {wall:.2f} s wall")
    print(f"scenarios per second: {len(results) / wall:.2f}")
    print(
        f"slowest: {max(results, key=lambda r: r.wall_seconds).scenario.name} "
        f"{max(r.wall_seconds for r in results):.2f} s"
    )
    print(f"sum of scenario wall times: {sum(r.wall_seconds for r in results):.2f} s")
    print(f"virtual time covered: {virtual:.1f} s; virtual/wall ratio: {virtual / wall:.1f}")
    for result in results:
        if not result.ok:
            print(details(result))
    return 0 if ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
