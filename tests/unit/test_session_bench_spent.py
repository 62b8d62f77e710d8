"""session_bench's Spent sums what the blocks run under it take: wall time, CPU, and CPU by part."""

from __future__ import annotations

import time

from scripts.bench.session_bench import Spent


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_the_blocks_are_summed_and_what_runs_between_them_is_not() -> None:
    spent = Spent()
    with spent:
        _burn(0.05)
    time.sleep(0.2)  # between the blocks: not counted
    _burn(0.2)
    with spent:
        time.sleep(0.05)
    assert 0.1 <= spent.wall < 0.45  # 0.5 or more with the 0.4 s between the blocks
    assert 0.05 <= spent.cpu < 0.2
    assert 0.05 <= spent.threads["ATM (controller, drivers, journal, host client)"] < 0.2
