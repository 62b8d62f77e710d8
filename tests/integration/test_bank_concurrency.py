"""Many withdrawals at once on one account, each from its own thread, connection and STAN: the
conditional updates let exactly what the balance and the daily limit allow through."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from config.settings import Settings
from host.messages import HostRequest, HostResponse, RequestKind
from host.service import Bank
from tests.integration.conftest import (
    ALICE,
    CHARLIE,
    BankClock,
    BankRequests,
    CardData,
    balances,
    ledger_problems,
    usage,
)

THREADS = 40


def _all_at_once(bank: Bank, requests: list[HostRequest]) -> list[HostResponse]:
    """Send every request from its own thread, released together by a barrier."""
    barrier = threading.Barrier(len(requests))
    answers: list[HostResponse | None] = [None] * len(requests)

    def send(index: int) -> None:
        barrier.wait(timeout=30)
        answers[index] = bank.handle(requests[index])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(not thread.is_alive() for thread in threads)
    assert all(answer is not None for answer in answers)
    return [a for a in answers if a is not None]


@pytest.mark.parametrize(
    ("card", "account", "amount", "bound"),
    [
        (ALICE, "10000001", 2000, "limit"),  # 40 x 20.00 against a 500.00 daily limit
        (CHARLIE, "10000004", 1000, "balance"),  # 40 x 10.00 against a 120.00 balance
    ],
)
def test_concurrent_withdrawals_never_overspend(
    bank: Bank,
    bank_engine: sa.Engine,
    bank_settings: Settings,
    bank_clock: BankClock,
    card: CardData,
    account: str,
    amount: int,
    bound: str,
) -> None:
    ledger_before, available_before = balances(bank_engine, account)
    # Each terminal sends its own STANs; all four seeded ATMs take part.
    makers = [BankRequests(bank_clock, terminal_id=f"ATM0000{n}") for n in range(1, 5)]
    requests = [
        makers[i % 4].card(RequestKind.WITHDRAWAL, card, amount=amount) for i in range(THREADS)
    ]
    answers = _all_at_once(bank, requests)

    approved = [r for r, a in zip(requests, answers, strict=True) if a.approved]
    codes = {a.response_code.value for a in answers}
    expected_code = "61" if bound == "limit" else "51"
    assert codes == {"00", expected_code}
    allowed = (
        bank_settings.daily_withdrawal_limit if bound == "limit" else available_before
    ) // amount
    assert len(approved) == allowed
    approved_sum = amount * len(approved)
    ledger, available = balances(bank_engine, account)
    assert available_before - available == approved_sum
    assert ledger == ledger_before  # holds only, nothing posted yet
    assert usage(bank_engine, account) == approved_sum <= bank_settings.daily_withdrawal_limit
    assert available >= 0

    # Complete every approved withdrawal concurrently too, from the terminal that asked.
    by_terminal = {m.terminal_id: m for m in makers}
    completions = [
        by_terminal[r.terminal_id].advice(
            RequestKind.COMPLETION, r.stan, r.amount, dispensed=r.amount
        )
        for r in approved
    ]
    done = _all_at_once(bank, completions)
    assert all(a.approved for a in done)
    ledger, available = balances(bank_engine, account)
    assert ledger_before - ledger == approved_sum
    assert available == ledger >= 0
    assert ledger_problems(bank_engine) == []
    with bank_engine.connect() as conn:
        settled = conn.scalar(
            sa.text("SELECT SUM(ledger_balance) FROM accounts WHERE kind = 'atm_settlement'")
        )
    assert settled == approved_sum


def test_concurrent_repeats_of_one_request_move_money_once(
    bank: Bank, bank_engine: sa.Engine, bank_requests: BankRequests
) -> None:
    request = bank_requests.card(RequestKind.WITHDRAWAL, ALICE, amount=3000)
    answers = _all_at_once(bank, [request] * 12)
    assert len({a.retrieval_reference for a in answers}) == 1
    assert all(a.approved for a in answers)
    assert balances(bank_engine, "10000001") == (250000, 247000)
    assert usage(bank_engine, "10000001") == 3000


def test_concurrent_transfers_both_ways_do_not_deadlock(
    bank: Bank, bank_engine: sa.Engine, bank_clock: BankClock
) -> None:
    makers = [BankRequests(bank_clock, terminal_id=f"ATM0000{n}") for n in range(1, 5)]
    requests: list[HostRequest] = []
    for i in range(24):
        source, target = ("checking", "savings") if i % 2 else ("savings", "checking")
        requests.append(
            makers[i % 4].card(
                RequestKind.TRANSFER, ALICE, amount=100, from_account=source, to_account=target
            )
        )
    answers = _all_at_once(bank, requests)
    assert all(a.approved for a in answers), {a.response_code for a in answers}
    assert balances(bank_engine, "10000001") == (250000, 250000)
    assert balances(bank_engine, "10000002") == (1000000, 1000000)
    assert ledger_problems(bank_engine) == []


def test_a_completion_and_a_reversal_of_one_withdrawal_at_once_settle_it_once(
    bank: Bank, bank_engine: sa.Engine, bank_requests: BankRequests
) -> None:
    # Twenty withdrawals, each then completed and reversed at the same instant: whichever takes
    # the hold's lock first settles it, and the other sees what it did.
    ledger_before, _ = balances(bank_engine, "10000001")
    withdrawals = [
        bank_requests.card(RequestKind.WITHDRAWAL, ALICE, amount=1000 + n) for n in range(20)
    ]
    assert all(bank.handle(w).approved for w in withdrawals)
    advices = []
    for w in withdrawals:
        advices.append(
            bank_requests.advice(RequestKind.COMPLETION, w.stan, w.amount, dispensed=w.amount)
        )
        advices.append(bank_requests.advice(RequestKind.REVERSAL, w.stan, w.amount, dispensed=0))
    answers = _all_at_once(bank, advices)
    for w, completion, reversal in zip(withdrawals, answers[0::2], answers[1::2], strict=True):
        codes = (completion.response_code.value, reversal.response_code.value)
        # completed first: the reversal refunds it all (nothing was handed out); reversed
        # first: the completion is refused (12) and nothing is posted
        assert codes in {("00", "00"), ("12", "00")}, (w.stan, codes)
    # Either way every hold ends reversed with all its cash back, and nothing owed remains.
    assert balances(bank_engine, "10000001") == (ledger_before, ledger_before)
    assert ledger_problems(bank_engine) == []
    with bank_engine.connect() as conn:
        statuses = conn.execute(
            sa.text("SELECT status, posted_amount, count(*) FROM holds GROUP BY 1, 2")
        ).all()
    assert [tuple(row) for row in statuses] == [("reversed", 0, 20)]
    assert usage(bank_engine, "10000001") == 0
