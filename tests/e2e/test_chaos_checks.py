"""Checks between sessions with a withdrawal still settling, on a real ATM, bank and dispenser:
cash taken while the dispenser fell silent is counted exactly until the ATM settles it.
"""

from __future__ import annotations

from pathlib import Path

from device.sim.bank_stack import BankStack
from device.sim.fleet.in_process import Fleet, FleetConfig
from device.sim.fleet.robot_customer import SessionDriver, SessionPlan
from device.sim.invariants import check_all


def test_a_deferred_withdrawal_is_counted_until_it_settles_and_fails_only_at_the_end(
    bank_stack: BankStack, tmp_path: Path
) -> None:
    config = FleetConfig(atms=1, sessions=1, seed=7, customers=0)
    lines: list[str] = []
    with Fleet(config, bank_stack, tmp_path / "run", out=lines.append) as fleet:
        (slot,) = fleet.slots
        assert fleet.population is not None
        alice = fleet.population.customers[0]
        plan = SessionPlan(alice, "withdrawal", "checking", 2000, "F1")
        sim = slot.atm

        def silence_the_dispenser(_action: int) -> None:
            # As in `chaos --atms 10 --seed 7`: cash at the shutter, then no answer.
            if sim.controller.state == "presenting_cash" and not sim.bay.armed():
                sim.bay.inject("cash_dispenser", "unresponsive")

        SessionDriver(sim, plan, before_action=silence_the_dispenser).run()
        events = [e.event for e in sim.journal.entries()]
        assert "settlement_deferred" in events, events
        assert int(sim.bay.cash_dispenser.taken_notes.amount) == 2000

        # A check now: the hold is open and the 20.00 is in Alice's hand, not yet debited.
        snapshot = fleet.snapshot()
        assert [(s.stan, s.state, s.handed_out) for s in snapshot.settling] == [
            (snapshot.bank.open_holds[0].stan, "settlement deferred", None)
        ]
        checks = {c.name: c for c in check_all(snapshot, fleet.baseline, final=False)}
        assert all(c.ok for c in checks.values()), [c.line() for c in checks.values()]
        assert "difference 20.00" in checks["money conservation"].figure
        assert "not yet booked: 0.00 to 20.00" in checks["money conservation"].figure
        # Had the run ended here, that is a violation.
        failed = [c.name for c in check_all(snapshot, fleet.baseline, final=True) if not c.ok]
        assert failed == ["withdrawals settled"]

        # The engineer clears the fault; the check lets the ATM settle first, then all hold.
        sim.bay.clear()
        checks_now = fleet.checkpoint("final", final=True)
        assert [c.line() for c in checks_now if not c.ok] == []
        assert fleet.snapshot().settling == ()
        assert not any(line.startswith("VIOLATION") for line in lines)
        assert bank_stack.account_balance(alice.accounts[0][1]) == 250000 - 2000
