"""The fault catalogue is the one list of faults and their parameters: the emulators and links
know exactly its faults, and the harness guide documents every fault and parameter in it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from peripherals.fault_catalogue import FAULT_CATALOGUE, LINK, FaultParam, param_problem
from peripherals.harness.bay import emulator_class
from peripherals.links.runner import LINK_FAULTS
from peripherals.pin_pad import KEYS

HARNESS_GUIDE = Path(__file__).parents[2] / "docs" / "harness.md"
DEVICES = ("card_reader", "pin_pad", "cash_dispenser", "receipt_printer")


def test_every_device_and_the_links_know_exactly_the_catalogued_faults() -> None:
    assert set(FAULT_CATALOGUE) == {*DEVICES, LINK}
    for device in DEVICES:
        assert frozenset(FAULT_CATALOGUE[device]) == emulator_class(device).FAULTS
    assert frozenset(FAULT_CATALOGUE[LINK]) == LINK_FAULTS


def _guide_row(text: str, first_cell: str) -> str:
    row = re.search(rf"^\| `?{re.escape(first_cell)}`? \|.*$", text, re.MULTILINE)
    assert row is not None, f"no row for {first_cell} in docs/harness.md"
    return row.group(0)


def test_the_harness_guide_names_every_fault_and_parameter() -> None:
    text = HARNESS_GUIDE.read_text(encoding="utf-8")
    for device in DEVICES:
        row = _guide_row(text, device)
        for fault, params in FAULT_CATALOGUE[device].items():
            assert f"`{fault}`" in row, (device, fault)
            for name in params:
                assert f"`{name}`" in row, (device, fault, name)
    for fault, params in FAULT_CATALOGUE[LINK].items():
        row = _guide_row(text, fault)
        for name in params:
            assert f"`{name}`" in row, (fault, name)


def test_the_pin_pad_keys_are_the_ones_key_stuck_accepts() -> None:
    assert FAULT_CATALOGUE["pin_pad"]["key_stuck"]["key"].choices == KEYS


@pytest.mark.parametrize(
    ("spec", "value", "fits"),
    [
        (FaultParam(int, 0, "", low=0), 0, True),
        (FaultParam(int, 0, "", low=0), 2.5, False),
        (FaultParam(int, 0, "", low=0), False, False),
        (FaultParam(float, 0.3, "", low=0), 1, True),
        (FaultParam(float, 0.3, "", low=0), "1", False),
        (FaultParam(int, 1, "", low=1, high=4), 4, True),
        (FaultParam(int, 1, "", low=1, high=4), 0, False),
        (FaultParam(str, "a", "", choices=("a", "b")), "c", False),
    ],
)
def test_values_are_checked_for_kind_and_bounds(
    spec: FaultParam, value: object, fits: bool
) -> None:
    assert (spec.problem(value) is None) is fits


def test_a_problem_is_one_line_naming_the_fault() -> None:
    accepted = FAULT_CATALOGUE["cash_dispenser"]["jam"]
    assert param_problem(accepted, "jam", "after_notes", 2) is None
    assert param_problem(accepted, "jam", "after_note", 2) == (
        "jam has no parameter 'after_note'; it accepts: after_notes"
    )
