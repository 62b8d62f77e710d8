"""Every kind of expectation in the registry: a minimal example parses, a wrong key is refused
at its own line."""

from __future__ import annotations

import pytest

from config.data_files import DataFileError
from device.sim.scenarios.expectations import EXPECTATIONS
from device.sim.scenarios.schema import parse_scenario

HEAD = "version: 1\nsteps: [wait: idle]\nexpect:\n"

# kind: (minimal example on line 4, the kind with a wrong key, the error's line, its message)
EXAMPLES = {
    "state": ("idle", "\n    colour: red", 5, "expect.state: expected text, found {'colour'"),
    "screen": (
        "welcome",
        "\n    name: welcome\n    colour: red",
        6,
        "expect.screen: unknown key 'colour'",
    ),
    "devices": (
        "{cash_dispenser: {stacker: 0}}",
        "\n    cash_dispenser: {stacker: 0}\n    colour: {}",
        6,
        "expect.devices: unknown key 'colour'",
    ),
    "journal": (
        "{present: taken}",
        "\n    present: taken\n    colour: red",
        6,
        "expect.journal: unknown key 'colour'",
    ),
    "receipt": (
        "{contains: EUR}",
        "\n    contains: EUR\n    colour: red",
        6,
        "expect.receipt: unknown key 'colour'",
    ),
    "receipts": (
        "1",
        "\n    at_least: 1\n    colour: 2",
        6,
        "expect.receipts: unknown key 'colour'",
    ),
    "host_transactions": (
        '["balance 00"]',
        "\n    exactly: []\n    colour: []",
        6,
        "expect.host_transactions: unknown key 'colour'",
    ),
    "balances": (
        '{"10000001": 5}',
        '\n    "10000001": 5\n    "10000002": {ledger: 5, colour: 1}',
        6,
        "expect.balances.10000002: unknown key 'colour'",
    ),
    "ledger": (
        '{"10000001": [-5]}',
        '\n    "10000001": []\n    "colour": []',
        6,
        "expect.ledger: expected an 8-digit account, found 'colour'",
    ),
    "cash_taken": (
        "0",
        "\n    at_most: 0\n    colour: 1",
        6,
        "expect.cash_taken: unknown key 'colour'",
    ),
    "advices_pending": (
        "0",
        "\n    not: 1\n    colour: 1",
        6,
        "expect.advices_pending: unknown key 'colour'",
    ),
    "recovery": ("reversal", "\n    colour: red", 5, "expect.recovery: expected text"),
}


def test_every_kind_has_an_example_in_the_registry_order() -> None:
    assert list(EXAMPLES) == list(EXPECTATIONS)


@pytest.mark.parametrize("kind", list(EXPECTATIONS))
def test_a_kind_parses_a_minimal_example_and_refuses_a_wrong_key_at_its_line(kind: str) -> None:
    good, bad, line, reason = EXAMPLES[kind]
    (check,) = parse_scenario(f"{HEAD}  {kind}: {good}\n", "s.yaml").checks
    assert type(check) is EXPECTATIONS[kind] and check.kind == kind and check.where.line == 4
    with pytest.raises(DataFileError) as caught:
        parse_scenario(f"{HEAD}  {kind}:{bad}\n", "s.yaml")
    assert str(caught.value).startswith(f"s.yaml:{line}: "), str(caught.value)
    assert reason in caught.value.message, str(caught.value)
