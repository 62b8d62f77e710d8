"""The authorisation service on a real, seeded PostgreSQL bank: PINs, lockout, limits, holds,
completions, reversals, transfers, mini-statements, PIN change and idempotency."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import pytest
import sqlalchemy as sa

from config.settings import Settings
from host.database import host_engine
from host.messages import HostRequest, RequestKind, ResponseCode
from host.service import Bank
from tests.integration.conftest import (
    ALICE,
    BOB,
    CHARLIE,
    BankClock,
    BankRequests,
    CardData,
    balances,
    ledger_problems,
    usage,
)

K = RequestKind
R = ResponseCode


def test_sign_on_and_echo_need_a_known_terminal(
    bank: Bank, bank_requests: BankRequests, bank_engine: sa.Engine
) -> None:
    assert bank.handle(bank_requests.network(K.SIGN_ON)).response_code is R.APPROVED
    assert bank.handle(bank_requests.network(K.ECHO)).response_code is R.APPROVED
    with bank_engine.connect() as conn:
        signed_on = conn.scalar(
            sa.text("SELECT last_sign_on_at FROM terminals WHERE terminal_id = 'ATM00001'")
        )
    assert signed_on == bank_requests.clock()
    stranger = BankRequests(bank_requests.clock, terminal_id="ATM00099")
    answer = bank.handle(stranger.network(K.SIGN_ON))
    assert answer.response_code is R.SECURITY_VIOLATION


@pytest.mark.parametrize("pin_format", [0, 4])
def test_balance_with_right_pin_and_refusal_with_wrong_pin(
    bank: Bank, bank_requests: BankRequests, pin_format: int
) -> None:
    answer = bank.handle(bank_requests.card(K.BALANCE, ALICE, pin_format=pin_format))
    assert answer.response_code is R.APPROVED
    assert (answer.ledger_balance, answer.available_balance) == (250000, 250000)
    savings = bank.handle(
        bank_requests.card(K.BALANCE, ALICE, pin_format=pin_format, from_account="savings")
    )
    assert savings.ledger_balance == 1000000
    by_number = bank.handle(
        bank_requests.card(K.BALANCE, CHARLIE, pin_format=pin_format, from_account="10000005")
    )
    assert by_number.ledger_balance == 500000
    wrong = bank.handle(bank_requests.card(K.BALANCE, ALICE, pin="1243", pin_format=pin_format))
    assert wrong.response_code is R.INCORRECT_PIN
    assert wrong.ledger_balance is None


def test_card_refusals(bank: Bank, bank_requests: BankRequests) -> None:
    unknown = CardData("4000000000000002", "1234", "3112")
    assert bank.handle(bank_requests.card(K.BALANCE, unknown)).response_code is R.INVALID_CARD
    assert (
        bank.handle(bank_requests.card(K.BALANCE, BOB, expiry="2212")).response_code
        is R.EXPIRED_CARD
    )
    assert (
        bank.handle(bank_requests.card(K.BALANCE, BOB, expiry="3312")).response_code
        is R.INVALID_CARD
    )
    assert (
        bank.handle(bank_requests.card(K.BALANCE, BOB, from_account="savings")).response_code
        is R.NO_SUCH_ACCOUNT
    )
    assert (
        bank.handle(bank_requests.card(K.BALANCE, BOB, from_account="10000001")).response_code
        is R.NO_SUCH_ACCOUNT
    )


def test_card_expires_with_its_month(
    bank: Bank, bank_requests: BankRequests, bank_clock: BankClock
) -> None:
    bank_clock.set(dt.datetime(2028, 6, 30, 23, 59, tzinfo=dt.UTC))
    assert bank.handle(bank_requests.card(K.BALANCE, CHARLIE)).response_code is R.APPROVED
    bank_clock.set(dt.datetime(2028, 7, 1, 0, 1, tzinfo=dt.UTC))
    assert bank.handle(bank_requests.card(K.BALANCE, CHARLIE)).response_code is R.EXPIRED_CARD


def _failed_attempts(engine: sa.Engine) -> tuple[int, str]:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT failed_pin_attempts, status FROM cards WHERE masked_pan LIKE '476173%'")
        ).one()
    return int(row[0]), str(row[1])


def test_three_wrong_pins_lock_the_card_until_the_lockout_ends(
    bank: Bank,
    bank_requests: BankRequests,
    bank_clock: BankClock,
    bank_engine: sa.Engine,
    bank_settings: Settings,
) -> None:
    codes = [
        bank.handle(bank_requests.card(K.BALANCE, ALICE, pin="9999", pin_format=f)).response_code
        for f in (0, 4, 0)
    ]
    assert codes == [R.INCORRECT_PIN, R.INCORRECT_PIN, R.PIN_TRIES_EXCEEDED]
    assert _failed_attempts(bank_engine) == (3, "locked")
    # While locked, even the right PIN is refused, and no further attempt is counted.
    assert bank.handle(bank_requests.card(K.BALANCE, ALICE)).response_code is R.PIN_TRIES_EXCEEDED
    bank_clock.advance(bank_settings.lockout_duration_seconds - 1)
    assert bank.handle(bank_requests.card(K.BALANCE, ALICE)).response_code is R.PIN_TRIES_EXCEEDED
    assert _failed_attempts(bank_engine) == (3, "locked")
    bank_clock.advance(2)
    assert bank.handle(bank_requests.card(K.BALANCE, ALICE)).response_code is R.APPROVED
    assert _failed_attempts(bank_engine) == (0, "active")


def test_after_lockout_a_wrong_pin_starts_a_new_count(
    bank: Bank, bank_requests: BankRequests, bank_clock: BankClock, bank_engine: sa.Engine
) -> None:
    for _ in range(3):
        bank.handle(bank_requests.card(K.BALANCE, ALICE, pin="0000"))
    bank_clock.advance(1801)
    answer = bank.handle(bank_requests.card(K.BALANCE, ALICE, pin="0000"))
    assert answer.response_code is R.INCORRECT_PIN
    assert _failed_attempts(bank_engine) == (1, "locked")
    assert bank.handle(bank_requests.card(K.BALANCE, ALICE)).response_code is R.APPROVED


def test_a_right_pin_resets_the_count(
    bank: Bank, bank_requests: BankRequests, bank_engine: sa.Engine
) -> None:
    for _ in range(2):
        bank.handle(bank_requests.card(K.BALANCE, ALICE, pin="0000"))
    assert bank.handle(bank_requests.card(K.BALANCE, ALICE)).response_code is R.APPROVED
    assert _failed_attempts(bank_engine) == (0, "active")
    for _ in range(2):
        bank.handle(bank_requests.card(K.BALANCE, ALICE, pin="0000"))
    assert bank.handle(bank_requests.card(K.BALANCE, ALICE)).response_code is R.APPROVED


def test_garbage_pin_block_counts_as_wrong_pin(bank: Bank, bank_requests: BankRequests) -> None:
    request = dataclasses.replace(bank_requests.card(K.BALANCE, ALICE), pin_block=bytes(8))
    assert bank.handle(request).response_code is R.INCORRECT_PIN


def test_withdrawal_holds_then_completion_posts(
    bank: Bank, bank_requests: BankRequests, bank_engine: sa.Engine
) -> None:
    request = bank_requests.card(K.WITHDRAWAL, ALICE, amount=5000)
    answer = bank.handle(request)
    assert answer.response_code is R.APPROVED
    assert (answer.ledger_balance, answer.available_balance) == (250000, 245000)
    assert len(answer.retrieval_reference) == 12 and answer.approval_code
    assert balances(bank_engine, "10000001") == (250000, 245000)
    assert usage(bank_engine, "10000001") == 5000
    done = bank.handle(bank_requests.advice(K.COMPLETION, request.stan, 5000, dispensed=5000))
    assert done.response_code is R.APPROVED
    assert balances(bank_engine, "10000001") == (245000, 245000)
    again = bank.handle(bank_requests.advice(K.COMPLETION, request.stan, 5000, dispensed=5000))
    assert again.response_code is R.APPROVED
    assert balances(bank_engine, "10000001") == (245000, 245000)
    with bank_engine.connect() as conn:
        settlement = conn.scalar(
            sa.text("SELECT ledger_balance FROM accounts WHERE number = 'ATM-CASH-ATM00001'")
        )
    assert settlement == 5000
    assert ledger_problems(bank_engine) == []


def test_completion_of_less_releases_the_rest(
    bank: Bank, bank_requests: BankRequests, bank_engine: sa.Engine
) -> None:
    request = bank_requests.card(K.WITHDRAWAL, ALICE, amount=10000)
    bank.handle(request)
    done = bank.handle(bank_requests.advice(K.COMPLETION, request.stan, 6000, dispensed=6000))
    assert done.response_code is R.APPROVED
    assert balances(bank_engine, "10000001") == (244000, 244000)
    assert usage(bank_engine, "10000001") == 6000
    assert ledger_problems(bank_engine) == []


def test_insufficient_funds_and_daily_limit(
    bank: Bank, bank_requests: BankRequests, bank_engine: sa.Engine, bank_clock: BankClock
) -> None:
    bank_clock.set(dt.datetime(2026, 11, 28, 22, 0, tzinfo=dt.UTC))
    low = bank.handle(bank_requests.card(K.WITHDRAWAL, CHARLIE, amount=15000))
    assert low.response_code is R.INSUFFICIENT_FUNDS
    assert usage(bank_engine, "10000004") == 0  # a refused withdrawal does not count
    assert bank.handle(bank_requests.card(K.WITHDRAWAL, ALICE, amount=30000)).approved
    over = bank.handle(bank_requests.card(K.WITHDRAWAL, ALICE, amount=25000))
    assert over.response_code is R.EXCEEDS_WITHDRAWAL_LIMIT
    assert bank.handle(bank_requests.card(K.WITHDRAWAL, ALICE, amount=20000)).approved
    assert usage(bank_engine, "10000001") == 50000
    # The limit is per account: savings has its own.
    assert bank.handle(
        bank_requests.card(K.WITHDRAWAL, ALICE, amount=20000, from_account="savings")
    ).approved
    bank_clock.set(dt.datetime(2026, 11, 29, 0, 0, 1, tzinfo=dt.UTC))
    assert bank.handle(bank_requests.card(K.WITHDRAWAL, ALICE, amount=25000)).approved
    assert bank.handle(bank_requests.card(K.WITHDRAWAL, ALICE, amount=60000)).response_code is (
        R.EXCEEDS_WITHDRAWAL_LIMIT
    )
    assert balances(bank_engine, "10000001") == (250000, 175000)
    assert ledger_problems(bank_engine) == []


def test_repeated_request_gets_the_first_answer_and_moves_no_money(
    bank: Bank, bank_requests: BankRequests, bank_engine: sa.Engine
) -> None:
    request = bank_requests.card(K.WITHDRAWAL, ALICE, amount=4000)
    first = bank.handle(request)
    second = bank.handle(request)
    assert first == second
    assert balances(bank_engine, "10000001") == (250000, 246000)
    # The same STAN with other content is refused, not confused with the first.
    other = dataclasses.replace(request, amount=9000)
    assert bank.handle(other).response_code is R.DUPLICATE_TRANSMISSION
    # A declined request replays its decline, and its wrong PIN is counted once.
    wrong = bank_requests.card(K.BALANCE, BOB, pin="0000")
    assert [bank.handle(wrong).response_code for _ in range(4)] == [R.INCORRECT_PIN] * 4
    assert bank.handle(bank_requests.card(K.BALANCE, BOB)).approved
    # The same STAN on another terminal is another request.
    atm2 = BankRequests(bank_requests.clock, terminal_id="ATM00002")
    assert bank.handle(atm2.card(K.WITHDRAWAL, ALICE, amount=4000, stan=request.stan)).approved
    assert balances(bank_engine, "10000001") == (250000, 242000)


def test_full_reversal_releases_the_hold_and_repeats_are_no_ops(
    bank: Bank, bank_requests: BankRequests, bank_engine: sa.Engine
) -> None:
    request = bank_requests.card(K.WITHDRAWAL, ALICE, amount=8000)
    bank.handle(request)
    reversal = bank_requests.advice(K.REVERSAL, request.stan, 8000)
    first = bank.handle(reversal)
    assert first.response_code is R.APPROVED
    assert balances(bank_engine, "10000001") == (250000, 250000)
    assert usage(bank_engine, "10000001") == 0
    assert bank.handle(reversal) == first  # the same reversal resent
    resent = bank.handle(bank_requests.advice(K.REVERSAL, request.stan, 8000))  # new STAN
    assert resent.response_code is R.APPROVED
    assert balances(bank_engine, "10000001") == (250000, 250000)
    # A completion after the reversal is refused and moves nothing.
    late = bank.handle(bank_requests.advice(K.COMPLETION, request.stan, 8000, dispensed=8000))
    assert late.response_code is R.INVALID_TRANSACTION
    assert balances(bank_engine, "10000001") == (250000, 250000)
    assert ledger_problems(bank_engine) == []


def test_partial_reversal_posts_what_was_dispensed(
    bank: Bank, bank_requests: BankRequests, bank_engine: sa.Engine
) -> None:
    request = bank_requests.card(K.WITHDRAWAL, ALICE, amount=5000)
    bank.handle(request)
    answer = bank.handle(bank_requests.advice(K.REVERSAL, request.stan, 5000, dispensed=2000))
    assert answer.response_code is R.APPROVED
    assert balances(bank_engine, "10000001") == (248000, 248000)
    assert usage(bank_engine, "10000001") == 2000
    assert ledger_problems(bank_engine) == []


def test_reversal_after_completion_refunds_what_was_not_dispensed(
    bank: Bank, bank_requests: BankRequests, bank_engine: sa.Engine
) -> None:
    request = bank_requests.card(K.WITHDRAWAL, ALICE, amount=5000)
    bank.handle(request)
    bank.handle(bank_requests.advice(K.COMPLETION, request.stan, 5000, dispensed=5000))
    answer = bank.handle(bank_requests.advice(K.REVERSAL, request.stan, 5000, dispensed=1000))
    assert answer.response_code is R.APPROVED
    assert balances(bank_engine, "10000001") == (249000, 249000)
    again = bank.handle(bank_requests.advice(K.REVERSAL, request.stan, 5000, dispensed=1000))
    assert again.response_code is R.APPROVED
    assert balances(bank_engine, "10000001") == (249000, 249000)
    assert ledger_problems(bank_engine) == []


def test_reversal_of_unknown_stan_blocks_the_late_original(
    bank: Bank, bank_requests: BankRequests, bank_engine: sa.Engine
) -> None:
    late_stan = "000500"
    reversal = bank_requests.advice(K.REVERSAL, late_stan, 7000)
    assert bank.handle(reversal).response_code is R.ORIGINAL_NOT_FOUND
    original = bank_requests.card(K.WITHDRAWAL, ALICE, amount=7000, stan=late_stan)
    refused = bank.handle(original)
    assert refused.response_code is R.INVALID_TRANSACTION
    assert balances(bank_engine, "10000001") == (250000, 250000)
    again = bank.handle(bank_requests.advice(K.REVERSAL, late_stan, 7000))
    assert again.response_code is R.ORIGINAL_NOT_FOUND
    assert bank.handle(original).response_code is R.INVALID_TRANSACTION


def test_completion_of_unknown_or_declined_original_is_not_found(
    bank: Bank, bank_requests: BankRequests, bank_engine: sa.Engine
) -> None:
    answer = bank.handle(bank_requests.advice(K.COMPLETION, "000777", 5000, dispensed=5000))
    assert answer.response_code is R.ORIGINAL_NOT_FOUND
    declined = bank_requests.card(K.WITHDRAWAL, CHARLIE, amount=20000)
    assert bank.handle(declined).response_code is R.INSUFFICIENT_FUNDS
    answer = bank.handle(bank_requests.advice(K.COMPLETION, declined.stan, 20000))
    assert answer.response_code is R.ORIGINAL_NOT_FOUND
    assert bank.handle(bank_requests.advice(K.REVERSAL, declined.stan, 20000)).approved
    assert balances(bank_engine, "10000004") == (12000, 12000)


def test_transfer_between_own_accounts_and_its_limit(
    bank: Bank, bank_requests: BankRequests, bank_engine: sa.Engine, bank_settings: Settings
) -> None:
    answer = bank.handle(
        bank_requests.card(
            K.TRANSFER, ALICE, amount=100000, from_account="savings", to_account="checking"
        )
    )
    assert answer.response_code is R.APPROVED
    assert answer.ledger_balance == 900000
    assert balances(bank_engine, "10000001") == (350000, 350000)
    limit = bank_settings.daily_transfer_limit
    over = bank.handle(
        bank_requests.card(
            K.TRANSFER, ALICE, amount=limit - 99999, from_account="savings", to_account="checking"
        )
    )
    assert over.response_code is R.EXCEEDS_WITHDRAWAL_LIMIT
    poor = bank.handle(
        bank_requests.card(
            K.TRANSFER, CHARLIE, amount=12001, from_account="checking", to_account="savings"
        )
    )
    assert poor.response_code is R.INSUFFICIENT_FUNDS
    assert usage(bank_engine, "10000004", "transfer") == 0
    same = bank.handle(
        bank_requests.card(
            K.TRANSFER, ALICE, amount=1, from_account="10000001", to_account="checking"
        )
    )
    assert same.response_code is R.INVALID_TRANSACTION
    foreign = bank.handle(
        bank_requests.card(
            K.TRANSFER, BOB, amount=1, from_account="checking", to_account="10000001"
        )
    )
    assert foreign.response_code is R.NO_SUCH_ACCOUNT
    assert ledger_problems(bank_engine) == []


def test_mini_statement_shows_the_last_ten_lines(bank: Bank, bank_requests: BankRequests) -> None:
    for cents in range(1, 13):
        assert bank.handle(
            bank_requests.card(
                K.TRANSFER, CHARLIE, amount=cents, from_account="savings", to_account="checking"
            )
        ).approved
    answer = bank.handle(bank_requests.card(K.MINI_STATEMENT, CHARLIE, from_account="checking"))
    assert answer.response_code is R.APPROVED
    assert [line.amount for line in answer.statement] == list(range(3, 13))
    assert answer.statement[-1].balance_after == 12000 + sum(range(1, 13)) == answer.ledger_balance
    assert all(line.description == "Transfer from 10000005" for line in answer.statement)
    first = bank.handle(bank_requests.card(K.MINI_STATEMENT, BOB))
    assert [(line.description, line.amount) for line in first.statement] == [
        ("Opening balance", 75000)
    ]


@pytest.mark.parametrize("pin_format", [0, 4])
def test_pin_change(bank: Bank, bank_requests: BankRequests, pin_format: int) -> None:
    change = bank_requests.card(K.PIN_CHANGE, BOB, pin_format=pin_format, new_pin="975310")
    assert bank.handle(change).response_code is R.APPROVED
    old = bank.handle(bank_requests.card(K.BALANCE, BOB, pin_format=pin_format))
    assert old.response_code is R.INCORRECT_PIN
    new = bank.handle(bank_requests.card(K.BALANCE, BOB, pin="975310", pin_format=pin_format))
    assert new.response_code is R.APPROVED
    bad = dataclasses.replace(
        bank_requests.card(K.PIN_CHANGE, BOB, pin="975310", pin_format=pin_format),
        new_pin_block=bytes(8 if pin_format == 0 else 16),
    )
    assert bank.handle(bad).response_code is R.INVALID_TRANSACTION
    assert bank.handle(bank_requests.card(K.BALANCE, BOB, pin="975310")).approved


def test_bad_input_is_answered_not_raised(bank: Bank, bank_requests: BankRequests) -> None:
    good = bank_requests.card(K.WITHDRAWAL, ALICE, amount=100)
    cases: list[tuple[HostRequest, ResponseCode]] = [
        (dataclasses.replace(good, stan="12"), R.FORMAT_ERROR),
        (dataclasses.replace(good, pin_block=None), R.FORMAT_ERROR),
        (dataclasses.replace(good, pin_block_format=3), R.FORMAT_ERROR),
        (dataclasses.replace(good, amount=-5), R.FORMAT_ERROR),
        (dataclasses.replace(good, pan="abc"), R.INVALID_CARD),
        (dataclasses.replace(good, pan=None), R.INVALID_CARD),
        (dataclasses.replace(good, amount=0, stan="000901"), R.INVALID_AMOUNT),
        (dataclasses.replace(good, currency="840", stan="000902"), R.TRANSACTION_NOT_PERMITTED),
        (dataclasses.replace(good, pin_block=b"\x00" * 3, stan="000903"), R.INCORRECT_PIN),
        (dataclasses.replace(good, terminal_id=""), R.FORMAT_ERROR),
        (bank_requests.advice(K.REVERSAL, "xx", 5), R.FORMAT_ERROR),
        (
            dataclasses.replace(good, transmitted_at=dt.datetime(2026, 1, 1), stan="000904"),
            R.APPROVED,
        ),
    ]
    for number, (request, code) in enumerate(cases):
        if request.stan.isdigit() and len(request.stan) == 6:
            request = dataclasses.replace(request, stan=f"{900 + number:06d}")
        assert bank.handle(request).response_code is code, request


def test_a_broken_clock_answers_96(bank_engine: sa.Engine, bank_settings: Settings) -> None:
    naive = Bank(bank_engine, bank_settings, clock=lambda: dt.datetime(2026, 1, 1))
    request = BankRequests(lambda: dt.datetime.now(dt.UTC)).network(K.ECHO)
    assert naive.handle(request).response_code is R.SYSTEM_MALFUNCTION


def test_nothing_secret_is_logged_or_stored(
    bank: Bank,
    bank_requests: BankRequests,
    bank_engine: sa.Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    requests = [
        bank_requests.card(K.WITHDRAWAL, ALICE, amount=1000),
        bank_requests.card(K.BALANCE, ALICE, pin="0000"),
        bank_requests.card(K.BALANCE, ALICE, pin="0000", pin_format=4),
        bank_requests.card(K.BALANCE, ALICE, pin="0000"),
        bank_requests.card(K.PIN_CHANGE, BOB, new_pin="5555"),
    ]
    for request in requests:
        bank.handle(request)
    assert "card 476173******0010 locked" in caplog.text
    secrets = [ALICE.pan, BOB.pan] + [r.pin_block.hex() for r in requests if r.pin_block]
    with bank_engine.connect() as conn:
        dump = "\n".join(
            " ".join(v.hex() if isinstance(v, bytes) else str(v) for v in row)
            for table in (
                "cards",
                "host_transactions",
                "journal_lines",
                "journal_entries",
                "terminals",
            )
            for row in conn.execute(sa.text(f"SELECT * FROM {table}"))
        )
    for secret in secrets:
        assert secret not in caplog.text
        assert secret.lower() not in dump.lower()
    assert "2b7e151628aed2a6abf7158809cf4f3c" not in dump.lower()


def test_a_connection_the_database_closed_costs_no_request(
    bank_settings: Settings, bank_engine: sa.Engine, bank_requests: BankRequests
) -> None:
    # The host's engine pings no connection before use: a request that meets a dead one (the
    # database restarted) must run again on a new one, not be answered 96.
    assert bank_settings.database_url is not None
    engine = host_engine(bank_settings.database_url, 1)
    try:
        bank = Bank(engine, bank_settings, clock=bank_requests.clock)
        assert bank.handle(bank_requests.card(K.BALANCE, ALICE)).response_code is R.APPROVED
        with bank_engine.connect() as admin:
            ended = admin.scalar(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        assert ended
        answer = bank.handle(bank_requests.card(K.WITHDRAWAL, ALICE, amount=2000))
        assert answer.response_code is R.APPROVED
        assert answer.available_balance == 248000
    finally:
        engine.dispose()


def test_a_connection_lost_inside_a_request_is_retried_on_a_new_one_and_holds_once(
    bank_settings: Settings, bank_engine: sa.Engine, bank_requests: BankRequests
) -> None:
    # The request's statements go straight to the driver: a pooled connection that died before
    # the request (killed from outside, as a restart would) fails its first statement, and must
    # be dropped from the pool and the whole request run again on a new one, holding once.
    assert bank_settings.database_url is not None
    engine = host_engine(bank_settings.database_url, 1)
    killed: list[int] = []

    def kill_own_backend(conn: sa.Connection) -> None:
        if killed:
            return
        pid = conn.connection.driver_connection.info.backend_pid
        with bank_engine.connect() as admin:
            admin.execute(sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
        killed.append(pid)

    try:
        bank = Bank(engine, bank_settings, clock=bank_requests.clock)
        sa.event.listen(engine, "begin", kill_own_backend)
        answer = bank.handle(bank_requests.card(K.WITHDRAWAL, ALICE, amount=2000))
        assert killed and killed[0], "the backend was not killed"
        assert answer.response_code is R.APPROVED
        assert answer.available_balance == 248000
        with bank_engine.connect() as conn:
            holds = conn.scalar(sa.text("SELECT count(*) FROM holds WHERE status = 'held'"))
        assert holds == 1
    finally:
        engine.dispose()
