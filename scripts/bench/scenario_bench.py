"""Benchmark of the scenario runner: scenarios per second, and virtual time covered per wall second.

Usage: python -m scripts.bench.scenario_bench [--jobs N] [--count N] [--profile] [PATH...]
(default: config/scenarios; --jobs 1: one by one in this process; N > 1: this process and N - 1
worker processes, as `scenario run --jobs N`; each runner resets its one bank database before
every scenario; --profile: with --jobs 1, where this process's CPU goes)
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import sys
import time
from pathlib import Path

from config.settings import load_settings
from device.sim.scenarios.parallel import prepare_workers, run_parallel
from device.sim.scenarios.report import details
from device.sim.scenarios.runner import ScenarioRunner
from device.sim.scenarios.schema import load_scenarios
from host.database import database_url
from scripts.bench.cpu_profile import cpu_profile

DEFAULT = Path(__file__).resolve().parents[2] / "config" / "scenarios"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scenario_bench")
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--jobs", "-j", type=int, default=1)
    parser.add_argument(
        "--count",
        type=int,
        default=0,
        help="run this many scenarios, going round the given ones again (each run on its own "
        "bank reset to its seed and a new ATM); default: each once",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run under yappi (with --jobs 1) and print where the CPU goes (times then slow)",
    )
    args = parser.parse_args(argv)
    if args.profile and args.jobs > 1:
        parser.error("--profile profiles this process only: use it with --jobs 1")
    logging.basicConfig(level="ERROR")
    settings = load_settings()
    scenarios = load_scenarios(args.paths or [DEFAULT])
    if args.count:
        scenarios = list(itertools.islice(itertools.cycle(scenarios), args.count))
    if args.jobs > 1:
        prepare_workers()  # as `scenario run` does: the workers' imports overlap the template
    with ScenarioRunner(database_url(settings), settings) as runner:
        runner.prepare()  # the template, and this process's own copy of it
        started = time.perf_counter()
        if args.jobs > 1:
            results = run_parallel(scenarios, runner, args.jobs)
        else:
            profiling = (
                cpu_profile(len(scenarios), "scenario")
                if args.profile
                else contextlib.nullcontext()
            )
            with profiling:
                results = [runner.run(s) for s in scenarios]
        wall = time.perf_counter() - started
    virtual = sum(r.virtual_seconds for r in results)
    ok = sum(r.ok for r in results)
    print(f"jobs: {args.jobs}; one bank database per runner, reset before each scenario")
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
