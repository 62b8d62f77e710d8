"""The scenario schema: typed objects from good files, file:line:reason for bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.data_files import DataFileError
from device.sim.scenarios.schema import (
    DeviceFault,
    HostFault,
    PowerFailure,
    Press,
    Restart,
    TypeDigits,
    Wait,
    load_scenarios,
    parse_scenario,
)

SCENARIOS = Path(__file__).parents[2] / "config" / "scenarios"


def error_of(text: str) -> DataFileError:
    with pytest.raises(DataFileError) as caught:
        parse_scenario(text, "s.yaml")
    return caught.value


def test_a_good_scenario_becomes_typed_steps_with_lines() -> None:
    scenario = parse_scenario(
        """version: 1
name: demo
steps:
  - wait: idle
  - type: "0852"
  - press: [F1, enter]
  - fault: {target: cash_dispenser, name: jam, mode: once, params: {after_notes: 1}}
  - host: {mode: slow, seconds: 12, mti: "0200"}
  - power_failure: {on_event: notes_counted}
  - restart
expect:
  balances: {"10000001": 1}
""",
        "s.yaml",
    )
    wait, typed, press, fault, host, power, restart = scenario.steps
    assert isinstance(wait, Wait) and wait.state == "idle" and wait.where.line == 4
    assert isinstance(typed, TypeDigits) and typed.digits == "0852"
    assert isinstance(press, Press) and press.keys == ("F1", "enter")
    assert isinstance(fault, DeviceFault) and fault.params == {"after_notes": 1}
    assert isinstance(host, HostFault) and host.seconds == 12.0 and host.mtis == ("0200",)
    assert isinstance(power, PowerFailure) and power.on_event == "notes_counted"
    assert isinstance(restart, Restart) and restart.where.line == 10
    (check,) = scenario.checks
    assert check.where.line == 12 and check.expected == {"ledger": 1, "available": 1}


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("version: 1\nsteps:\n  - type: 0852\n", 3, "must be a quoted string"),
        ("version: 1\nsteps:\n  - type: 1234\n", 3, 'write "1234"'),
        ("version: 2\nsteps: [wait: idle]\n", 1, "version: 2 is not supported"),
        ("version: 1\n", 1, "'steps' is missing"),
        ("version: 1\nsteps:\n  - wait: nowhere\n", 3, "'nowhere' is not one of"),
        ("version: 1\nsteps:\n  - dance: now\n", 3, "unknown key 'dance'"),
        ("version: 1\nsteps:\n  - {wait: idle, advance: 1}\n", 3, "exactly one action"),
        ("version: 1\nsteps:\n  - press: F9\n", 3, "unknown key 'F9'"),
        (
            "version: 1\nsteps:\n  - fault: {target: cash_dispenser, name: melt}\n",
            3,
            "'melt' is not one of",
        ),
        (
            "version: 1\nsteps:\n  - fault:\n      target: cash_dispenser\n      name: jam\n"
            "      params:\n        after_note: 1\n",
            7,
            "fault.params: jam has no parameter 'after_note'; it accepts: after_notes",
        ),
        (
            "version: 1\nsteps:\n  - fault:\n      target: cash_dispenser\n      name: jam\n"
            "      params: {after_notes: many}\n",
            6,
            "after_notes expects a whole number >= 0, not 'many'",
        ),
        (
            "version: 1\nsteps:\n  - fault: {target: pin_pad.link, name: drop, params: {x: 1}}\n",
            3,
            "drop takes no parameters, not 'x'",
        ),
        (
            "version: 1\nsteps:\n  - fault: {target: pin_pad, name: key_stuck}\n",
            3,
            "key_stuck needs key",
        ),
        ("version: 1\nsteps:\n  - host: {mode: declining}\n", 3, "needs code"),
        ("version: 1\nsteps:\n  - host: {mode: slow}\n", 3, "needs seconds"),
        (
            "version: 1\nsteps: [wait: idle]\nexpect:\n  balances: {10000001: 5}\n",
            4,
            "must be a quoted string",
        ),
        ("version: 1\nsteps: [wait: idle]\nexpect:\n  colour: red\n", 4, "unknown key 'colour'"),
        ("version: 1\nsteps:\n  - wait: [idle\n", 4, "not valid YAML"),
        # A misspelt journal event would make `absent` pass and `on_event` wait for ever.
        (
            "version: 1\nsteps:\n  - wait: idle\n  - expect:\n      journal:\n"
            "        absent: [reversal_queued, reversal_queud]\n",
            6,
            "unknown journal event 'reversal_queud'",
        ),
        (
            "version: 1\nsteps:\n  - expect:\n      journal:\n        count: {taken: 1, tken: 0}\n",
            5,
            "expect.journal.count: unknown journal event 'tken'",
        ),
        (
            "version: 1\nsteps:\n  - power_failure: {on_event: presentd}\n",
            3,
            "power_failure.on_event: unknown journal event 'presentd'",
        ),
        (
            "version: 1\nsteps:\n  - host: {mode: down, on_event: authorized}\n",
            3,
            "unknown journal event 'authorized'",
        ),
        (
            "version: 1\natm:\n  cassettes: [{number: 1, denomination: 5000}]\n"
            "steps: [wait: idle]\n",
            3,
            "missing",
        ),
    ],
)
def test_a_bad_file_names_the_line_and_the_reason(text: str, line: int, reason: str) -> None:
    err = error_of(text)
    assert err.line == line, str(err)
    assert reason in err.message, str(err)
    assert str(err).startswith(f"s.yaml:{line}: ")


def test_every_shipped_scenario_loads() -> None:
    scenarios = load_scenarios([SCENARIOS])
    assert len(scenarios) >= 30
    assert all(any(True for _ in s.checks) for s in scenarios)


def test_one_bad_file_among_good_ones_refuses_them_all(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text("version: 1\nsteps: [wait: idle]\n")
    (tmp_path / "bad.yaml").write_text("version: 1\nsteps: []\n")
    with pytest.raises(DataFileError, match=r"bad\.yaml:2: steps: a scenario needs"):
        load_scenarios([tmp_path])
