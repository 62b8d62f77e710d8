"""Chaos on three ATMs with a fixed seed: device and link faults, a host outage through the
fault proxy and a power cut mid-session; every money invariant holds at every check.
"""

from __future__ import annotations

from pathlib import Path

from device.assembly.bank_stack import BankStack
from device.assembly.chaos import ChaosFleet, chaos_host_timeout, plan_chaos
from device.assembly.fleet import FleetConfig

SEED = 11


def test_chaos_run_keeps_every_invariant(bank_stack: BankStack, tmp_path: Path) -> None:
    lines: list[str] = []
    config = FleetConfig(
        atms=3,
        sessions=18,
        seed=SEED,
        customers=6,
        host_timeout=chaos_host_timeout(3),
        checks_every=3,
    )
    with ChaosFleet(config, bank_stack, tmp_path / "run", out=lines.append) as fleet:
        report = fleet.run()
        kinds = fleet.kinds_applied
        restarts = sum(slot.restarts for slot in fleet.slots)
        host_modes = [mode for proxy in fleet.proxies for _, mode in proxy.handled]
    assert sum(report.outcomes().values()) == 18
    # The run met what it is meant to: device faults, a host outage, a power cut.
    assert kinds["device"] >= 1 and kinds["host"] >= 1 and kinds["crash"] >= 1, kinds
    assert restarts >= 1
    assert "down" in host_modes or any("host unavailable" in o for o in report.outcomes())
    # Invariants were checked on the way (every 3 sessions per ATM) and at the end.
    assert sum(1 for line in lines if line.startswith("invariants after")) == 1
    assert report.violations == [], report.violations
    assert report.ok, "\n".join(report.summary())
    assert {c.name for c in report.checks} >= {
        "money conservation",
        "no open holds",
        "no negative balance",
        "daily limits",
        "one posting per terminal/STAN/day",
        "ATM cash ledger = dispensed notes",
    }


def test_chaos_plan_is_fixed_by_the_seed() -> None:
    first = plan_chaos(3, [5, 5, 5], seed=SEED)
    assert first == plan_chaos(3, [5, 5, 5], seed=SEED)
    assert first != plan_chaos(3, [5, 5, 5], seed=SEED + 1)
    assert first[0][0].kind == "host" and first[1][0].kind == "crash"
    assert first[2][0].kind == "device"


def test_the_atms_wait_longer_for_the_host_the_more_share_the_process() -> None:
    assert chaos_host_timeout(3) == chaos_host_timeout(8) == 2.0
    assert chaos_host_timeout(20) == 5.0
