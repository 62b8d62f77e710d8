"""The bank's requests in few round trips to the database, and the last one (the answer written
and committed together) all or nothing."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from config.settings import Settings
from host.database import host_engine
from host.messages import HostRequest, HostResponse, RequestKind, ResponseCode
from host.service import Bank
from tests.integration.conftest import ALICE, BankClock, BankRequests, balances, usage


def traced_round_trips(connection: psycopg.Connection[Any], action: Callable[[], object]) -> int:
    """How many times `action` sent the database something on `connection` and waited for its
    reply, counted in libpq's own trace."""
    with tempfile.TemporaryFile() as trace:
        connection.pgconn.trace(trace.fileno())
        try:
            action()
        finally:
            connection.pgconn.untrace()
        trace.seek(0)
        directions = [line.split(b"\t")[1] for line in trace.read().splitlines() if b"\t" in line]
    sent_then_answered = itertools.pairwise(directions)
    return sum(1 for a, b in sent_then_answered if (a, b) == (b"F", b"B"))


def _round_trips(bank: Bank, engine: sa.Engine, request: HostRequest) -> tuple[int, HostResponse]:
    """The request's answer, and its round trips on the bank's one connection."""
    raw = engine.raw_connection()
    connection = raw.driver_connection
    raw.close()
    answers: list[HostResponse] = []
    trips = traced_round_trips(connection, lambda: answers.append(bank.handle(request)))
    return trips, answers[0]


@pytest.fixture
def bank_on_one_connection(
    bank_settings: Settings, bank_clock: BankClock
) -> Iterator[tuple[Bank, sa.Engine]]:
    """The bank on an engine of one connection, as `host serve` runs it."""
    assert bank_settings.database_url is not None
    engine = host_engine(bank_settings.database_url, 1)
    try:
        yield Bank(engine, bank_settings, clock=bank_clock), engine
    finally:
        engine.dispose()


def test_a_withdrawal_and_a_balance_take_few_round_trips(
    bank_on_one_connection: tuple[Bank, sa.Engine], bank_requests: BankRequests
) -> None:
    bank, engine = bank_on_one_connection
    # Warm: the connection is open, its statements known.
    bank.handle(bank_requests.card(RequestKind.BALANCE, ALICE))
    withdrawal = bank_requests.card(RequestKind.WITHDRAWAL, ALICE, amount=2000)
    trips, answer = _round_trips(bank, engine, withdrawal)
    assert answer.response_code is ResponseCode.APPROVED
    # BEGIN with the terminal, the STAN claim and the card (locked) with its accounts; the
    # limit and hold together; the answer with COMMIT.
    assert trips == 3
    balance = bank_requests.card(RequestKind.BALANCE, ALICE)
    trips, answer = _round_trips(bank, engine, balance)
    assert answer.response_code is ResponseCode.APPROVED
    assert trips == 3  # the balances instead of the limit and hold


def test_an_answer_that_cannot_be_written_commits_nothing(
    bank: Bank, bank_engine: sa.Engine, bank_requests: BankRequests
) -> None:
    before = balances(bank_engine, "10000001"), usage(bank_engine, "10000001")
    with bank_engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE FUNCTION refuse_answer() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'answer refused'; END $$"
            )
        )
        conn.execute(
            sa.text(
                "CREATE TRIGGER refuse_answer BEFORE UPDATE ON host_transactions FOR EACH ROW "
                "WHEN (NEW.response_code IS NOT NULL) EXECUTE FUNCTION refuse_answer()"
            )
        )
    try:
        request = bank_requests.card(RequestKind.WITHDRAWAL, ALICE, amount=5000)
        answer = bank.handle(request)
    finally:
        with bank_engine.begin() as conn:
            conn.execute(sa.text("DROP TRIGGER refuse_answer ON host_transactions"))
            conn.execute(sa.text("DROP FUNCTION refuse_answer()"))
    assert answer.response_code is ResponseCode.SYSTEM_MALFUNCTION
    # The hold, the limit and the STAN claim went with the answer.
    assert (balances(bank_engine, "10000001"), usage(bank_engine, "10000001")) == before
    with bank_engine.connect() as conn:
        claimed = conn.scalar(
            sa.text("SELECT count(*) FROM host_transactions WHERE stan = :stan"),
            {"stan": request.stan},
        )
    assert claimed == 0
    # The same request, sent again, is served in full.
    assert bank.handle(request).response_code is ResponseCode.APPROVED
    assert balances(bank_engine, "10000001")[1] == before[0][1] - 5000


def test_the_connection_goes_back_to_the_pool_in_ordinary_transaction_mode(
    bank_on_one_connection: tuple[Bank, sa.Engine], bank_requests: BankRequests
) -> None:
    # The bank sends BEGIN itself on a connection in autocommit mode; whoever takes the
    # connection from the pool next must get psycopg's own transactions again.
    bank, engine = bank_on_one_connection
    withdrawal = bank_requests.card(RequestKind.WITHDRAWAL, ALICE, amount=2000)
    assert bank.handle(withdrawal).response_code is ResponseCode.APPROVED
    with engine.connect() as conn:
        assert conn.connection.driver_connection.autocommit is False
        conn.exec_driver_sql("CREATE TEMPORARY TABLE undone (id int)")
        conn.rollback()
        gone = conn.exec_driver_sql("SELECT to_regclass('pg_temp.undone')").scalar_one()
    assert gone is None


def test_a_completion_and_a_reversal_take_few_round_trips(
    bank_on_one_connection: tuple[Bank, sa.Engine], bank_requests: BankRequests
) -> None:
    bank, engine = bank_on_one_connection
    bank.handle(bank_requests.card(RequestKind.BALANCE, ALICE))  # warm, as above
    before = balances(engine, "10000001")
    completed = bank_requests.card(RequestKind.WITHDRAWAL, ALICE, amount=5000)
    reversed_ = bank_requests.card(RequestKind.WITHDRAWAL, ALICE, amount=3000)
    for withdrawal in (completed, reversed_):
        assert bank.handle(withdrawal).response_code is ResponseCode.APPROVED
    completion = bank_requests.advice(RequestKind.COMPLETION, completed.stan, 5000, dispensed=4000)
    trips, answer = _round_trips(bank, engine, completion)
    assert answer.response_code is ResponseCode.APPROVED
    # BEGIN with the STAN claim; the savepoint with the original, its hold (locked) and the
    # terminal's settlement account; the limit given back with the entry and its two lines;
    # the hold saved with the balances read; the release with the answer and COMMIT.
    assert trips == 5
    reversal = bank_requests.advice(RequestKind.REVERSAL, reversed_.stan, 3000, dispensed=0)
    trips, answer = _round_trips(bank, engine, reversal)
    assert answer.response_code is ResponseCode.APPROVED
    # BEGIN with the claim; the original with its hold; the limit and funds given back and
    # the hold saved, with the balances read; the answer with COMMIT.
    assert trips == 4
    # 40.00 of the first went out; the rest of its hold and all of the second came back
    assert balances(engine, "10000001") == (before[0] - 4000, before[1] - 4000)
