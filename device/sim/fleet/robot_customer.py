"""The robot customer: a seeded plan of visits, and a driver that plays one visit at one ATM by
reacting to its screens; the outcome of a visit read from the journal entries it wrote.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from device.clock import VirtualClock
from device.sim.customers import SimCustomer
from device.sim.simulated_atm import SimulatedAtm

FAST_CASH_KEYS = ("F1", "F2", "F3", "F4")  # 20.00, 50.00, 100.00, 200.00
TRANSFER_AMOUNTS = (1000, 2500, 5000, 10000, 25000)
MIX = (("withdrawal", 0.6), ("balance", 0.25), ("transfer", 0.15))
SESSION_SECONDS = 30.0  # real seconds a session may take before the run calls it stuck
HEALTH_CHECK_SECONDS = 5.0  # the controller's own interval, on its clock
STALL_REPEATS = 4
STALL_ADVANCE_SECONDS = 30.0  # a stalled session moves on to the ATM's inactivity timeout


class FleetError(RuntimeError):
    """The fleet could not be set up or driven (no bank, an ATM that would not start)."""


# ----- what customers do --------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionPlan:
    """One customer visit: who, what, from which account, how much."""

    customer: SimCustomer
    kind: str  # withdrawal | balance | transfer
    account: str  # checking | savings
    amount: int = 0  # cents; withdrawals use a fast-cash key for it
    amount_key: str = ""


def plan_session(rng: random.Random, customers: Sequence[SimCustomer]) -> SessionPlan:
    customer = rng.choice(customers)
    roll, kind = rng.random(), MIX[-1][0]
    for name, share in MIX:
        if roll < share:
            kind = name
            break
        roll -= share
    if kind == "transfer" and len(customer.account_types) < 2:
        kind = "balance"  # a transfer goes between the card's own two accounts
    account = rng.choice(customer.account_types)
    if kind == "withdrawal":
        index = rng.randrange(len(FAST_CASH_KEYS))
        return SessionPlan(
            customer, kind, account, (2000, 5000, 10000, 20000)[index], FAST_CASH_KEYS[index]
        )
    if kind == "transfer":
        return SessionPlan(customer, kind, account, rng.choice(TRANSFER_AMOUNTS))
    return SessionPlan(customer, kind, account)


def plan_fleet(
    customers: Sequence[SimCustomer], atms: int, sessions: int, seed: int
) -> list[list[SessionPlan]]:
    """Sessions dealt to ATMs in turn; each ATM's list depends only on the seed and its index."""
    counts = [sessions // atms + (1 if i < sessions % atms else 0) for i in range(atms)]
    plans = []
    for index, count in enumerate(counts):
        rng = random.Random(f"sessions:{seed}:{index}")
        plans.append([plan_session(rng, customers) for _ in range(count)])
    return plans


# ----- one session at one ATM -------------------------------------------------------------------


class CrashNow(Exception):
    """Raised by a session hook to cut the ATM's power at this point of the session."""


@dataclass(frozen=True)
class SessionResult:
    terminal_id: str
    kind: str
    outcome: str
    seconds: float


def classify(events: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """The outcome of a session from the journal entries it wrote."""
    names = [name for name, _ in events]
    if "suspect" in names:
        return "suspect"
    if "card_captured" in names:
        return "captured"
    if "authorised" in names:
        if "reversal_queued" in names:
            return "reversed"
        if "settlement_deferred" in names:
            return "settlement deferred"  # settled later, from the dispenser's counters
        return "approved" if "completion_queued" in names else "unsettled"
    for name, fields in events:
        if name in ("authorisation", "pin_verified") and fields.get("code") not in (None, "00"):
            return f"declined {fields['code']}"
    if any(name == "authorisation" and fields.get("code") == "00" for name, fields in events):
        return "approved"
    for name in ("host_unavailable", "card_unreadable", "device_failure", "out_of_service"):
        if name in names:
            return name.replace("_", " ")
    return "no transaction" if "card_read" in names else "not served"


SessionHook = Callable[[int], None]


class SessionDriver:
    """Plays one customer at one ATM, reacting to what the ATM shows, until it is idle again."""

    def __init__(
        self,
        sim: SimulatedAtm,
        plan: SessionPlan,
        *,
        before_action: SessionHook | None = None,
        leave_cash: bool = False,
        wrong_pin_first: bool = False,
    ) -> None:
        self.sim = sim
        self.plan = plan
        self.before_action = before_action
        self.leave_cash = leave_cash
        self.wrong_pin_first = wrong_pin_first
        self.actions = 0
        self._inserted = False
        self._pin_tries = 0
        self._chosen = False
        self._amount_given = False

    def _act(self, what: Callable[[], None]) -> None:
        if self.before_action is not None:
            self.before_action(self.actions)
        self.actions += 1
        what()

    def _press(self, *keys: str) -> None:
        def press() -> None:
            for key in keys:
                self.sim.bay.pin_pad.press(key)
            self.sim.settle()

        self._act(press)

    def run(self, seconds: float = SESSION_SECONDS) -> None:
        """Drive until the customer has been and gone; AtmRunError-like FleetError if stuck."""
        sim, controller = self.sim, self.sim.controller
        deadline = time.monotonic() + seconds
        seen, repeats = ("", ""), 0
        while time.monotonic() < deadline:
            sim.settle()
            state = controller.state
            # The same screen after a few tries: the ATM does not see the keys (a faulty pad
            # or link); stop pressing and let its own timers (inactivity) end the session.
            now_seen = (state, controller.screen.name)
            repeats = repeats + 1 if now_seen == seen else 0
            seen = now_seen
            stalled = repeats >= STALL_REPEATS
            if state == "idle":
                if self._inserted and sim.bay.card_reader.state.value == "none":
                    return
                if not self._inserted:
                    self._inserted = True
                    self._act(lambda: sim.insert_card(self.plan.customer.card_id))
                    continue
            if state == "out_of_service":
                return  # not served, or the ATM failed during the session (the card may be in)
            if sim.bay.card_reader.state.value == "gate":
                self._act(lambda: sim.take("card"))
                continue
            if not stalled and self._react(state):
                continue
            if not isinstance(sim.clock, VirtualClock):
                continue
            timer = controller.next_deadline
            if timer is not None:
                sim.clock.advance(max(timer - sim.clock.monotonic(), 0.0))
            elif state in ("idle", "out_of_service"):
                sim.clock.advance(HEALTH_CHECK_SECONDS)
            elif stalled:
                sim.clock.advance(STALL_ADVANCE_SECONDS)
        raise FleetError(
            f"{sim.terminal_id}: session stuck in {controller.state} ({controller.screen.name}) "
            f"after {seconds:g} s"
        )

    def _react(self, state: str) -> bool:
        """Do what a customer does in `state`; False when there is nothing to do but wait."""
        sim, plan = self.sim, self.plan
        screen = sim.controller.screen.name
        if screen == "more_time":
            self._press("F4")
            return True
        if screen == "receipt_unavailable":
            self._press("F4")  # go on without a receipt, as most customers do
            return True
        if state == "pin_entry":
            if self._pin_tries >= 3:
                self._press("F8")
            else:
                wrong = self.wrong_pin_first and self._pin_tries == 0
                pin = plan.customer.pin if not wrong else _other_pin(plan.customer.pin)
                self._pin_tries += 1
                self._press(*pin, "enter")
            return True
        if state == "transaction_menu":
            if self._chosen:
                self._press("F8")
            else:
                self._chosen = True
                key = {"withdrawal": "F1", "balance": "F2", "transfer": "F3"}[plan.kind]
                self._press(key)
            return True
        if state == "account_selection":
            self._press("F1" if plan.account == "checking" else "F2")
            return True
        if state == "amount_entry":
            if self._amount_given:
                self._press("F8")  # "cannot be dispensed here", or a second visit
            elif plan.kind == "withdrawal":
                self._amount_given = True
                self._press(plan.amount_key)
            else:
                self._amount_given = True
                self._press("F5", *str(plan.amount // 100), "enter")
            return True
        if state == "showing_result":
            # "No" on a result screen; the cancel key on a declined one (it has no keys).
            self._press("F8" if screen == "result" else "cancel")
            return True
        if (
            state == "presenting_cash"
            and not self.leave_cash
            and sim.bay.cash_dispenser.presented.notes
        ):
            self._act(lambda: sim.take("cash"))
            return True
        return False


def _other_pin(pin: str) -> str:
    return "".join(str((int(d) + 1) % 10) for d in pin)


def journal_since(sim: SimulatedAtm, seq: int) -> list[tuple[str, dict[str, Any]]]:
    return [(e.event, e.fields) for e in sim.journal.entries_since(seq)]


def last_seq(sim: SimulatedAtm) -> int:
    return sim.journal.last_seq
