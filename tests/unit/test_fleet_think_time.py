"""A fleet with a think time spaces each ATM's sessions by seeded random customer arrivals."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pytest_mock import MockerFixture

from device.sim.fleet.in_process import AtmSlot, Fleet, FleetConfig
from device.sim.fleet.robot_customer import SessionPlan, SessionResult


def arrivals(mocker: MockerFixture, tmp_path: Path, think: float, seed: int = 1) -> list[Any]:
    """What the ATM's batch of 200 sessions slept before each, as (sleep or session) events."""
    fleet = Fleet(FleetConfig(atms=1, sessions=200, seed=seed, think_seconds=think), None, tmp_path)
    events: list[Any] = []
    # The module's own name for `time`, so no other thread's sleep is caught.
    clock = SimpleNamespace(sleep=events.append, monotonic=time.monotonic)
    mocker.patch("device.sim.fleet.in_process.time", clock)

    def session(slot: object, plan: SessionPlan, number: int) -> SessionResult:
        events.append("session")
        return SessionResult("ATM00001", "withdrawal", "approved", 0.1)

    mocker.patch.object(fleet, "run_session", side_effect=session)
    slot = mocker.Mock(spec=AtmSlot, terminal_id="ATM00001")
    fleet._run_batch(slot, [mocker.Mock(spec=SessionPlan)] * 200, 0)
    assert len(fleet.results) == 200
    return events


def test_each_session_waits_a_random_think_time_first(
    mocker: MockerFixture, tmp_path: Path
) -> None:
    events = arrivals(mocker, tmp_path, think=2.0)
    sleeps = events[0::2]
    assert events[1::2] == ["session"] * 200  # a wait before every session, none after
    assert len(set(sleeps)) == 200  # random, not a fixed pause
    assert 1.6 < statistics.fmean(sleeps) < 2.4  # exponential with the mean asked for
    assert events == arrivals(mocker, tmp_path, think=2.0)  # the same seed, the same arrivals
    assert events != arrivals(mocker, tmp_path, think=2.0, seed=2)


def test_without_a_think_time_sessions_follow_at_once(
    mocker: MockerFixture, tmp_path: Path
) -> None:
    assert arrivals(mocker, tmp_path, think=0.0) == ["session"] * 200
