"""What a long fleet or chaos run prints: progress with rate and time left, and a verdict that
makes a violation stand out from the passing checks."""

from __future__ import annotations

import time

from device.sim.fleet.in_process import FleetReport, Progress
from device.sim.fleet.robot_customer import SessionResult
from device.sim.invariants import Check


def test_progress_gives_sessions_done_rate_and_time_left() -> None:
    lines: list[str] = []
    progress = Progress(10000, started=100.0, out=lines.append)
    assert progress.line(2500, now=100.0 + 500) == (
        "progress: 2500/10000 sessions (25 %), 5.00 sessions/s, 8 min 20 s so far, "
        "about 25 min 00 s left"
    )
    assert progress.line(9000, now=100.0 + 4500).endswith("about 8 min 20 s left")
    live = Progress(10000, started=time.monotonic(), out=lines.append)
    live.session_done(999)  # neither a tenth of the run nor 30 s since the last line
    live.session_done(1000)
    assert len(lines) == 1 and lines[0].startswith("progress: 1000/10000 sessions (10 %)")


def report(violations: list[str], final_ok: bool = True) -> FleetReport:
    results = [SessionResult("ATM00001", "withdrawal", "approved", 0.5)] * 3
    results += [SessionResult("ATM00001", "balance", "declined 75", 0.5)]
    checks = [Check("money conservation", "difference 0.00", final_ok)]
    return FleetReport(results, 2.0, checks, [], violations=violations, checks_run=12)


def test_a_clean_run_ends_saying_every_invariant_held() -> None:
    summary = report([]).summary()
    assert summary[-1] == "every invariant held at 12 check(s)"
    assert "outcomes: approved 3 (75 %), declined 75 1 (25 %)" in summary


def test_a_violation_stands_out_in_the_summary_and_its_last_line() -> None:
    line = "after 500 sessions: FAIL no open holds: 1 open hold(s) of 20.00 (ATM00001/000025)"
    summary = report([line]).summary()
    assert f"VIOLATION {line}" in summary
    assert summary[-1] == "VIOLATIONS: 1 failed check(s) over 12 check(s); see the lines above"
    assert not report([line]).ok
    assert report([], final_ok=False).summary()[-1].startswith("VIOLATIONS: 1 failed")
