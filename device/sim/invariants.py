"""Money invariants of a fleet of simulated ATMs and their bank, checked on a snapshot: each check
gives a named figure and pass or fail. Read the snapshot with read_bank, dispenser_cash, journal_*.

A withdrawal still settling (its advice queued, or its settlement deferred until the dispenser
answers) is part of the identities, for exactly what it handed out; at the final check none may be.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from host.models import (
    CUSTOMER_ACCOUNT_KINDS,
    Account,
    DailyUsage,
    Hold,
    HostTransaction,
    JournalEntry,
    JournalLine,
    Terminal,
)

Day = dt.date
UsageKey = tuple[str, Day]  # account number, day


@dataclass(frozen=True)
class Check:
    name: str
    figure: str
    ok: bool

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'} {self.name}: {self.figure}"


@dataclass(frozen=True)
class DispenserCash:
    """Where one ATM's cash is, in cents: what left the cassettes is somewhere in the rest."""

    terminal_id: str
    cassettes: int
    in_transit: int  # transport, stacker and at the shutter
    reject_bin: int
    retract_bin: int
    taken: int  # in customers' hands

    @property
    def total(self) -> int:
        return self.cassettes + self.in_transit + self.reject_bin + self.retract_bin + self.taken


@dataclass(frozen=True)
class OpenHold:
    terminal_id: str
    stan: str
    account: str
    amount: int


@dataclass(frozen=True)
class Suspect:
    """A withdrawal the ATM could not settle (it journalled `suspect`)."""

    terminal_id: str
    stan: str
    amount: int


@dataclass(frozen=True)
class Settling:
    """A withdrawal the ATM has not finished settling with the host: its completion or reversal
    is queued and not yet acknowledged, or its settlement is deferred until the dispenser
    answers. Its hold may still be open at the bank while its notes are in a customer's hands."""

    terminal_id: str
    stan: str
    amount: int  # cents authorised
    state: str  # "completion queued" | "reversal queued" | "settlement deferred"
    handed_out: int | None  # cents the customer got; None while the ATM cannot tell yet

    def describe(self) -> str:
        return f"{self.terminal_id}/{self.stan} {_money(self.amount)} {self.state}"


@dataclass(frozen=True)
class BankState:
    customer_ledger: Mapping[str, int]  # account number -> ledger balance
    customer_available: Mapping[str, int]
    ledger: Mapping[str, int]  # every account, bank accounts too
    journal_sums: Mapping[str, int]  # every account: the sum of its journal lines
    held: Mapping[str, int]  # customer account -> cents in open holds
    settlement: Mapping[str, int]  # terminal id -> ledger balance of its ATM cash account
    open_holds: tuple[OpenHold, ...]
    withdrawals_used: Mapping[UsageKey, int]  # recomputed from the holds
    transfers_used: Mapping[UsageKey, int]  # recomputed from approved transfers
    counted_usage: Mapping[tuple[str, Day, str], int]  # the daily_usage counters
    postings_per_request: Mapping[tuple[str, str, Day], int]  # terminal, STAN, day -> entries
    debits_per_withdrawal: Mapping[tuple[str, str, Day], int]  # original withdrawal -> debits
    withdrawal_limit: int
    transfer_limit: int


@dataclass(frozen=True)
class Snapshot:
    bank: BankState
    dispensers: tuple[DispenserCash, ...]
    suspects: tuple[Suspect, ...] = field(default=())
    settling: tuple[Settling, ...] = field(default=())

    def settling_on_open_holds(self) -> list[Settling]:
        """The settling withdrawals whose hold is still open: the bank has not yet booked what
        they handed out (one whose advice the host handled but did not get to acknowledge is
        already booked, and counts for nothing here)."""
        held = {(h.terminal_id, h.stan) for h in self.bank.open_holds}
        return [s for s in self.settling if (s.terminal_id, s.stan) in held]

    def unbooked(self, terminal_id: str | None = None) -> tuple[int, int]:
        """(low, high) cents handed out by settling withdrawals and not yet booked by the bank,
        for one ATM or all: exact when every ATM can tell; a deferred one adds 0..its amount."""
        low = high = 0
        for s in self.settling_on_open_holds():
            if terminal_id is not None and s.terminal_id != terminal_id:
                continue
            if s.handed_out is None:
                high += s.amount
            else:
                low, high = low + s.handed_out, high + s.handed_out
        return low, high

    def customer_money(self) -> int:
        """What customers own: their balances plus the notes they took from the ATMs."""
        return sum(self.bank.customer_ledger.values()) + sum(d.taken for d in self.dispensers)

    def notes_money(self) -> int:
        """Every note of every ATM, wherever it is now, customers' hands included."""
        return sum(d.total for d in self.dispensers)


@dataclass(frozen=True)
class Baseline:
    """The two totals that never change: customers' money, and the notes the ATMs were loaded
    with (no replenishment happens during a run)."""

    customer_money: int
    notes_money: int

    @classmethod
    def of(cls, snapshot: Snapshot) -> Baseline:
        return cls(snapshot.customer_money(), snapshot.notes_money())


def _money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100:,}.{abs(cents) % 100:02d}"


# ----- the checks -------------------------------------------------------------------------------


def _settling_figure(low: int, high: int) -> str:
    if low == high:
        return _money(low)
    return f"{_money(low)} to {_money(high)}"


def money_conservation(snapshot: Snapshot, baseline: Baseline) -> Check:
    """Balances + cash taken by customers is constant (a withdrawal moves money from the one
    to the other), and so is cassettes + transport + stacker + shutter + bins + cash taken.
    Cash handed out by a withdrawal still settling is in customers' hands before the bank books
    it: the first sum is then above its start by exactly that much."""
    balances = sum(snapshot.bank.customer_ledger.values())
    taken = sum(d.taken for d in snapshot.dispensers)
    in_atms = sum(d.total - d.taken for d in snapshot.dispensers)
    money_diff = balances + taken - baseline.customer_money
    notes_diff = in_atms + taken - baseline.notes_money
    low, high = snapshot.unbooked()
    figure = (
        f"balances {_money(balances)} + taken {_money(taken)} = {_money(balances + taken)} "
        f"(at start {_money(baseline.customer_money)}, difference {_money(money_diff)}); "
        f"notes in ATMs {_money(in_atms)} + taken = {_money(in_atms + taken)} "
        f"(loaded {_money(baseline.notes_money)}, difference {_money(notes_diff)})"
    )
    settling = snapshot.settling_on_open_holds()
    if settling:
        figure += (
            f"; handed out by {len(settling)} withdrawal(s) still settling, not yet booked: "
            f"{_settling_figure(low, high)}"
        )
    if snapshot.suspects:
        amount = sum(s.amount for s in snapshot.suspects)
        figure += f"; {len(snapshot.suspects)} SUSPECT withdrawal(s) of {_money(amount)}"
    return Check("money conservation", figure, low <= money_diff <= high and notes_diff == 0)


def no_open_holds(snapshot: Snapshot) -> Check:
    """No hold stays open unless its withdrawal is SUSPECT (left to the operator) or still
    settling (the ATM's advice is queued or its settlement deferred: see `all_settled`)."""
    suspect = {(s.terminal_id, s.stan) for s in snapshot.suspects}
    settling = {(s.terminal_id, s.stan) for s in snapshot.settling}
    holds = snapshot.bank.open_holds
    waiting = [h for h in holds if (h.terminal_id, h.stan) not in suspect | settling]
    on_suspects = [h for h in holds if (h.terminal_id, h.stan) in suspect]
    on_settling = [h for h in holds if (h.terminal_id, h.stan) in settling - suspect]
    figure = f"{len(waiting)} open hold(s) of {_money(sum(h.amount for h in waiting))}"
    if waiting:
        figure += " (" + ", ".join(f"{h.terminal_id}/{h.stan}" for h in waiting[:5]) + ")"
    if on_settling:
        figure += f"; {len(on_settling)} more on withdrawals still settling"
    if on_suspects:
        figure += f"; {len(on_suspects)} more on SUSPECT withdrawals, left to the operator"
    return Check("no open holds", figure, not waiting)


def all_settled(snapshot: Snapshot, *, final: bool) -> Check:
    """Withdrawals still settling are part of the other checks' figures between two sessions;
    at the end of a run, with every fault cleared and the ATMs given time, none may be left."""
    settling = snapshot.settling
    figure = f"{len(settling)} withdrawal(s) still settling"
    if settling:
        figure += " (" + ", ".join(s.describe() for s in settling[:5]) + ")"
        figure += "" if final else ", counted in the figures above"
    return Check("withdrawals settled", figure, not (final and settling))


def no_negative_balance(snapshot: Snapshot) -> Check:
    ledger = snapshot.bank.customer_ledger
    available = snapshot.bank.customer_available
    negative = sorted(n for n in ledger if ledger[n] < 0 or available.get(n, 0) < 0)
    lowest_ledger = min(ledger.values(), default=0)
    lowest_available = min(available.values(), default=0)
    figure = (
        f"{len(negative)} negative account(s); lowest ledger {_money(lowest_ledger)}, "
        f"lowest available {_money(lowest_available)}"
    )
    if negative:
        figure += " (" + ", ".join(negative[:5]) + ")"
    return Check("no negative balance", figure, not negative)


def daily_limits(snapshot: Snapshot) -> Check:
    bank = snapshot.bank
    over = [
        f"{account} {day} withdrawals {_money(used)}"
        for (account, day), used in bank.withdrawals_used.items()
        if used > bank.withdrawal_limit
    ] + [
        f"{account} {day} transfers {_money(used)}"
        for (account, day), used in bank.transfers_used.items()
        if used > bank.transfer_limit
    ]
    over += [
        f"{account} {day} {kind} counter {_money(used)}"
        for (account, day, kind), used in bank.counted_usage.items()
        if used > (bank.withdrawal_limit if kind == "withdrawal" else bank.transfer_limit)
    ]
    disagree = []
    for kind, used in (("withdrawal", bank.withdrawals_used), ("transfer", bank.transfers_used)):
        counters = {(a, d): u for (a, d, k), u in bank.counted_usage.items() if k == kind}
        for key in set(counters) | set(used):
            if counters.get(key, 0) != used.get(key, 0):
                disagree.append(f"{key[0]} {key[1]} {kind}")
    top_w = max(bank.withdrawals_used.values(), default=0)
    top_t = max(bank.transfers_used.values(), default=0)
    figure = (
        f"most withdrawn by one account in a day {_money(top_w)} (limit "
        f"{_money(bank.withdrawal_limit)}); most transferred {_money(top_t)} (limit "
        f"{_money(bank.transfer_limit)}); {len(over)} over, {len(disagree)} counter(s) that "
        "disagree with holds and transfers"
    )
    if over or disagree:
        figure += " (" + ", ".join((over + disagree)[:5]) + ")"
    return Check("daily limits", figure, not over and not disagree)


def one_posting_per_stan(snapshot: Snapshot) -> Check:
    bank = snapshot.bank
    repeated = {k: n for k, n in bank.postings_per_request.items() if n > 1}
    twice = {k: n for k, n in bank.debits_per_withdrawal.items() if n > 1}
    most = max(bank.postings_per_request.values(), default=0)
    figure = (
        f"most postings for one terminal/STAN/day {most}; withdrawals debited more than once "
        f"{len(twice)}"
    )
    bad = [f"{t}/{s}/{d}" for (t, s, d) in list(repeated) + list(twice)]
    if bad:
        figure += " (" + ", ".join(bad[:5]) + ")"
    return Check("one posting per terminal/STAN/day", figure, not repeated and not twice)


def cash_ledger_matches_dispensers(snapshot: Snapshot) -> Check:
    """Each ATM's cash account = the notes its dispenser handed out, less what withdrawals
    still settling handed out and the bank has not yet booked."""
    settlement = snapshot.bank.settlement
    wrong = []
    for d in snapshot.dispensers:
        booked_here = settlement.get(d.terminal_id, 0)
        low, high = snapshot.unbooked(d.terminal_id)
        if not low <= d.taken - booked_here <= high:
            wrong.append(
                f"{d.terminal_id} ledger {_money(booked_here)} vs handed out {_money(d.taken)}"
                + (f" ({_settling_figure(low, high)} settling)" if high else "")
            )
    booked = sum(settlement.get(d.terminal_id, 0) for d in snapshot.dispensers)
    taken = sum(d.taken for d in snapshot.dispensers)
    low, high = snapshot.unbooked()
    figure = (
        f"{len(snapshot.dispensers)} ATM cash accounts {_money(booked)}, notes handed out "
        f"{_money(taken)}"
        + (f" ({_settling_figure(low, high)} of them still settling)" if high else "")
        + f"; {len(wrong)} disagree"
    )
    if wrong:
        figure += " (" + "; ".join(wrong[:5]) + ")"
    return Check("ATM cash ledger = dispensed notes", figure, not wrong)


def ledger_matches_journal(snapshot: Snapshot) -> Check:
    bank = snapshot.bank
    wrong = [
        f"{n} balance {_money(b)} vs lines {_money(bank.journal_sums.get(n, 0))}"
        for n, b in bank.ledger.items()
        if bank.journal_sums.get(n, 0) != b
    ]
    wrong += [
        f"{n} available {_money(bank.customer_available.get(n, 0))} vs ledger - holds "
        f"{_money(b - bank.held.get(n, 0))}"
        for n, b in bank.customer_ledger.items()
        if bank.customer_available.get(n, 0) != b - bank.held.get(n, 0)
    ]
    total = sum(bank.ledger.values())
    figure = (
        f"{len(bank.ledger)} accounts; all balances sum to {_money(total)}; "
        f"{len(wrong)} disagree with their journal lines or holds"
    )
    if wrong:
        figure += " (" + "; ".join(wrong[:5]) + ")"
    return Check("balances = journal lines", figure, not wrong and total == 0)


def check_all(snapshot: Snapshot, baseline: Baseline, *, final: bool = True) -> list[Check]:
    """Every check; `final` (the end of a run) also requires that nothing is still settling."""
    return [
        money_conservation(snapshot, baseline),
        no_open_holds(snapshot),
        all_settled(snapshot, final=final),
        no_negative_balance(snapshot),
        daily_limits(snapshot),
        one_posting_per_stan(snapshot),
        cash_ledger_matches_dispensers(snapshot),
        ledger_matches_journal(snapshot),
    ]


# ----- reading the snapshot ---------------------------------------------------------------------


def dispenser_cash(terminal_id: str, dispenser: Any) -> DispenserCash:
    """The cash of a CashDispenserEmulator (typed Any: the assembly only reads its stacks)."""
    cassettes = sum(int(c.count) * int(c.denomination) for c in dispenser.cassettes)
    in_transit = sum(
        int(stack.amount) for stack in (dispenser.transport, dispenser.stacker, dispenser.presented)
    )
    return DispenserCash(
        terminal_id,
        cassettes,
        in_transit,
        int(dispenser.reject_bin.amount),
        int(dispenser.retract_bin.amount),
        int(dispenser.taken_notes.amount),
    )


def journal_suspects(terminal_id: str, entries: Iterable[Any]) -> list[Suspect]:
    """Withdrawals an ATM journal marks `suspect` (JournalEntry-like: event, fields)."""
    found = []
    for entry in entries:
        if entry.event == "suspect" and isinstance(entry.fields.get("stan"), str):
            found.append(
                Suspect(terminal_id, entry.fields["stan"], int(entry.fields.get("amount", 0)))
            )
    return found


SETTLING_EVENTS = {"completion_queued": "completion", "reversal_queued": "reversal"}
OPENING_EVENTS = ("withdrawal_requested", "authorised")
CLOSING_EVENTS = ("completion_acknowledged", "reversal_acknowledged", "suspect")


def journal_settling(
    terminal_id: str, entries: Iterable[Any], pending: Iterable[Any] | None = None
) -> list[Settling]:
    """Withdrawals of one ATM still settling, from its journal (JournalEntry-like: event,
    fields) and its advice queue (Advice-like: kind, original_stan, amount, dispensed_amount).

    The queue decides which advices are in flight: a crash between the host's acknowledgement
    and its journal line leaves the journal saying "queued" for an advice already handled.
    Without `pending`, the journal's `*_queued` lines without their `*_acknowledged` decide.
    """
    found: dict[str, Settling] = {}
    opened: dict[str, int] = {}
    for entry in entries:
        stan = entry.fields.get("stan")
        if not isinstance(stan, str):
            continue
        if entry.event in OPENING_EVENTS:
            opened.setdefault(stan, int(entry.fields.get("amount", 0)))
        elif entry.event == "settlement_deferred" and stan in opened:
            found[stan] = Settling(terminal_id, stan, opened[stan], "settlement deferred", None)
        elif entry.event in SETTLING_EVENTS:
            amount = int(entry.fields.get("amount", opened.get(stan, 0)))
            handed_out = int(entry.fields.get("dispensed_amount", 0))
            state = f"{SETTLING_EVENTS[entry.event]} queued"
            found[stan] = Settling(terminal_id, stan, amount, state, handed_out)
        elif entry.event in CLOSING_EVENTS:
            found.pop(stan, None)
    if pending is not None:
        found = {s: w for s, w in found.items() if w.state == "settlement deferred"}
        for advice in pending:
            found[advice.original_stan] = Settling(
                terminal_id,
                advice.original_stan,
                int(advice.amount),
                f"{advice.kind} queued",
                int(advice.dispensed_amount),
            )
    return sorted(found.values(), key=lambda s: s.stan)


def read_bank(engine: sa.Engine, withdrawal_limit: int, transfer_limit: int) -> BankState:
    """Everything the checks need from the bank's database, read in one transaction."""
    with engine.connect() as conn, conn.begin():
        conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        accounts = conn.execute(
            sa.select(
                Account.id,
                Account.number,
                Account.kind,
                Account.ledger_balance,
                Account.available_balance,
            )
        ).all()
        number = {row.id: row.number for row in accounts}
        customer = [row for row in accounts if row.kind in CUSTOMER_ACCOUNT_KINDS]
        sums = conn.execute(
            sa.select(JournalLine.account_id, sa.func.sum(JournalLine.amount)).group_by(
                JournalLine.account_id
            )
        ).all()
        settlement = conn.execute(
            sa.select(Terminal.terminal_id, Account.ledger_balance).join(
                Account, Account.id == Terminal.settlement_account_id
            )
        ).all()
        holds = conn.execute(
            sa.select(
                Hold.terminal_id,
                HostTransaction.stan,
                Hold.account_id,
                Hold.amount,
                Hold.posted_amount,
                Hold.status,
                Hold.usage_day,
            ).join(HostTransaction, HostTransaction.id == Hold.host_transaction_id)
        ).all()
        transfers = conn.execute(
            sa.select(
                HostTransaction.account_id, HostTransaction.received_at, HostTransaction.amount
            ).where(HostTransaction.kind == "transfer", HostTransaction.response_code == "00")
        ).all()
        usage = conn.execute(
            sa.select(DailyUsage.account_id, DailyUsage.day, DailyUsage.kind, DailyUsage.used)
        ).all()
        postings = conn.execute(
            sa.select(
                HostTransaction.terminal_id,
                HostTransaction.stan,
                HostTransaction.business_date,
                sa.func.count(JournalEntry.id),
            )
            .join(JournalEntry, JournalEntry.host_transaction_id == HostTransaction.id)
            .group_by(
                HostTransaction.terminal_id, HostTransaction.stan, HostTransaction.business_date
            )
        ).all()
        original = sa.orm.aliased(HostTransaction)
        debits = conn.execute(
            sa.select(
                original.terminal_id,
                original.stan,
                original.business_date,
                sa.func.count(JournalEntry.id),
            )
            .select_from(JournalEntry)
            .join(HostTransaction, HostTransaction.id == JournalEntry.host_transaction_id)
            .join(original, original.id == HostTransaction.original_id)
            .where(JournalEntry.kind == "withdrawal")
            .group_by(original.terminal_id, original.stan, original.business_date)
        ).all()
    held: dict[str, int] = defaultdict(int)
    open_holds = []
    withdrawals_used: dict[UsageKey, int] = defaultdict(int)
    for row in holds:
        account = number[row.account_id]
        if row.status == "held":
            held[account] += row.amount
            open_holds.append(OpenHold(row.terminal_id, row.stan, account, row.amount))
            withdrawals_used[(account, row.usage_day)] += row.amount
        else:
            withdrawals_used[(account, row.usage_day)] += row.posted_amount
    transfers_used: dict[UsageKey, int] = defaultdict(int)
    for account_id, received_at, amount in transfers:
        day = received_at.astimezone(dt.UTC).date()
        transfers_used[(number[account_id], day)] += amount
    return BankState(
        customer_ledger={r.number: r.ledger_balance for r in customer},
        customer_available={r.number: r.available_balance for r in customer},
        ledger={r.number: r.ledger_balance for r in accounts},
        journal_sums={number[a]: int(s) for a, s in sums},
        held=dict(held),
        settlement={t: b for t, b in settlement},
        open_holds=tuple(open_holds),
        withdrawals_used={k: v for k, v in withdrawals_used.items() if v},
        transfers_used=dict(transfers_used),
        counted_usage={(number[a], d, k): u for a, d, k, u in usage if u},
        postings_per_request={(t, s, d): n for t, s, d, n in postings},
        debits_per_withdrawal={(t, s, d): n for t, s, d, n in debits},
        withdrawal_limit=withdrawal_limit,
        transfer_limit=transfer_limit,
    )
