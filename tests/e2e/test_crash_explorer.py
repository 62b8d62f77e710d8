"""Crash points kill a real process at the N-th I/O boundary, and the crash explorer finds no
money lost, invented or silently held when the ATM dies at a few chosen boundaries.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config.settings import Settings
from device import crash_points
from device.drivers.cash_dispenser import CashDispenserDriver
from device.sim.crashtest import (
    CrashExplorer,
    CrashTestConfig,
    CrashTestError,
    crash_explorer,
    parse_points,
    summary,
)
from peripherals.harness.bay import DeviceBay
from peripherals.harness.profile import DEFAULT_PROFILE, load_profile

FOUR_BOUNDARIES = """
from device import crash_points
for name in ("journal:a", "device.send:b", "host.send:c", "host.receive:d"):
    crash_points.reached(name)
print("survived", crash_points.mark())
"""

# Host, device and journal boundaries; at each, today's code could once lose money or leave a hold.
CHOSEN = (
    "host.receive:0210",  # the bank holds the money; the ATM has not journalled it yet
    "device.reply:cash_dispenser:present",  # notes out, `presented` not yet journalled
    "journal:presented",
    "host.send:0220",  # cash taken, completion advice about to leave
)
SEED = 4  # with this seed the customer at the dead ATM takes the notes after the present reply


def run_boundaries(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATM_SIM_CRASH")}
    return subprocess.run(
        [sys.executable, "-c", FOUR_BOUNDARIES],
        env={**env, **variables},
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )


def test_the_nth_boundary_kills_the_process_and_names_itself(tmp_path: Path) -> None:
    log = tmp_path / "crash.log"
    done = run_boundaries(tmp_path, ATM_SIM_CRASH_AT="3", ATM_SIM_CRASH_LOG=str(log))
    assert done.returncode == -signal.SIGKILL
    assert "survived" not in done.stdout
    assert log.read_text() == "3 host.send:c\n"


def test_counting_only_lists_every_boundary_and_kills_nothing(tmp_path: Path) -> None:
    log = tmp_path / "trace.log"
    done = run_boundaries(tmp_path, ATM_SIM_CRASH_LOG=str(log))
    assert done.returncode == 0 and "survived 4" in done.stdout
    assert log.read_text().splitlines() == [
        "1 journal:a",
        "2 device.send:b",
        "3 host.send:c",
        "4 host.receive:d",
    ]


def test_a_bad_crash_setting_is_one_line_and_the_process_runs_on(tmp_path: Path) -> None:
    done = run_boundaries(tmp_path, ATM_SIM_CRASH_AT="third")
    assert done.returncode == 0 and "survived 0" in done.stdout
    assert done.stderr.strip().splitlines() == [
        "atm-sim: crash points off: ATM_SIM_CRASH_AT='third': expected a boundary number "
        "(1, 2, ...) or 0 to count only"
    ]


def test_no_variables_no_crash_points(tmp_path: Path) -> None:
    done = run_boundaries(tmp_path)
    assert done.returncode == 0 and "survived 0" in done.stdout


def test_journal_appends_of_the_explorers_atm_are_boundaries(tmp_path: Path) -> None:
    log = tmp_path / "trace.log"
    code = (
        "from device.sim.crash_atm import hook_journals; hook_journals()\n"
        "from device.journal import Journal\n"
        f"journal = Journal(__import__('pathlib').Path({str(tmp_path / 'j.jsonl')!r}))\n"
        "journal.record('card_read', pan='4761739001010010')\n"
        "journal.record_many([('taken', {}), ('completion_queued', {})])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATM_SIM_CRASH")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "ATM_SIM_CRASH_LOG": str(log)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == [
        "1 journal:card_read",
        "2 journal:taken+completion_queued",
    ]


def test_points_run_a_boundary_the_sessions_share_once() -> None:
    traces = {"take": ["a", "b", "c", "d"], "leave": ["a", "b", "x", "y"]}

    def chosen(spec: str) -> list[tuple[str, int, str]]:
        return [(p.session, p.index, p.expected) for p in parse_points(spec, traces)]

    assert chosen("all") == [
        ("take", 1, "a"),
        ("take", 2, "b"),
        ("take", 3, "c"),
        ("take", 4, "d"),
        ("leave", 3, "x"),
        ("leave", 4, "y"),
    ]
    assert chosen("2..3") == [("take", 2, "b"), ("take", 3, "c"), ("leave", 3, "x")]
    assert chosen("x,b,4") == [
        ("take", 2, "b"),
        ("take", 4, "d"),
        ("leave", 3, "x"),
        ("leave", 4, "y"),
    ]
    with pytest.raises(CrashTestError, match="no boundary named 'z'"):
        parse_points("z", traces)


@pytest.fixture
def counting(tmp_path: Path) -> Iterator[Path]:
    """Crash points armed in this process, counting into a trace file; off again afterwards."""
    log = tmp_path / "trace.log"
    crash_points.arm({crash_points.CRASH_LOG_VARIABLE: str(log)})
    try:
        yield log
    finally:
        crash_points.arm({})


def test_a_driver_names_commands_and_replies_and_counts_a_poll_once(counting: Path) -> None:
    profile = load_profile(DEFAULT_PROFILE)
    with DeviceBay.from_profile(profile) as bay:
        driver = CashDispenserDriver(bay.url("cash_dispenser"))
        try:
            for _ in range(3):
                driver.status()  # a poll: the same command with nothing in between
            bay.cash_dispenser.faults.inject("cassette_empty", cassette=1)
            driver.status()  # a new answer to a poll is still the poll: the ATM has not moved
            driver.counters()
            driver.status()  # after another command, a boundary again
        finally:
            driver.close()
    names = [line.split(" ", 1)[1] for line in counting.read_text().splitlines()]
    assert names == [
        "device.send:cash_dispenser:ext_status",
        "device.reply:cash_dispenser:ext_status",
        "device.send:cash_dispenser:counters",
        "device.reply:cash_dispenser:counters",
        "device.send:cash_dispenser:ext_status",
        "device.reply:cash_dispenser:ext_status",
    ]


@pytest.fixture
def explorer(
    make_database: Callable[[], str], settings_for: Callable[..., Settings]
) -> Iterator[CrashExplorer]:
    config = CrashTestConfig(points=",".join(CHOSEN), sessions=("take",), seed=SEED)
    with crash_explorer(settings_for(DATABASE_URL=make_database()), config, print) as found:
        yield found


def test_killed_at_chosen_boundaries_no_money_is_lost_or_held(explorer: CrashExplorer) -> None:
    report = explorer.explore()
    died_at = {r.point.expected: r.died_at for r in report.results}
    assert died_at == {name: name for name in CHOSEN}, "the boundaries moved: see the table"
    took = {r.point.expected: r.customer for r in report.results}
    assert took["device.reply:cash_dispenser:present"].startswith("took")
    assert report.violations == [], "\n".join(summary(report))
