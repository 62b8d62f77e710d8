"""The bank's data as the HTTP routes show it: customers, accounts and their ledger lines,
masked cards and their status changes, terminals by key check value, host records and holds.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from config.settings import Settings
from host import crypto_keys
from host.api.key_check_values import terminal_check_values
from host.api.schemas import (
    AccountOut,
    AccountPage,
    CardAccountOut,
    CardOut,
    CardPage,
    CustomerOut,
    CustomerPage,
    HostTransactionOut,
    HostTransactionPage,
    LedgerLineOut,
    LedgerPage,
    TerminalOut,
)
from host.models import (
    Account,
    Card,
    CardAccount,
    Customer,
    HostTransaction,
    JournalEntry,
    JournalLine,
    Terminal,
)

log = logging.getLogger(__name__)

AnySelect = sa.Select[*tuple[Any, ...]]


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def _count(conn: sa.Connection, query: AnySelect) -> int:
    return int(conn.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0)


# ----- customers ------------------------------------------------------------------------------


def _customers(conn: sa.Connection, ids: list[int]) -> list[CustomerOut]:
    if not ids:
        return []
    rows = conn.execute(
        sa.select(Customer.id, Customer.name, Customer.created_at)
        .where(Customer.id.in_(ids))
        .order_by(Customer.id)
    ).all()
    accounts: dict[int, list[str]] = {}
    for customer_id, number in conn.execute(
        sa.select(Account.customer_id, Account.number)
        .where(Account.customer_id.in_(ids))
        .order_by(Account.number)
    ):
        if customer_id is not None:
            accounts.setdefault(customer_id, []).append(number)
    cards: dict[int, list[int]] = {}
    for customer_id, card_id in conn.execute(
        sa.select(Card.customer_id, Card.id).where(Card.customer_id.in_(ids)).order_by(Card.id)
    ):
        cards.setdefault(customer_id, []).append(card_id)
    return [
        CustomerOut(
            id=row.id,
            name=row.name,
            created_at=row.created_at,
            accounts=accounts.get(row.id, []),
            cards=cards.get(row.id, []),
        )
        for row in rows
    ]


def list_customers(engine: sa.Engine, limit: int, offset: int) -> CustomerPage:
    with engine.connect() as conn:
        query = sa.select(Customer.id)
        total = _count(conn, query)
        ids = list(conn.scalars(query.order_by(Customer.id).limit(limit).offset(offset)))
        return CustomerPage(items=_customers(conn, ids), total=total, limit=limit, offset=offset)


def get_customer(engine: sa.Engine, customer_id: int) -> CustomerOut | None:
    with engine.connect() as conn:
        found = _customers(conn, [customer_id])
    return found[0] if found else None


# ----- accounts -------------------------------------------------------------------------------


def _account_query() -> AnySelect:
    return sa.select(
        Account.number,
        Account.kind,
        Account.customer_id,
        Customer.name.label("customer_name"),
        Account.currency,
        Account.ledger_balance,
        Account.available_balance,
        Account.created_at,
    ).outerjoin(Customer, Customer.id == Account.customer_id)


def _account(row: sa.Row[Any]) -> AccountOut:
    values = dict(row._mapping)
    ledger, available = int(values["ledger_balance"]), int(values["available_balance"])
    return AccountOut(**values, held=ledger - available)


def list_accounts(
    engine: sa.Engine, *, customer_id: int | None, kind: str | None, limit: int, offset: int
) -> AccountPage:
    query = _account_query()
    if customer_id is not None:
        query = query.where(Account.customer_id == customer_id)
    if kind is not None:
        query = query.where(Account.kind == kind)
    with engine.connect() as conn:
        total = _count(conn, query)
        rows = conn.execute(query.order_by(Account.number).limit(limit).offset(offset)).all()
    return AccountPage(
        items=[_account(row) for row in rows], total=total, limit=limit, offset=offset
    )


def get_account(engine: sa.Engine, number: str) -> AccountOut | None:
    with engine.connect() as conn:
        row = conn.execute(_account_query().where(Account.number == number)).one_or_none()
    return None if row is None else _account(row)


def ledger_lines(
    engine: sa.Engine,
    number: str,
    *,
    start: dt.date | None,
    end: dt.date | None,
    limit: int,
    offset: int,
) -> LedgerPage | None:
    """An account's ledger lines, newest first, posted from `start` to `end` (UTC days,
    inclusive); None for an unknown account."""
    with engine.connect() as conn:
        account_id = conn.scalar(sa.select(Account.id).where(Account.number == number))
        if account_id is None:
            return None
        query = (
            sa.select(
                JournalLine.id.label("line_id"),
                JournalLine.entry_id,
                JournalEntry.posted_at,
                JournalEntry.kind,
                JournalEntry.description,
                JournalLine.memo,
                JournalLine.amount,
                JournalLine.balance_after,
            )
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .where(JournalLine.account_id == account_id)
        )
        if start is not None:
            query = query.where(JournalEntry.posted_at >= _day_start(start))
        if end is not None:
            query = query.where(JournalEntry.posted_at < _day_start(end + dt.timedelta(days=1)))
        total = _count(conn, query)
        rows = conn.execute(query.order_by(JournalLine.id.desc()).limit(limit).offset(offset))
        items = [LedgerLineOut(**row._mapping) for row in rows]
    return LedgerPage(account=number, items=items, total=total, limit=limit, offset=offset)


# ----- cards ----------------------------------------------------------------------------------


def _cards(conn: sa.Connection, query: AnySelect) -> list[CardOut]:
    cards = list(conn.execute(query).all())
    ids = [row.id for row in cards]
    links: dict[int, list[CardAccountOut]] = {}
    if ids:
        for card_id, number, kind, default in conn.execute(
            sa.select(
                CardAccount.card_id,
                Account.number,
                CardAccount.account_type,
                CardAccount.is_default,
            )
            .join(Account, Account.id == CardAccount.account_id)
            .where(CardAccount.card_id.in_(ids))
            .order_by(CardAccount.card_id, Account.number)
        ):
            links.setdefault(card_id, []).append(
                CardAccountOut(number=number, type=kind, default=default)
            )
    return [
        CardOut(
            id=row.id,
            masked_pan=row.masked_pan,
            customer_id=row.customer_id,
            expiry=row.expiry,
            status=row.status,
            failed_pin_attempts=row.failed_pin_attempts,
            locked_until=row.locked_until,
            accounts=links.get(row.id, []),
        )
        for row in cards
    ]


def _card_query() -> AnySelect:
    # Never the PAN hash or the PIN hash: only what an operator may see.
    return sa.select(
        Card.id,
        Card.masked_pan,
        Card.customer_id,
        Card.expiry,
        Card.status,
        Card.failed_pin_attempts,
        Card.locked_until,
    )


def list_cards(
    engine: sa.Engine, *, customer_id: int | None, status: str | None, limit: int, offset: int
) -> CardPage:
    query = _card_query()
    if customer_id is not None:
        query = query.where(Card.customer_id == customer_id)
    if status is not None:
        query = query.where(Card.status == status)
    with engine.connect() as conn:
        total = _count(conn, query)
        items = _cards(conn, query.order_by(Card.id).limit(limit).offset(offset))
    return CardPage(items=items, total=total, limit=limit, offset=offset)


def get_card(engine: sa.Engine, card_id: int) -> CardOut | None:
    with engine.connect() as conn:
        found = _cards(conn, _card_query().where(Card.id == card_id))
    return found[0] if found else None


CARD_ACTIONS = ("block", "unblock", "reset-pin-tries")


def change_card(engine: sa.Engine, card_id: int, action: str, operator: str) -> CardOut | None:
    """Block, unblock, or reset the failed PIN tries (lifting a PIN lockout) of a card."""
    if action == "block":
        values: dict[str, object] = {"status": "blocked"}
    elif action == "unblock":
        # A card blocked or captured goes back into use; a PIN lockout stays until reset.
        values = {
            "status": sa.case(
                (Card.status.in_(("blocked", "captured")), "active"), else_=Card.status
            )
        }
    elif action == "reset-pin-tries":
        values = {
            "failed_pin_attempts": 0,
            "locked_until": None,
            "status": sa.case((Card.status == "locked", "active"), else_=Card.status),
        }
    else:
        raise ValueError(f"card action {action!r}: expected one of {', '.join(CARD_ACTIONS)}")
    with engine.begin() as conn:
        masked = conn.scalar(
            sa.update(Card).where(Card.id == card_id).values(**values).returning(Card.masked_pan)
        )
    if masked is None:
        return None
    log.info("operator %s: card %d (%s) %s", operator, card_id, masked, action)
    return get_card(engine, card_id)


# ----- terminals ------------------------------------------------------------------------------


def _terminal(settings: Settings, terminal: Terminal, settlement: str) -> TerminalOut:
    try:
        values = terminal_check_values(crypto_keys.open_terminal_keys(settings, terminal))
        readable = True
    except crypto_keys.KeyStoreError:
        values, readable = {}, False
    return TerminalOut(
        terminal_id=terminal.terminal_id,
        settlement_account=settlement,
        key_check_values=values,
        keys_readable=readable,
        dukpt_counter=terminal.dukpt_counter,
        last_sign_on_at=terminal.last_sign_on_at,
        created_at=terminal.created_at,
    )


def list_terminals(
    engine: sa.Engine, settings: Settings, terminal_id: str | None = None
) -> list[TerminalOut]:
    query = (
        sa.select(Terminal, Account.number)
        .join(Account, Account.id == Terminal.settlement_account_id)
        .order_by(Terminal.terminal_id)
    )
    if terminal_id is not None:
        query = query.where(Terminal.terminal_id == terminal_id)
    with sa.orm.Session(engine) as session:
        return [
            _terminal(settings, terminal, number) for terminal, number in session.execute(query)
        ]


# ----- host records ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HostRecordFilter:
    terminal_id: str | None = None
    kind: str | None = None
    response_code: str | None = None
    stan: str | None = None
    account: str | None = None
    card_id: int | None = None
    since: dt.datetime | None = None  # received at or after
    until: dt.datetime | None = None  # received before


def host_transactions(
    engine: sa.Engine, where: HostRecordFilter, limit: int, offset: int
) -> HostTransactionPage:
    """The host's records of the requests it answered, newest first."""
    query = (
        sa.select(
            HostTransaction.id,
            HostTransaction.terminal_id,
            HostTransaction.stan,
            HostTransaction.business_date,
            HostTransaction.kind,
            HostTransaction.transmitted_at,
            HostTransaction.received_at,
            HostTransaction.amount,
            Card.masked_pan,
            Account.number.label("account"),
            HostTransaction.original_id,
            HostTransaction.response_code,
            HostTransaction.retrieval_reference,
        )
        .outerjoin(Card, Card.id == HostTransaction.card_id)
        .outerjoin(Account, Account.id == HostTransaction.account_id)
    )
    conditions = {
        HostTransaction.terminal_id: where.terminal_id,
        HostTransaction.kind: where.kind,
        HostTransaction.response_code: where.response_code,
        HostTransaction.stan: where.stan,
        Account.number: where.account,
        HostTransaction.card_id: where.card_id,
    }
    for column, value in conditions.items():
        if value is not None:
            query = query.where(column == value)
    if where.since is not None:
        query = query.where(HostTransaction.received_at >= where.since)
    if where.until is not None:
        query = query.where(HostTransaction.received_at < where.until)
    with engine.connect() as conn:
        total = _count(conn, query)
        rows = conn.execute(query.order_by(HostTransaction.id.desc()).limit(limit).offset(offset))
        items = [HostTransactionOut(**row._mapping) for row in rows]
    return HostTransactionPage(items=items, total=total, limit=limit, offset=offset)
