"""End-to-end fixtures: a real bank on PostgreSQL, a real TCP host, ATMs with devices on ptys."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config.settings import Settings
from device.clock import VirtualClock
from device.sim.bank_stack import BankStack
from device.sim.simulated_atm import SimulatedAtm
from peripherals.harness.profile import DEFAULT_PROFILE, load_profile

MakeAtm = Callable[..., SimulatedAtm]


@pytest.fixture
def bank_stack(
    make_database: Callable[[], str], settings_for: Callable[..., Settings]
) -> Iterator[BankStack]:
    with BankStack(settings_for(DATABASE_URL=make_database())) as stack:
        yield stack


@pytest.fixture
def make_atm(bank_stack: BankStack, tmp_path: Path) -> Iterator[MakeAtm]:
    """Start a simulated ATM on the virtual clock; every ATM made is stopped at the end."""
    started: list[SimulatedAtm] = []

    def make(state_dir: Path | None = None, *, start: bool = True) -> SimulatedAtm:
        profile = load_profile(DEFAULT_PROFILE)
        assert profile.host is not None
        atm = SimulatedAtm(
            profile,
            bank_stack.address_for(profile.host.mac_key),
            state_dir or tmp_path / "atm",
            clock=VirtualClock(),
            host_timeout=5.0,
        )
        if start:
            atm.start()
            started.append(atm)
        return atm

    yield make
    for atm in started:
        atm.stop()
