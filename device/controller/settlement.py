"""What the ATM owes the host for each withdrawal: completions and reversals queued and forwarded
in order, cash abandoned, and recovery of withdrawals left open by a crash or a silent dispenser.

Every physical step of a withdrawal journals its intent before the command (`withdrawal_requested`
before the 0200 leaves, `dispense_started` before the pick, `present_started` before the shutter
opens, `retract_started` before a retract). Recovery settles from those intents together with what
the dispenser itself reports (notes in the transport, stacker or at the shutter, and what became
of the last notes presented), so a crash at any instant ends completed, reversed for exactly what
was not handed out, deferred while the dispenser is silent, or a reported SUSPECT.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from device.advice_queue import Advice, AdviceQueue
from device.controller.device_status import DispenserStatus, PresentOutcome
from device.controller.ports import CashDispenserPort, DriverError, HostPort, HostUnavailable
from device.journal import Journal
from device.journal_events import JournalEvent

log = logging.getLogger(__name__)

OPENING_EVENTS = frozenset({"withdrawal_requested", "authorised"})
SETTLED_EVENTS = frozenset({"reversal_queued", "completion_queued", "suspect"})
# Answers to an advice that mean the host did not handle it: send it again later.
ADVICE_RETRY_CODES = frozenset({"91", "96"})
ORIGINAL_NOT_FOUND = "25"


@dataclass
class OpenWithdrawal:
    """A withdrawal the journal shows begun (its request numbered) and not yet settled."""

    stan: str
    amount: int
    transmitted_at: str
    steps: list[str] = field(default_factory=list)
    retracted_amount: int | None = None
    declined: bool = False

    def reached(self, *events: str) -> bool:
        return any(event in self.steps for event in events)


def open_withdrawals(journal: Journal) -> list[OpenWithdrawal]:
    """Withdrawals whose request was numbered (or approved) but that were neither declined,
    completed, reversed nor marked suspect."""
    found: dict[str, OpenWithdrawal] = {}
    for entry in journal.entries():
        stan = entry.fields.get("stan")
        if not isinstance(stan, str):
            continue
        if entry.event in OPENING_EVENTS and stan not in found:
            found[stan] = OpenWithdrawal(
                stan, int(entry.fields["amount"]), str(entry.fields.get("transmitted_at", ""))
            )
        if stan not in found:
            continue
        withdrawal = found[stan]
        withdrawal.steps.append(entry.event)
        if entry.event == "authorised" and entry.fields.get("transmitted_at"):
            withdrawal.transmitted_at = str(entry.fields["transmitted_at"])
        elif entry.event == "authorisation" and entry.fields.get("code") != "00":
            withdrawal.declined = True
        elif entry.event == "retracted":
            withdrawal.retracted_amount = int(entry.fields.get("amount", 0))
    return [
        w for w in found.values() if not w.declined and not SETTLED_EVENTS.intersection(w.steps)
    ]


def settle_from_dispenser(
    withdrawal: OpenWithdrawal,
    status: DispenserStatus,
    dispenser: CashDispenserPort,
    journal: Journal,
) -> tuple[str, int]:
    """(outcome, cents handed out) of an open withdrawal: "reversal", "completion" or "suspect".

    The dispenser's report decides wherever it can; the journal's intents only say which
    commands may have run. Notes found in the transport, stacker or at the shutter are put
    away first (purged or retracted), so they can never be handed out unaccounted.
    """
    amount = withdrawal.amount
    if not withdrawal.reached("authorised"):
        # No approval reached the journal, so nothing was picked: reverse blind (harmless if
        # the host never saw the request, and it blocks a late original).
        return "reversal", 0
    if withdrawal.reached("taken"):
        return "completion", amount
    if status.presented_notes:
        retracted = dispenser.retract()
        journal.record(JournalEvent.RETRACTED, stan=withdrawal.stan, amount=int(retracted.amount))
        return "reversal", max(amount - int(retracted.amount), 0)
    if status.stacker_notes or status.transport_notes:
        # The present command never ran (the notes would have left the stacker): reject them.
        journal.record(JournalEvent.PURGED, stan=withdrawal.stan, notes=dispenser.purge())
        return "reversal", 0
    if not withdrawal.reached("present_started", "presented"):
        return "reversal", 0  # the shutter was never told to open: no note left the ATM
    if withdrawal.retracted_amount is not None:
        return "reversal", max(amount - withdrawal.retracted_amount, 0)
    if status.last_outcome == PresentOutcome.RETRACTED:
        return "reversal", 0  # the device took back every note it had presented
    if status.last_outcome == PresentOutcome.TAKEN:
        return "completion", amount
    return "suspect", 0


class Settlement:
    """Queues and forwards the advices of one ATM and settles what a crash left open."""

    def __init__(
        self,
        journal: Journal,
        advices: AdviceQueue,
        dispenser: CashDispenserPort,
        host: HostPort,
    ) -> None:
        self.journal = journal
        self.advices = advices
        self.dispenser = dispenser
        self.host = host
        self.deferred = False  # a withdrawal waits for a silent dispenser to answer again

    # ----- advices ----------------------------------------------------------------------------

    def queue(
        self,
        kind: str,
        stan: str,
        transmitted_at: dt.datetime | str,
        amount: int,
        handed_out: int,
        reason: str,
    ) -> None:
        """Queue a completion or reversal durably, journal it, then try to send it."""
        sent_at = transmitted_at if isinstance(transmitted_at, str) else transmitted_at.isoformat()
        self.advices.add(Advice(kind, stan, sent_at, amount, handed_out, reason))
        self.journal.record(
            JournalEvent(f"{kind}_queued"),
            stan=stan,
            amount=amount,
            dispensed_amount=handed_out,
            reason=reason,
        )
        self.forward()

    def forward(self) -> None:
        """Send the pending advices in order; each one the host handled is journalled."""
        for advice in self.advices.pending():
            try:
                if advice.kind == "completion":
                    code = self.host.complete(
                        advice.original_stan, advice.transmitted_at, advice.dispensed_amount
                    )
                else:
                    code = self.host.reverse(
                        advice.original_stan,
                        advice.transmitted_at,
                        advice.amount,
                        advice.dispensed_amount,
                    )
            except HostUnavailable:
                return
            if code in ADVICE_RETRY_CODES:
                log.warning(
                    "host could not handle the %s of %s (%s)",
                    advice.kind,
                    advice.original_stan,
                    code,
                )
                return
            self.advices.acknowledge(advice.key)
            self.journal.record(
                JournalEvent(f"{advice.kind}_acknowledged"), stan=advice.original_stan, code=code
            )
            if code == ORIGINAL_NOT_FOUND and advice.dispensed_amount:
                # Cash went out and the host knows no such withdrawal: an operator must look.
                self.journal.record(
                    JournalEvent.SUSPECT,
                    stan=advice.original_stan,
                    amount=advice.amount,
                    dispensed_amount=advice.dispensed_amount,
                    reason=f"the host found no withdrawal for this {advice.kind} (25)",
                )

    # ----- cash that will not be handed out ---------------------------------------------------

    def abandon_cash(
        self, stan: str, transmitted_at: dt.datetime, amount: int, reason: str, state: str
    ) -> None:
        """Notes that will not be presented go to the reject bin; the host gets a reversal."""
        log.warning("withdrawal %s abandoned: %s", stan, reason)
        try:
            purged = self.dispenser.purge()
            self.journal.record(JournalEvent.PURGED, stan=stan, notes=purged)
        except DriverError as err:
            self.journal.record(JournalEvent.PURGE_FAILED, stan=stan, error=str(err))
        self.queue("reversal", stan, transmitted_at, amount, 0, state)

    # ----- recovery ---------------------------------------------------------------------------

    def recover(self, reason: str = "power failure") -> list[str]:
        """Settle what a crash (or a silent dispenser) left open; one line per withdrawal, for
        the operator.

        A withdrawal the dispenser cannot be asked about now is journalled `settlement_deferred`
        and stays open, to be settled when it answers; only a report that still cannot tell makes
        it SUSPECT.
        """
        report: list[str] = []
        for withdrawal in open_withdrawals(self.journal):
            try:
                status = self.dispenser.status()
                outcome, handed_out = settle_from_dispenser(
                    withdrawal, status, self.dispenser, self.journal
                )
            except DriverError as err:
                log.warning("recovery of %s: %s", withdrawal.stan, err)
                if "settlement_deferred" not in withdrawal.steps:
                    self.journal.record(
                        JournalEvent.SETTLEMENT_DEFERRED,
                        stan=withdrawal.stan,
                        amount=withdrawal.amount,
                        error=str(err),
                    )
                report.append(
                    f"STAN {withdrawal.stan}: dispenser not answering, settled when it does"
                )
                continue
            if outcome == "suspect":
                self.journal.record(
                    JournalEvent.SUSPECT,
                    stan=withdrawal.stan,
                    amount=withdrawal.amount,
                    reason="the dispenser cannot tell whether the cash was taken",
                )
                report.append(f"STAN {withdrawal.stan}: SUSPECT, count the retract bin")
                continue
            self.advices.add(
                Advice(
                    outcome,
                    withdrawal.stan,
                    withdrawal.transmitted_at,
                    withdrawal.amount,
                    handed_out,
                    reason,
                )
            )
            self.journal.record(
                JournalEvent(f"{outcome}_queued"),
                stan=withdrawal.stan,
                amount=withdrawal.amount,
                dispensed_amount=handed_out,
                reason=f"{reason} recovery",
            )
            report.append(
                f"STAN {withdrawal.stan}: {outcome}, {handed_out} of {withdrawal.amount} cents "
                "handed out"
            )
        self.deferred = bool(open_withdrawals(self.journal))
        return report

    def settle_deferred(self) -> None:
        """Settle the withdrawals left open while the dispenser did not answer, once it does."""
        if not self.deferred:
            return
        try:
            self.dispenser.status()
        except DriverError:
            return  # still silent: try again between customers
        for line in self.recover("dispenser back"):
            log.warning("deferred settlement: %s", line)
        self.forward()

    def put_away_loose_notes(self) -> int:
        """Notes left in the transport or stacker with no withdrawal open (a pick cut short)
        go to the reject bin, so the dispenser can pay again; returns the notes moved."""
        status = self.dispenser.status()
        if status.presented_notes or not (status.stacker_notes or status.transport_notes):
            return 0
        moved = self.dispenser.purge()
        self.journal.record(JournalEvent.PURGED, notes=moved, reason="loose notes")
        return moved
