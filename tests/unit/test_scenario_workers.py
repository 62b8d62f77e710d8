"""Scenario workers fork from a server process that has already imported what they run."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor


def _worker_view() -> tuple[int, bool]:
    # Only the standard library is imported above: a worker that imported nothing itself has
    # the runner only if the server it was forked from had it.
    return os.getpid(), "device.sim.scenarios.runner" in sys.modules


def test_a_worker_starts_with_the_runner_already_imported() -> None:
    from device.sim.scenarios import parallel

    parallel.prepare_workers()
    parallel.prepare_workers()  # idempotent: one server
    with ProcessPoolExecutor(max_workers=1, mp_context=parallel._CONTEXT) as pool:
        pid, imported = pool.submit(_worker_view).result(timeout=120)
    assert pid != os.getpid()
    assert imported
