"""Chaos on three ATMs with a fixed seed: device and link faults, a host outage through the
fault proxy and a power cut mid-session; every money invariant holds at every check.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from config.card_numbers import mask_pan
from device.sim.bank_stack import BankStack
from device.sim.chaos import ChaosFleet, chaos_host_timeout, plan_chaos
from device.sim.fleet.in_process import FleetConfig
from device.sim.fleet.robot_customer import (
    SessionDriver,
    SessionPlan,
    classify,
    journal_since,
    last_seq,
)
from host.models import Card

SEED = 11


@pytest.mark.parametrize("link_backend", ["pty", "inline"])
def test_chaos_run_keeps_every_invariant(
    bank_stack: BankStack, tmp_path: Path, link_backend: str
) -> None:
    lines: list[str] = []
    config = FleetConfig(
        atms=3,
        sessions=18,
        seed=SEED,
        customers=6,
        host_timeout=chaos_host_timeout(3),
        checks_every=3,
        link_backend=link_backend,
    )
    with ChaosFleet(config, bank_stack, tmp_path / "run", out=lines.append) as fleet:
        bay = fleet.slots[0].atm.bay
        assert {bay.link(name).backend for name in bay.urls()} == {link_backend}
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


def test_the_bank_follows_the_atms_virtual_time_so_a_lockout_ends(
    bank_stack: BankStack, tmp_path: Path
) -> None:
    config = FleetConfig(atms=1, sessions=1, seed=SEED, customers=0, host_timeout=2.0)
    with ChaosFleet(config, bank_stack, tmp_path / "run", out=lambda _: None) as fleet:
        (slot,) = fleet.slots
        assert fleet.population is not None
        alice = fleet.population.customers[0]
        # Three wrong PINs at 12:00 on the ATM's clock lock the card for 1800 s of it.
        with bank_stack.engine.begin() as conn:
            conn.execute(
                sa.update(Card)
                .where(Card.masked_pan == mask_pan(alice.pan))
                .values(
                    failed_pin_attempts=3,
                    status="locked",
                    locked_until=fleet.epoch + dt.timedelta(seconds=1800),
                )
            )
        plan = SessionPlan(alice, "balance", "checking")

        def session() -> str:
            start = last_seq(slot.atm)
            SessionDriver(slot.atm, plan).run()
            return classify(journal_since(slot.atm, start))

        assert session() in ("declined 75", "captured")  # the ATM may keep a locked card
        slot.clock.advance(1800)
        assert session() == "approved"
        assert bank_stack.bank.clock() == slot.clock.now() > fleet.epoch + dt.timedelta(hours=0.5)
    # The bank is back on its own clock once the run is over.
    assert abs(bank_stack.bank.clock() - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=60)


def test_the_engineer_empties_the_retain_bins_at_each_check(
    bank_stack: BankStack, tmp_path: Path
) -> None:
    config = FleetConfig(atms=1, sessions=1, seed=SEED, customers=0, host_timeout=2.0)
    lines: list[str] = []
    with ChaosFleet(config, bank_stack, tmp_path / "run", out=lines.append) as fleet:
        (slot,) = fleet.slots
        assert fleet.population is not None
        sim = slot.atm
        sim.insert_card(fleet.population.customers[0].card_id)
        sim.press("cancel")  # back out at the PIN: the card comes to the gate
        sim.run_until(lambda: sim.bay.card_reader.state.value == "gate", 5.0, "card at gate")
        # Nobody takes it: the ATM pulls it in after its card-take timeout.
        sim.advance(120)
        sim.settle()
        reader = sim.bay.card_reader
        assert reader.retained_count == 1
        fleet.checkpoint("after 1 sessions")
        assert reader.retained_count == 0
        assert fleet.cards_retrieved == 1
    assert lines[-1].startswith("invariants after 1 sessions: all 8 hold")
