"""Bank administration: migrate the schema to head (Alembic), seed the sample bank from
config/bank_seed.yaml (idempotently) and report the open withdrawal holds with their age.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from config.card_numbers import luhn_valid, mask_pan
from config.data_files import DataFile, DataFileError, Key, read_data_file
from config.settings import Settings
from host import crypto_keys, pin_unit
from host.crypto_keys import KeyFormatError, TerminalKeys
from host.database import database_url, make_engine
from host.driver_sql import DriverTransaction
from host.ledger import Posting, post_entry
from host.models import (
    CUSTOMER_ACCOUNT_KINDS,
    Account,
    Card,
    CardAccount,
    Customer,
    Hold,
    HostTransaction,
    JournalEntry,
    JournalLine,
    Terminal,
)

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_MIGRATING = threading.Lock()
SEED_FILE = Path(__file__).resolve().parent.parent / "config" / "bank_seed.yaml"
EQUITY_ACCOUNT = "BANK-EQUITY"
SEED_LOCK = 0x41544D5345454400  # pg advisory lock id: one seeding at a time


class BankAdminError(RuntimeError):
    """The bank database could not be migrated or seeded."""


# ----- migrations -----------------------------------------------------------------------------


def alembic_config(url: str) -> Config:
    """An Alembic configuration for the bank schema on `url` (no alembic.ini needed)."""
    # Alembic is imported when a migration runs: importing it costs every process ~0.1 s, and
    # most (a scenario worker, an ATM, the host) never migrate.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    config.attributes["configure_logging"] = False
    return config


def upgrade_database(settings: Settings) -> None:
    """Bring the bank schema to the newest revision (one migration at a time in a process:
    Alembic keeps the one under way in module globals, so two at once run into each other)."""
    from alembic import command

    url = database_url(settings)
    try:
        with _MIGRATING:
            command.upgrade(alembic_config(url), "head")
    except sa.exc.SQLAlchemyError as err:
        raise BankAdminError(f"cannot migrate the bank database: {err}") from err


# ----- the seed file --------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedAccount:
    number: str
    kind: str
    balance: int


@dataclass(frozen=True)
class SeedCard:
    pan: str
    pin: str
    expiry: str
    accounts: tuple[str, ...]

    def __repr__(self) -> str:  # never print a PIN or a full card number
        return f"SeedCard({mask_pan(self.pan)})"


@dataclass(frozen=True)
class SeedCustomer:
    name: str
    accounts: tuple[SeedAccount, ...]
    cards: tuple[SeedCard, ...]


@dataclass(frozen=True)
class SeedTerminal:
    terminal_id: str
    keys: TerminalKeys


@dataclass(frozen=True)
class BankSeed:
    currency: str
    customers: tuple[SeedCustomer, ...]
    terminals: tuple[SeedTerminal, ...]


class _Reader:
    """Typed access to the seed document; every failure is a DataFileError at its line."""

    def __init__(self, file: DataFile) -> None:
        self.file = file

    def fail(self, keys: tuple[Key, ...], reason: str) -> DataFileError:
        return self.file.error(keys, reason)

    def mapping(self, value: object, keys: tuple[Key, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(keys, "expected a mapping")
        return value

    def items(self, value: object, keys: tuple[Key, ...]) -> list[Any]:
        if not isinstance(value, list) or not value:
            raise self.fail(keys, "expected a non-empty list")
        return value

    def text(
        self, data: dict[str, Any], keys: tuple[Key, ...], *, digits: int | None = None
    ) -> str:
        """The text at `keys`, whose last key names it in `data`."""
        value = data.get(str(keys[-1]))
        if not isinstance(value, str):
            raise self.fail(keys, "expected a quoted string")
        if digits is not None and not (value.isdigit() and value.isascii()):
            raise self.fail(keys, "expected digits only")
        if digits is not None and digits and len(value) != digits:
            raise self.fail(keys, f"expected {digits} digits")
        return value

    def cents(self, data: dict[str, Any], keys: tuple[Key, ...]) -> int:
        value = data.get(str(keys[-1]))
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(keys, "expected a whole number of cents, 0 or more")
        return value


def load_seed(path: Path = SEED_FILE) -> BankSeed:
    """Read and check the seed file; DataFileError names the file and the line."""
    reader = _Reader(read_data_file(path))
    top = reader.file.data
    currency = reader.text(top, ("currency",), digits=3)
    customers = []
    numbers: set[str] = set()
    pans: set[str] = set()
    for i, raw in enumerate(reader.items(top.get("customers"), ("customers",))):
        where: tuple[Key, ...] = ("customers", i)
        entry = reader.mapping(raw, where)
        name = reader.text(entry, (*where, "name"))
        accounts = []
        for j, raw_account in enumerate(reader.items(entry.get("accounts"), (*where, "accounts"))):
            at = (*where, "accounts", j)
            account = reader.mapping(raw_account, at)
            number = reader.text(account, (*at, "number"), digits=0)
            kind = account.get("type")
            if kind not in CUSTOMER_ACCOUNT_KINDS:
                raise reader.fail(
                    (*at, "type"), f"expected one of {', '.join(CUSTOMER_ACCOUNT_KINDS)}"
                )
            if number in numbers:
                raise reader.fail((*at, "number"), f"account {number} appears twice")
            numbers.add(number)
            balance = reader.cents(account, (*at, "balance"))
            accounts.append(SeedAccount(number, str(kind), balance))
        own = {a.number: a for a in accounts}
        cards = []
        for j, raw_card in enumerate(reader.items(entry.get("cards"), (*where, "cards"))):
            at = (*where, "cards", j)
            card = reader.mapping(raw_card, at)
            pan = reader.text(card, (*at, "pan"), digits=0)
            if not 12 <= len(pan) <= 19 or not luhn_valid(pan):
                raise reader.fail((*at, "pan"), "expected 12 to 19 digits passing the Luhn check")
            if pan in pans:
                raise reader.fail((*at, "pan"), "the same card appears twice")
            pans.add(pan)
            pin = reader.text(card, (*at, "pin"), digits=0)
            if not 4 <= len(pin) <= 12:
                raise reader.fail((*at, "pin"), "expected 4 to 12 digits")
            expiry = reader.text(card, (*at, "expiry"), digits=4)
            if not 1 <= int(expiry[2:]) <= 12:
                raise reader.fail((*at, "expiry"), "expected YYMM")
            linked = card.get("accounts")
            if not isinstance(linked, list) or not linked:
                raise reader.fail((*at, "accounts"), "expected a list of account numbers")
            for number in linked:
                if number not in own:
                    raise reader.fail((*at, "accounts"), f"{number!r} is not this customer's")
            kinds = [own[n].kind for n in linked]
            if len(set(kinds)) != len(kinds):
                raise reader.fail((*at, "accounts"), "a card reaches one account of each type")
            cards.append(SeedCard(pan, pin, expiry, tuple(linked)))
        customers.append(SeedCustomer(name, tuple(accounts), tuple(cards)))
    terminals = []
    for i, raw in enumerate(reader.items(top.get("terminals"), ("terminals",))):
        where = ("terminals", i)
        entry = reader.mapping(raw, where)
        terminal_id = reader.text(entry, (*where, "id"))
        if not 1 <= len(terminal_id) <= 8:
            raise reader.fail((*where, "id"), "expected 1 to 8 characters")
        keys = reader.mapping(entry.get("keys"), (*where, "keys"))
        try:
            parsed: dict[str, bytes | None] = {
                name: crypto_keys.key_from_hex(name, reader.text(keys, (*where, "keys", name)))
                for name in crypto_keys.KEY_NAMES
            }
            for name in crypto_keys.OPTIONAL_KEY_NAMES:
                if keys.get(name) is not None:
                    parsed[name] = crypto_keys.key_from_hex(
                        name, reader.text(keys, (*where, "keys", name))
                    )
        except KeyFormatError as err:
            raise reader.fail((*where, "keys"), str(err)) from err
        terminals.append(SeedTerminal(terminal_id, TerminalKeys(**parsed)))  # type: ignore[arg-type]
    return BankSeed(currency, tuple(customers), tuple(terminals))


# ----- seeding --------------------------------------------------------------------------------


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _account_id(session: Session, number: str) -> int | None:
    return session.scalar(sa.select(Account.id).where(Account.number == number))


def _new_account(
    session: Session,
    number: str,
    kind: str,
    currency: str,
    customer_id: int | None,
    now: dt.datetime,
) -> int:
    account_id = session.scalar(
        sa.insert(Account)
        .values(
            number=number,
            kind=kind,
            customer_id=customer_id,
            currency=currency,
            ledger_balance=0,
            available_balance=0,
            created_at=now,
        )
        .returning(Account.id)
    )
    assert account_id is not None
    return int(account_id)


def _seed_customer(
    session: Session, settings: Settings, seed: BankSeed, customer: SeedCustomer, equity: int
) -> list[str]:
    now = _utc_now()
    done: list[str] = []
    customer_id = session.scalar(sa.select(Customer.id).where(Customer.name == customer.name))
    if customer_id is None:
        customer_id = session.scalar(
            sa.insert(Customer).values(name=customer.name, created_at=now).returning(Customer.id)
        )
        assert customer_id is not None
        done.append(f"customer {customer.name}")
    ids: dict[str, int] = {}
    for account in customer.accounts:
        existing = _account_id(session, account.number)
        if existing is not None:
            ids[account.number] = existing
            continue
        account_id = _new_account(
            session, account.number, account.kind, seed.currency, customer_id, now
        )
        ids[account.number] = account_id
        if account.balance:
            post_entry(
                DriverTransaction(session.connection()),
                posted_at=now,
                kind="opening",
                description=f"Opening balance of {account.number}",
                postings=[
                    Posting(account_id, account.balance, "Opening balance"),
                    Posting(equity, -account.balance, f"Opening of {account.number}"),
                ],
            )
        done.append(f"account {account.number}")
    for card in customer.cards:
        digest = crypto_keys.pan_digest(settings, card.pan)
        if session.scalar(sa.select(Card.id).where(Card.pan_hash == digest)) is not None:
            continue
        card_id = session.scalar(
            sa.insert(Card)
            .values(
                pan_hash=digest,
                masked_pan=mask_pan(card.pan),
                customer_id=customer_id,
                expiry=card.expiry,
                pin_hash=pin_unit.hash_pin(settings, card.pin),
                failed_pin_attempts=0,
                locked_until=None,
                status="active",
                created_at=now,
            )
            .returning(Card.id)
        )
        kinds = {a.number: a.kind for a in customer.accounts}
        for position, number in enumerate(card.accounts):
            session.execute(
                sa.insert(CardAccount).values(
                    card_id=card_id,
                    account_id=ids[number],
                    account_type=kinds[number],
                    is_default=position == 0,
                )
            )
        done.append(f"card {mask_pan(card.pan)}")
    return done


def _seed_terminal(
    session: Session, settings: Settings, seed: BankSeed, terminal: SeedTerminal
) -> list[str]:
    existing = session.scalar(
        sa.select(Terminal).where(Terminal.terminal_id == terminal.terminal_id)
    )
    if existing is not None:
        try:
            same = crypto_keys.open_terminal_keys(settings, existing) == terminal.keys
        except crypto_keys.KeyStoreError:
            same = False
        if same:
            return []
        for column, value in crypto_keys.sealed_columns(
            settings, terminal.terminal_id, terminal.keys
        ).items():
            setattr(existing, column, value)
        return [f"keys of terminal {terminal.terminal_id}"]
    now = _utc_now()
    number = f"ATM-CASH-{terminal.terminal_id}"
    settlement = _account_id(session, number)
    if settlement is None:
        settlement = _new_account(session, number, "atm_settlement", seed.currency, None, now)
    session.execute(
        sa.insert(Terminal).values(
            terminal_id=terminal.terminal_id,
            settlement_account_id=settlement,
            last_sign_on_at=None,
            created_at=now,
            **crypto_keys.sealed_columns(settings, terminal.terminal_id, terminal.keys),
        )
    )
    return [f"terminal {terminal.terminal_id}"]


def _report(session: Session, created: list[str]) -> str:
    lines = ["Bank seeded: " + (", ".join(created) if created else "nothing new (already seeded)")]
    lines.append(f"{'account':<10} {'type':<9} {'customer':<16} {'ledger':>14} {'available':>14}")
    rows = session.execute(
        sa.select(
            Account.number,
            Account.kind,
            Customer.name,
            Account.ledger_balance,
            Account.available_balance,
        )
        .join(Customer, Customer.id == Account.customer_id)
        .order_by(Account.number)
    ).all()
    for number, kind, name, ledger, available in rows:
        lines.append(
            f"{number:<10} {kind:<9} {name:<16} {_money(ledger):>14} {_money(available):>14}"
        )
    terminals = session.scalars(
        sa.select(Terminal.terminal_id).order_by(Terminal.terminal_id)
    ).all()
    lines.append("terminals: " + ", ".join(terminals))
    return "\n".join(lines)


def _money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100:,}.{abs(cents) % 100:02d}"


def seed_bank(settings: Settings, seed_file: Path = SEED_FILE) -> str:
    """Migrate to head, then create what the seed file lists and the bank lacks; a report."""
    seed = load_seed(seed_file)
    upgrade_database(settings)
    engine = make_engine(database_url(settings))
    try:
        with Session(engine) as session, session.begin():
            session.execute(sa.select(sa.func.pg_advisory_xact_lock(SEED_LOCK)))
            created: list[str] = []
            equity = _account_id(session, EQUITY_ACCOUNT)
            if equity is None:
                equity = _new_account(
                    session, EQUITY_ACCOUNT, "bank_equity", seed.currency, None, _utc_now()
                )
                created.append("bank equity account")
            for customer in seed.customers:
                created += _seed_customer(session, settings, seed, customer, equity)
            for terminal in seed.terminals:
                created += _seed_terminal(session, settings, seed, terminal)
            session.flush()
            return _report(session, created)
    except sa.exc.SQLAlchemyError as err:
        raise BankAdminError(f"cannot seed the bank: {err}") from err
    finally:
        engine.dispose()


# ----- open holds -----------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenHold:
    """A withdrawal authorised (its amount held) whose completion or reversal never came."""

    terminal_id: str
    stan: str
    transmitted_at: dt.datetime
    masked_pan: str
    account: str
    amount: int  # cents
    held_since: dt.datetime
    age_seconds: int


def open_holds(
    engine: sa.Engine, *, now: dt.datetime | None = None, older_than_seconds: float = 0
) -> list[OpenHold]:
    """Every hold still `held` and at least `older_than_seconds` old, the oldest first.

    Reading only: the host never releases or posts a hold by itself (docs/host-protocol.md).
    """
    if older_than_seconds < 0:
        raise ValueError("--older-than must be 0 or more seconds")
    moment = now or _utc_now()
    cutoff = moment - dt.timedelta(seconds=older_than_seconds)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                Hold.terminal_id,
                HostTransaction.stan,
                HostTransaction.transmitted_at,
                Card.masked_pan,
                Account.number,
                Hold.amount,
                Hold.created_at,
            )
            .join(HostTransaction, HostTransaction.id == Hold.host_transaction_id)
            .join(Account, Account.id == Hold.account_id)
            .outerjoin(Card, Card.id == HostTransaction.card_id)
            .where(Hold.status == "held", Hold.created_at <= cutoff)
            .order_by(Hold.created_at, Hold.id)
        ).all()
    return [
        OpenHold(
            terminal_id=row.terminal_id,
            stan=row.stan,
            transmitted_at=row.transmitted_at,
            masked_pan=row.masked_pan or "-",
            account=row.number,
            amount=row.amount,
            held_since=row.created_at,
            age_seconds=max(0, int((moment - row.created_at).total_seconds())),
        )
        for row in rows
    ]


def _age(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{days}d {hours:02d}:{minutes:02d}:{seconds:02d}"


def format_open_holds(holds: list[OpenHold], older_than_seconds: float = 0) -> str:
    """The hold report as the `atm-sim host holds` command prints it."""
    if not holds:
        return f"no open holds older than {older_than_seconds:g} s"
    lines = [
        f"{'terminal':<8} {'STAN':<6} {'sent (UTC)':<19} {'card':<19} {'account':<10} "
        f"{'amount':>12} {'age':>12}"
    ]
    for hold in holds:
        sent = hold.transmitted_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(
            f"{hold.terminal_id:<8} {hold.stan:<6} {sent:<19} {hold.masked_pan:<19} "
            f"{hold.account:<10} {_money(hold.amount):>12} {_age(hold.age_seconds):>12}"
        )
    total = sum(hold.amount for hold in holds)
    lines.append(f"{len(holds)} open hold(s), {_money(total)} held")
    return "\n".join(lines)


def holds_report(settings: Settings, older_than_seconds: float = 0) -> str:
    """The open holds of the bank database the settings name, as printable text."""
    engine = make_engine(database_url(settings))
    try:
        holds = open_holds(engine, older_than_seconds=older_than_seconds)
    except sa.exc.SQLAlchemyError as err:
        raise BankAdminError(f"cannot read the holds: {err}") from err
    finally:
        engine.dispose()
    return format_open_holds(holds, older_than_seconds)


# ----- test benches: a bank in a given state --------------------------------------------------


class UnknownBankObject(LookupError):
    """An account or card the bank does not hold."""


def set_ledger_balance(session: Session, number: str, cents: int, posted_at: dt.datetime) -> None:
    """Bring an account to `cents` through an opening entry against the bank's equity, so the
    balances and the ledger keep agreeing."""
    account = session.execute(
        sa.select(Account.id, Account.ledger_balance).where(Account.number == number)
    ).one_or_none()
    if account is None:
        raise UnknownBankObject(f"no account {number} in the bank")
    equity = _account_id(session, EQUITY_ACCOUNT)
    delta = cents - int(account.ledger_balance)
    if delta and equity is not None:
        post_entry(
            DriverTransaction(session.connection()),
            posted_at=posted_at,
            kind="opening",
            description=f"Balance of {number} set to {_money(cents)}",
            postings=[
                Posting(account.id, delta, "Balance adjustment"),
                Posting(equity, -delta, f"Adjustment of {number}"),
            ],
        )


def set_card_state(
    session: Session,
    settings: Settings,
    pan: str,
    *,
    status: str | None = None,
    failed_pin_attempts: int | None = None,
    locked_until: dt.datetime | None = None,
) -> None:
    """Set a card's status, failed PIN tries or lock end (those given)."""
    values: dict[str, Any] = {}
    if status is not None:
        values["status"] = status
    if failed_pin_attempts is not None:
        values["failed_pin_attempts"] = failed_pin_attempts
    if locked_until is not None:
        values["locked_until"] = locked_until
    digest = crypto_keys.pan_digest(settings, pan)
    changed = session.execute(sa.update(Card).where(Card.pan_hash == digest).values(**values))
    if changed.rowcount == 0:  # type: ignore[attr-defined]
        raise UnknownBankObject(f"no card {mask_pan(pan)} in the bank")


def balances(engine: sa.Engine, number: str) -> tuple[int, int]:
    """(ledger, available) cents of an account."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(Account.ledger_balance, Account.available_balance).where(
                Account.number == number
            )
        ).one_or_none()
    if row is None:
        raise UnknownBankObject(f"no account {number} in the bank")
    return int(row.ledger_balance), int(row.available_balance)


def posted_amounts(engine: sa.Engine, number: str) -> list[int]:
    """The amounts of an account's ledger lines in order, opening entries left out."""
    with engine.connect() as conn:
        rows = conn.scalars(
            sa.select(JournalLine.amount)
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .join(Account, Account.id == JournalLine.account_id)
            .where(Account.number == number, JournalEntry.kind != "opening")
            .order_by(JournalLine.id)
        ).all()
    return [int(amount) for amount in rows]


def host_transactions(engine: sa.Engine, leave_out: frozenset[str]) -> list[tuple[str, str, int]]:
    """(kind, response code, amount) of every host transaction record in order, the kinds in
    `leave_out` left out."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(HostTransaction.kind, HostTransaction.response_code, HostTransaction.amount)
            .where(HostTransaction.kind.not_in(leave_out))
            .order_by(HostTransaction.id)
        ).all()
    return [(row.kind, row.response_code or "", int(row.amount or 0)) for row in rows]
