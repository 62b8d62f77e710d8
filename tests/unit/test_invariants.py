"""Each money invariant passes on a balanced state and catches the violation it is about."""

from __future__ import annotations

import dataclasses
import datetime as dt
from types import SimpleNamespace

import pytest

from device.sim import invariants as inv
from device.sim.invariants import (
    BankState,
    Baseline,
    DispenserCash,
    OpenHold,
    Settling,
    Snapshot,
    Suspect,
)

DAY = dt.date(2026, 11, 28)


def healthy() -> Snapshot:
    """Two customers, one ATM: 150.00 withdrawn and taken, 100.00 transferred."""
    bank = BankState(
        customer_ledger={"1": 85000, "2": 100000},
        customer_available={"1": 85000, "2": 100000},
        ledger={"1": 85000, "2": 100000, "EQ": -200000, "ATM-CASH-ATM00001": 15000},
        journal_sums={"1": 85000, "2": 100000, "EQ": -200000, "ATM-CASH-ATM00001": 15000},
        held={},
        settlement={"ATM00001": 15000},
        open_holds=(),
        withdrawals_used={("1", DAY): 15000},
        transfers_used={("1", DAY): 10000},
        counted_usage={("1", DAY, "withdrawal"): 15000, ("1", DAY, "transfer"): 10000},
        postings_per_request={("ATM00001", "000002", DAY): 1, ("ATM00001", "000003", DAY): 1},
        debits_per_withdrawal={("ATM00001", "000001", DAY): 1},
        withdrawal_limit=50000,
        transfer_limit=250000,
    )
    dispenser = DispenserCash(
        "ATM00001", cassettes=85000, in_transit=0, reject_bin=0, retract_bin=0, taken=15000
    )
    return Snapshot(bank, (dispenser,))


BASELINE = Baseline(customer_money=200000, notes_money=100000)


def with_bank(snapshot: Snapshot, **changes: object) -> Snapshot:
    return dataclasses.replace(snapshot, bank=dataclasses.replace(snapshot.bank, **changes))


def test_a_balanced_state_passes_every_check() -> None:
    checks = inv.check_all(healthy(), BASELINE)
    assert [c.name for c in checks if not c.ok] == []
    assert len(checks) == 8
    assert all(c.line().startswith("PASS ") for c in checks)


def test_money_conservation_catches_cash_invented() -> None:
    snapshot = healthy()
    # The customer took 150.00 but the account was never debited.
    broken = with_bank(snapshot, customer_ledger={"1": 100000, "2": 100000})
    check = inv.money_conservation(broken, BASELINE)
    assert not check.ok
    assert "difference 150.00" in check.figure


def test_money_conservation_catches_a_lost_note() -> None:
    snapshot = healthy()
    lost = dataclasses.replace(snapshot.dispensers[0], cassettes=84000)
    check = inv.money_conservation(dataclasses.replace(snapshot, dispensers=(lost,)), BASELINE)
    assert not check.ok
    assert "difference -10.00" in check.figure


def test_money_conservation_reports_suspects_and_fails_only_if_money_is_off() -> None:
    snapshot = dataclasses.replace(healthy(), suspects=(Suspect("ATM00001", "000009", 5000),))
    balanced = inv.money_conservation(snapshot, BASELINE)
    assert balanced.ok and "1 SUSPECT" in balanced.figure
    taken_unbooked = dataclasses.replace(
        snapshot.dispensers[0], cassettes=80000, taken=20000
    )  # the suspect's 50.00 was in fact taken
    check = inv.money_conservation(
        dataclasses.replace(snapshot, dispensers=(taken_unbooked,)), BASELINE
    )
    assert not check.ok


def test_no_open_holds_catches_a_hold_never_released() -> None:
    hold = OpenHold("ATM00001", "000004", "1", 2000)
    check = inv.no_open_holds(with_bank(healthy(), open_holds=(hold,)))
    assert not check.ok
    assert "1 open hold(s) of 20.00" in check.figure and "ATM00001/000004" in check.figure


def test_no_open_holds_leaves_suspect_holds_to_the_operator() -> None:
    hold = OpenHold("ATM00001", "000004", "1", 2000)
    snapshot = dataclasses.replace(
        with_bank(healthy(), open_holds=(hold,)),
        suspects=(Suspect("ATM00001", "000004", 2000),),
    )
    check = inv.no_open_holds(snapshot)
    assert check.ok and "1 more on SUSPECT" in check.figure


@pytest.mark.parametrize("which", ["ledger", "available"])
def test_no_negative_balance_catches_an_overdrawn_account(which: str) -> None:
    field = "customer_ledger" if which == "ledger" else "customer_available"
    check = inv.no_negative_balance(with_bank(healthy(), **{field: {"1": -1, "2": 100000}}))
    assert not check.ok
    assert "1 negative account(s)" in check.figure


def test_daily_limits_catch_a_withdrawal_over_the_limit() -> None:
    broken = with_bank(
        healthy(),
        withdrawals_used={("1", DAY): 52000},
        counted_usage={("1", DAY, "withdrawal"): 52000, ("1", DAY, "transfer"): 10000},
    )
    check = inv.daily_limits(broken)
    assert not check.ok
    assert "most withdrawn by one account in a day 520.00" in check.figure


def test_daily_limits_catch_a_counter_that_disagrees_with_the_holds() -> None:
    broken = with_bank(
        healthy(),
        counted_usage={("1", DAY, "withdrawal"): 5000, ("1", DAY, "transfer"): 10000},
    )
    check = inv.daily_limits(broken)
    assert not check.ok and "1 counter(s) that disagree" in check.figure


def test_one_posting_per_stan_catches_a_double_posting() -> None:
    broken = with_bank(healthy(), postings_per_request={("ATM00001", "000002", DAY): 2})
    check = inv.one_posting_per_stan(broken)
    assert not check.ok and "ATM00001/000002" in check.figure


def test_one_posting_per_stan_catches_a_withdrawal_debited_twice() -> None:
    broken = with_bank(healthy(), debits_per_withdrawal={("ATM00001", "000001", DAY): 2})
    check = inv.one_posting_per_stan(broken)
    assert not check.ok and "debited more than once 1" in check.figure


def test_cash_ledger_catches_a_dispense_not_booked() -> None:
    broken = with_bank(healthy(), settlement={"ATM00001": 10000})
    check = inv.cash_ledger_matches_dispensers(broken)
    assert not check.ok
    assert "ATM00001 ledger 100.00 vs handed out 150.00" in check.figure


def test_ledger_matches_journal_catches_a_balance_without_its_lines() -> None:
    snapshot = healthy()
    broken = with_bank(snapshot, journal_sums={**snapshot.bank.journal_sums, "2": 90000})
    check = inv.ledger_matches_journal(broken)
    assert not check.ok and "2 balance 1,000.00 vs lines 900.00" in check.figure


def test_ledger_matches_journal_catches_available_not_ledger_minus_holds() -> None:
    broken = with_bank(healthy(), customer_available={"1": 80000, "2": 100000})
    assert not inv.ledger_matches_journal(broken).ok


def test_suspects_are_read_from_journal_entries() -> None:
    entries = [
        SimpleNamespace(event="authorised", fields={"stan": "000001", "amount": 2000}),
        SimpleNamespace(event="suspect", fields={"stan": "000001", "amount": 2000}),
    ]
    assert inv.journal_suspects("ATM00002", entries) == [Suspect("ATM00002", "000001", 2000)]


# ----- withdrawals still settling between two checks ------------------------------------------


def cash_taken_before_booked(extra_taken: int = 2000) -> Snapshot:
    """The state a check met after 100 sessions of `chaos --atms 10 --seed 7`: the customer
    took 20.00 (STAN 000025), the ATM deferred its settlement while the dispenser was silent,
    and the bank still holds the 20.00 without having debited it."""
    snapshot = healthy()
    hold = OpenHold("ATM00001", "000025", "1", 2000)
    dispenser = dataclasses.replace(
        snapshot.dispensers[0],
        cassettes=snapshot.dispensers[0].cassettes - extra_taken,
        taken=snapshot.dispensers[0].taken + extra_taken,
    )
    return dataclasses.replace(
        with_bank(
            snapshot,
            open_holds=(hold,),
            held={"1": 2000},
            customer_available={"1": 83000, "2": 100000},
            withdrawals_used={("1", DAY): 17000},
            counted_usage={("1", DAY, "withdrawal"): 17000, ("1", DAY, "transfer"): 10000},
        ),
        dispensers=(dispenser,),
    )


def failing(snapshot: Snapshot, *, final: bool = False) -> list[str]:
    return [c.name for c in inv.check_all(snapshot, BASELINE, final=final) if not c.ok]


def test_cash_taken_before_the_bank_books_it_fails_when_nothing_says_it_is_settling() -> None:
    assert failing(cash_taken_before_booked()) == [
        "money conservation",
        "no open holds",
        "ATM cash ledger = dispensed notes",
    ]


@pytest.mark.parametrize(
    ("state", "handed_out"),
    [("completion queued", 2000), ("settlement deferred", None)],
)
def test_a_withdrawal_still_settling_is_counted_for_what_it_handed_out(
    state: str, handed_out: int | None
) -> None:
    settling = Settling("ATM00001", "000025", 2000, state, handed_out)
    snapshot = dataclasses.replace(cash_taken_before_booked(), settling=(settling,))
    assert failing(snapshot) == []
    checks = {c.name: c for c in inv.check_all(snapshot, BASELINE, final=False)}
    assert "not yet booked: " in checks["money conservation"].figure
    assert "1 more on withdrawals still settling" in checks["no open holds"].figure
    assert "ATM00001/000025 20.00 " + state in checks["withdrawals settled"].figure
    # At the end of a run nothing may still be settling.
    assert failing(snapshot, final=True) == ["withdrawals settled"]


def test_a_settling_withdrawal_does_not_hide_money_off_by_more_than_it_handed_out() -> None:
    settling = Settling("ATM00001", "000025", 2000, "completion queued", 2000)
    snapshot = dataclasses.replace(cash_taken_before_booked(4000), settling=(settling,))
    assert failing(snapshot) == ["money conservation", "ATM cash ledger = dispensed notes"]
    deferred = Settling("ATM00001", "000025", 2000, "settlement deferred", None)
    snapshot = dataclasses.replace(snapshot, settling=(deferred,))
    assert failing(snapshot) == ["money conservation", "ATM cash ledger = dispensed notes"]


def test_a_reversal_queued_for_notes_never_handed_out_expects_no_difference() -> None:
    settling = Settling("ATM00001", "000025", 2000, "reversal queued", 0)
    snapshot = dataclasses.replace(cash_taken_before_booked(), settling=(settling,))
    assert failing(snapshot) == ["money conservation", "ATM cash ledger = dispensed notes"]
    balanced = dataclasses.replace(cash_taken_before_booked(0), settling=(settling,))
    assert failing(balanced) == []


def test_an_advice_the_host_handled_but_did_not_acknowledge_counts_for_nothing() -> None:
    # The bank booked the completion (no hold open); the ATM still has it queued.
    settling = Settling("ATM00001", "000001", 15000, "completion queued", 15000)
    snapshot = dataclasses.replace(healthy(), settling=(settling,))
    assert failing(snapshot) == []
    assert failing(snapshot, final=True) == ["withdrawals settled"]


def entry(event: str, **fields: object) -> SimpleNamespace:
    return SimpleNamespace(event=event, fields=fields)


def advice(kind: str, stan: str, amount: int, handed_out: int) -> SimpleNamespace:
    return SimpleNamespace(
        kind=kind, original_stan=stan, amount=amount, dispensed_amount=handed_out
    )


SEED_7_JOURNAL = [
    entry("withdrawal_requested", stan="000025", amount=2000),
    entry("authorisation", stan="000025", code="00", amount=2000),
    entry("authorised", stan="000025", amount=2000),
    entry("presented", stan="000025", amount=2000),
    entry("device_failure", state="presenting_cash"),
    entry("settlement_deferred", stan="000025", amount=2000),
]


def test_settling_withdrawals_are_read_from_the_journal_and_the_advice_queue() -> None:
    deferred = Settling("ATM00001", "000025", 2000, "settlement deferred", None)
    assert inv.journal_settling("ATM00001", SEED_7_JOURNAL, []) == [deferred]
    queued = [
        *SEED_7_JOURNAL,
        entry("completion_queued", stan="000025", amount=2000, dispensed_amount=2000),
    ]
    completion = Settling("ATM00001", "000025", 2000, "completion queued", 2000)
    pending = [advice("completion", "000025", 2000, 2000)]
    assert inv.journal_settling("ATM00001", queued, pending) == [completion]
    assert inv.journal_settling("ATM00001", queued) == [completion]
    # The host acknowledged it: the queue is empty, the journal says so too, or not yet.
    assert inv.journal_settling("ATM00001", queued, []) == []
    acknowledged = [*queued, entry("completion_acknowledged", stan="000025", code="00")]
    assert inv.journal_settling("ATM00001", acknowledged) == []


def test_a_declined_or_completed_withdrawal_is_not_settling() -> None:
    declined = [
        entry("withdrawal_requested", stan="000003", amount=5000),
        entry("authorisation", stan="000003", code="51", amount=5000),
    ]
    assert inv.journal_settling("ATM00001", declined, []) == []
    blind = [
        entry("withdrawal_requested", stan="000004", amount=5000),
        entry("host_unavailable", step="withdrawal"),
        entry("reversal_queued", stan="000004", amount=5000, dispensed_amount=0),
    ]
    reversal = Settling("ATM00001", "000004", 5000, "reversal queued", 0)
    assert inv.journal_settling("ATM00001", blind) == [reversal]
    assert inv.journal_settling("ATM00001", blind, [advice("reversal", "000004", 5000, 0)]) == [
        reversal
    ]
