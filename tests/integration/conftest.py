"""Bank fixtures on real PostgreSQL: a migrated and seeded bank database per test, a Bank with a
movable clock, and a builder of HostRequests with PIN blocks made independently by psec.

The seeded database is made once per run and reset to its seeded rows before each test.
"""

from __future__ import annotations

import datetime as dt
import itertools
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psec.des
import psec.pinblock
import pytest
import sqlalchemy as sa

from config.settings import Settings, load_settings
from host.bank_admin import seed_bank
from host.database import make_engine
from host.messages import HostRequest, RequestKind
from host.models import Base
from host.service import Bank
from tests.conftest import TEST_SECRETS

PIN_KEY_TDES = bytes.fromhex("89ABCDEF0123456776543210FEDCBA98")
PIN_KEY_AES = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
MAC_KEY = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")


@dataclass(frozen=True)
class CardData:
    pan: str
    pin: str
    expiry: str


ALICE = CardData("4761739001010010", "1234", "3012")
BOB = CardData("4111111111111111", "4321", "2912")
CHARLIE = CardData("4012345678909", "0852", "2806")
SEEDED_BALANCES = {
    "10000001": 250000,
    "10000002": 1000000,
    "10000003": 75000,
    "10000004": 12000,
    "10000005": 500000,
}


def pin_block(pin: str, pan: str, block_format: int = 0) -> bytes:
    """An encrypted PIN block under the seeded terminal keys, built by psec (not by the host)."""
    if block_format == 0:
        clear = psec.pinblock.encode_pinblock_iso_0(pin, pan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # psec uses cryptography's deprecated 2-key TDES
            return bytes(psec.des.encrypt_tdes_ecb(PIN_KEY_TDES, clear))
    if block_format == 4:
        return bytes(psec.pinblock.encipher_pinblock_iso_4(PIN_KEY_AES, pin, pan))
    raise ValueError(f"no PIN block format {block_format} in these tests")


class BankClock:
    """A clock the test moves by hand; starts at the real time."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.now = start or dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)

    def set(self, when: dt.datetime) -> None:
        self.now = when


class BankRequests:
    """HostRequests of one terminal, each with the next STAN and the clock's time."""

    def __init__(self, clock: Callable[[], dt.datetime], terminal_id: str = "ATM00001") -> None:
        self.clock = clock
        self.terminal_id = terminal_id
        self._stans = itertools.count(1)

    def next_stan(self) -> str:
        return f"{next(self._stans) % 1_000_000:06d}"

    def network(self, kind: RequestKind, *, stan: str | None = None) -> HostRequest:
        return HostRequest(kind, self.terminal_id, stan or self.next_stan(), self.clock())

    def card(
        self,
        kind: RequestKind,
        card: CardData,
        *,
        pin: str | None = None,
        pin_format: int = 0,
        amount: int = 0,
        from_account: str | None = None,
        to_account: str | None = None,
        new_pin: str | None = None,
        expiry: str | None = None,
        stan: str | None = None,
    ) -> HostRequest:
        return HostRequest(
            kind=kind,
            terminal_id=self.terminal_id,
            stan=stan or self.next_stan(),
            transmitted_at=self.clock(),
            pan=card.pan,
            expiry=expiry or card.expiry,
            pin_block=pin_block(pin or card.pin, card.pan, pin_format),
            pin_block_format=pin_format,
            new_pin_block=None if new_pin is None else pin_block(new_pin, card.pan, pin_format),
            amount=amount,
            from_account=from_account,
            to_account=to_account,
        )

    def advice(
        self,
        kind: RequestKind,
        original_stan: str,
        amount: int,
        *,
        dispensed: int | None = None,
        stan: str | None = None,
    ) -> HostRequest:
        return HostRequest(
            kind=kind,
            terminal_id=self.terminal_id,
            stan=stan or self.next_stan(),
            transmitted_at=self.clock(),
            amount=amount,
            original_stan=original_stan,
            dispensed_amount=dispensed,
        )


@dataclass(frozen=True)
class _SeededBank:
    url: str
    rows: dict[str, list[dict[str, object]]]


@pytest.fixture(scope="session")
def _seeded_bank(
    make_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> _SeededBank:
    """One database per run, migrated and seeded, and a copy of its seeded rows."""
    url = make_database()
    home = tmp_path_factory.mktemp("bank")
    seed_bank(load_settings({**TEST_SECRETS, "DATABASE_URL": url, "ATM_SIM_HOME": str(home)}))
    engine = sa.create_engine(url)
    rows: dict[str, list[dict[str, object]]] = {}
    try:
        with engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                result = conn.execute(sa.select(table).order_by(*table.primary_key.columns))
                rows[table.name] = [dict(row._mapping) for row in result]
    finally:
        engine.dispose()
    return _SeededBank(url, rows)


@pytest.fixture
def bank_url(_seeded_bank: _SeededBank) -> str:
    """URL of a database holding the migrated, freshly seeded sample bank.

    Dropping and creating databases costs a checkpoint each, so every test gets the run's bank
    database emptied and refilled with the seeded rows instead.
    """
    tables = Base.metadata.sorted_tables
    engine = sa.create_engine(_seeded_bank.url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '10s'"))
            names = ", ".join(table.name for table in tables)
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY"))
            for table in tables:
                if _seeded_bank.rows[table.name]:
                    conn.execute(table.insert(), _seeded_bank.rows[table.name])
                if "id" in table.columns:
                    conn.execute(
                        sa.text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                            f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"
                        )
                    )
    finally:
        engine.dispose()
    return _seeded_bank.url


@pytest.fixture
def bank_settings(settings_for: Callable[..., Settings], bank_url: str) -> Settings:
    """Test settings (fast bcrypt, test secrets) pointing at the fresh seeded bank database."""
    return settings_for(DATABASE_URL=bank_url)


@pytest.fixture
def bank_engine(bank_settings: Settings) -> Iterator[sa.Engine]:
    """An engine on the migrated, seeded bank database (pool large enough for 40 threads)."""
    assert bank_settings.database_url is not None
    engine = make_engine(bank_settings.database_url, pool_size=8, max_overflow=40)
    yield engine
    engine.dispose()


@pytest.fixture
def bank_clock() -> BankClock:
    return BankClock()


@pytest.fixture
def bank(bank_engine: sa.Engine, bank_settings: Settings, bank_clock: BankClock) -> Bank:
    """The authorisation service on the seeded bank, reading bank_clock."""
    return Bank(bank_engine, bank_settings, clock=bank_clock)


@pytest.fixture
def bank_requests(bank_clock: BankClock) -> BankRequests:
    """Requests from terminal ATM00001 with PIN blocks under its seeded keys."""
    return BankRequests(bank_clock)


def ledger_problems(engine: sa.Engine) -> list[str]:
    """What breaks the ledger's rules: unbalanced entries, balances apart from their lines."""
    problems: list[str] = []
    with engine.connect() as conn:
        for entry, total in conn.execute(
            sa.text(
                "SELECT entry_id, SUM(amount) FROM journal_lines GROUP BY entry_id "
                "HAVING SUM(amount) <> 0"
            )
        ):
            problems.append(f"entry {entry} sums to {total}")
        for number, balance, lines in conn.execute(
            sa.text(
                "SELECT a.number, a.ledger_balance, COALESCE(SUM(l.amount), 0) FROM accounts a "
                "LEFT JOIN journal_lines l ON l.account_id = a.id GROUP BY a.id "
                "HAVING a.ledger_balance <> COALESCE(SUM(l.amount), 0)"
            )
        ):
            problems.append(f"account {number}: balance {balance}, ledger lines {lines}")
        for number, ledger, available, held in conn.execute(
            sa.text(
                "SELECT a.number, a.ledger_balance, a.available_balance, "
                "COALESCE(SUM(h.amount) FILTER (WHERE h.status = 'held'), 0) "
                "FROM accounts a LEFT JOIN holds h ON h.account_id = a.id "
                "WHERE a.kind IN ('checking', 'savings') GROUP BY a.id "
                "HAVING a.available_balance <> a.ledger_balance "
                "- COALESCE(SUM(h.amount) FILTER (WHERE h.status = 'held'), 0)"
            )
        ):
            problems.append(f"account {number}: ledger {ledger} - held {held} != {available}")
    return problems


def balances(engine: sa.Engine, number: str) -> tuple[int, int]:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT ledger_balance, available_balance FROM accounts WHERE number = :n"),
            {"n": number},
        ).one()
    return int(row[0]), int(row[1])


def usage(engine: sa.Engine, number: str, kind: str = "withdrawal") -> int:
    with engine.connect() as conn:
        used = conn.scalar(
            sa.text(
                "SELECT COALESCE(SUM(u.used), 0) FROM daily_usage u JOIN accounts a "
                "ON a.id = u.account_id WHERE a.number = :n AND u.kind = :k"
            ),
            {"n": number, "k": kind},
        )
    return int(used or 0)
