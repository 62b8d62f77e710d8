"""Power-failure recovery: settle every withdrawal the journal left open, using the dispenser's
own counters; completed, reversed for exactly the amount not handed out, or marked SUSPECT.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from device.advice_queue import Advice, AdviceQueue
from device.controller.ports import CashDispenserPort
from device.drivers.base import DriverError
from device.journal import Journal

log = logging.getLogger(__name__)

SETTLED = frozenset({"reversal_queued", "completion_queued", "suspect"})


@dataclass
class OpenWithdrawal:
    stan: str
    amount: int
    transmitted_at: str
    steps: list[str] = field(default_factory=list)
    presented_amount: int = 0


def open_withdrawals(journal: Journal) -> list[OpenWithdrawal]:
    """Withdrawals authorised but neither completed, reversed nor marked suspect."""
    found: dict[str, OpenWithdrawal] = {}
    for entry in journal.entries():
        stan = entry.fields.get("stan")
        if not isinstance(stan, str):
            continue
        if entry.event == "authorised":
            found[stan] = OpenWithdrawal(
                stan, int(entry.fields["amount"]), str(entry.fields.get("transmitted_at", ""))
            )
        elif stan in found:
            found[stan].steps.append(entry.event)
            if entry.event == "presented":
                found[stan].presented_amount = int(entry.fields.get("amount", 0))
    return [w for w in found.values() if not SETTLED.intersection(w.steps)]


def _settle(
    withdrawal: OpenWithdrawal, status: Any, dispenser: CashDispenserPort
) -> tuple[str, int]:
    """(outcome, cents handed out) of an open withdrawal: reversal, completion or suspect."""
    steps = set(withdrawal.steps)
    if "taken" in steps:
        return "completion", withdrawal.amount
    if "presented" not in steps:
        # The notes never reached the customer: whatever is in the stacker goes to reject.
        if status.stacker_notes:
            dispenser.purge()
        return "reversal", 0
    if status.presented_notes:
        retracted = dispenser.retract()
        return "reversal", max(withdrawal.presented_amount - int(retracted.amount), 0)
    if "retracted" in steps:
        return "reversal", 0
    if dispenser.taken():
        return "completion", withdrawal.amount
    return "suspect", 0


def recover(
    journal: Journal,
    advices: AdviceQueue,
    dispenser: CashDispenserPort,
    reason: str = "power failure",
) -> list[str]:
    """Settle what a power failure (or a silent dispenser) left open; returns one line per
    withdrawal, for the operator.

    A withdrawal the dispenser cannot be asked about now is journalled `settlement_deferred` and
    stays open (see `open_withdrawals`), to be settled when it answers; only counters that answer
    and still cannot tell make it SUSPECT.
    """
    report: list[str] = []
    for withdrawal in open_withdrawals(journal):
        try:
            outcome, handed_out = _settle(withdrawal, dispenser.status(), dispenser)
        except DriverError as err:
            log.warning("recovery of %s: %s", withdrawal.stan, err)
            if "settlement_deferred" not in withdrawal.steps:
                journal.record(
                    "settlement_deferred",
                    stan=withdrawal.stan,
                    amount=withdrawal.amount,
                    error=str(err),
                )
            report.append(f"STAN {withdrawal.stan}: dispenser not answering, settled when it does")
            continue
        if outcome == "suspect":
            journal.record(
                "suspect",
                stan=withdrawal.stan,
                amount=withdrawal.amount,
                reason="counters cannot tell whether the cash was taken",
            )
            report.append(f"STAN {withdrawal.stan}: SUSPECT, count the retract bin")
            continue
        advices.add(
            Advice(
                outcome,
                withdrawal.stan,
                withdrawal.transmitted_at,
                withdrawal.amount,
                handed_out,
                reason,
            )
        )
        journal.record(
            f"{outcome}_queued",
            stan=withdrawal.stan,
            amount=withdrawal.amount,
            dispensed_amount=handed_out,
            reason=f"{reason} recovery",
        )
        report.append(
            f"STAN {withdrawal.stan}: {outcome}, {handed_out} of {withdrawal.amount} cents "
            "handed out"
        )
    return report
