"""Putting the bank in a given state for a test bench (scenarios): balances through the ledger,
card states by card number, unknown accounts and cards named."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from config.settings import Settings
from host import bank_admin
from host.models import Card
from tests.integration.conftest import ALICE, SEEDED_BALANCES, ledger_problems

WHEN = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)


def test_a_balance_is_set_through_the_ledger(bank_engine: sa.Engine) -> None:
    with Session(bank_engine) as session, session.begin():
        bank_admin.set_ledger_balance(session, "10000001", 1234, WHEN)
    assert bank_admin.balances(bank_engine, "10000001") == (1234, 1234)
    assert ledger_problems(bank_engine) == []
    # Opening entries are not what a test expects as movements.
    assert bank_admin.posted_amounts(bank_engine, "10000001") == []
    assert bank_admin.balances(bank_engine, "10000003") == (SEEDED_BALANCES["10000003"],) * 2


def test_a_card_state_is_set_by_its_number(bank_engine: sa.Engine, bank_settings: Settings) -> None:
    until = WHEN + dt.timedelta(minutes=30)
    with Session(bank_engine) as session, session.begin():
        bank_admin.set_card_state(
            session, bank_settings, ALICE.pan, failed_pin_attempts=3, locked_until=until
        )
    with Session(bank_engine) as session:
        card = session.scalars(sa.select(Card).where(Card.masked_pan == "476173******0010")).one()
        assert (card.failed_pin_attempts, card.locked_until) == (3, until)


def test_unknown_accounts_and_cards_are_named(
    bank_engine: sa.Engine, bank_settings: Settings
) -> None:
    with (
        pytest.raises(bank_admin.UnknownBankObject, match="no account 99999999"),
        Session(bank_engine) as session,
    ):
        bank_admin.set_ledger_balance(session, "99999999", 100, WHEN)
    with (
        pytest.raises(bank_admin.UnknownBankObject, match=r"no card 400000\*+0002"),
        Session(bank_engine) as session,
    ):
        bank_admin.set_card_state(session, bank_settings, "4000000000000002", status="blocked")
    with pytest.raises(bank_admin.UnknownBankObject):
        bank_admin.balances(bank_engine, "99999999")
