"""Planning a dispense before anything is sent: notes per cassette from counts and states,
and requests the cash dispenser driver refuses without writing a byte.
"""

from __future__ import annotations

from typing import Any

import pytest

from device.drivers.cash_dispenser import CashDispenserDriver, CassetteStatus, plan_notes
from peripherals.cash_dispenser import CashDispenserEmulator

DEFAULT_LOAD = {"cassettes": "config/cassettes/default.yaml"}


def units(*specs: tuple[int, int, int, str]) -> list[Any]:
    return [CassetteStatus(n, d, "978", k, 2500, 10, s) for n, d, k, s in specs]


@pytest.mark.parametrize(
    ("amount", "plan"),
    [
        (26000, {2: 1, 3: 1, 4: 2}),
        (4000, {1: 2}),
        (6000, {2: 1, 3: 1}),
        (1000, {3: 1}),
        (100000, {4: 10}),
        (1500, None),  # no 5.00 notes
        (0, None),
        (-2000, None),
        (1_010_000, None),  # more than 100 notes
    ],
)
def test_plans_from_the_default_load(amount: int, plan: dict[int, int] | None) -> None:
    # The cassettes as the default dispenser reports them (the contract suite checks that a
    # status read over a link says the same).
    cassettes = CashDispenserEmulator.from_config(DEFAULT_LOAD).cassettes
    assert plan_notes(amount, cassettes) == plan


def test_plans_respect_counts_states_and_balance() -> None:
    # only 1 note of 100.00: 300.00 needs 50s too
    assert plan_notes(30000, units((2, 5000, 9, "ok"), (4, 10000, 1, "low"))) == {2: 4, 4: 1}
    # a denomination in two cassettes comes from the fuller one first, then evenly
    twin = units((1, 2000, 10, "ok"), (2, 2000, 4, "ok"))
    assert plan_notes(16000, twin) == {1: 7, 2: 1}
    assert plan_notes(30000, twin) is None  # 15 notes, only 14
    # empty and missing cassettes are never used
    assert plan_notes(2000, units((1, 2000, 5, "missing"), (2, 2000, 5, "empty"))) is None
    # equal note counts: drain the smaller share (1 of 50 fifties, not 2 of 3 twenties)
    mix = units((1, 2000, 3, "ok"), (2, 5000, 50, "ok"), (3, 1000, 50, "ok"))
    assert plan_notes(6000, mix) == {2: 1, 3: 1}
    assert plan_notes(4000, units((1, 2000, 2, "ok"), (2, 1000, 400, "ok"))) == {1: 2}


def test_bad_arguments_are_refused_before_anything_is_sent() -> None:
    # loop:// echoes every byte written: an empty input buffer proves nothing went out.
    driver = CashDispenserDriver("loop://", timeout=0.1)
    with driver:
        with pytest.raises(ValueError, match=r"0\.\.99"):
            driver.dispense({1: 1}, transaction=100)
        with pytest.raises(ValueError, match="slot 5"):
            driver.dispense({5: 1}, transaction=1)
        with pytest.raises(ValueError, match="no notes"):
            driver.dispense({1: 0}, transaction=1)
        assert driver.stats.sends == 0 and driver.port.in_waiting == 0
