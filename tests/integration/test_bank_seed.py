"""Seeding the sample bank: what it creates, that a second run changes nothing, what it refuses,
and that no card number, PIN or key is stored in clear."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from config.data_files import DataFileError
from config.settings import Settings
from host import crypto_keys
from host.bank_admin import SEED_FILE, load_seed, seed_bank
from host.crypto_keys import KeyStoreError, mac_key_lookup
from tests.integration.conftest import MAC_KEY, SEEDED_BALANCES, ledger_problems

TABLES = (
    "customers",
    "accounts",
    "cards",
    "card_accounts",
    "terminals",
    "journal_entries",
    "journal_lines",
)


def _snapshot(engine: sa.Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as conn:
        return {
            table: [
                tuple(row) for row in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1"))
            ]
            for table in TABLES
        }


def test_seed_twice_creates_the_bank_once(
    make_database: Callable[[], str], settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for(DATABASE_URL=make_database())
    report = seed_bank(settings)
    assert "customer Alice Martin" in report and "terminal ATM00004" in report
    assert "10000002   savings   Alice Martin          10,000.00      10,000.00" in report
    assert "4761739001010010" not in report and "476173******0010" in report
    assert settings.database_url is not None
    engine = sa.create_engine(settings.database_url)
    try:
        first = _snapshot(engine)
        again = seed_bank(settings)
        assert "nothing new" in again
        assert _snapshot(engine) == first
        with engine.connect() as conn:
            found = dict(
                conn.execute(
                    sa.text(
                        "SELECT number, ledger_balance FROM accounts WHERE customer_id IS NOT NULL"
                    )
                ).all()
            )
            equity = conn.scalar(
                sa.text("SELECT ledger_balance FROM accounts WHERE kind = 'bank_equity'")
            )
            links = conn.execute(
                sa.text(
                    "SELECT c.masked_pan, a.number, l.account_type, l.is_default "
                    "FROM card_accounts l JOIN cards c ON c.id = l.card_id "
                    "JOIN accounts a ON a.id = l.account_id "
                    "ORDER BY 1, 2"
                )
            ).all()
            cards = conn.execute(sa.text("SELECT * FROM cards")).all()
            terminals = conn.execute(sa.text("SELECT * FROM terminals")).all()
        assert found == SEEDED_BALANCES
        assert equity == -sum(SEEDED_BALANCES.values())
        assert [tuple(link) for link in links] == [
            ("401234***8909", "10000004", "checking", True),
            ("401234***8909", "10000005", "savings", False),
            ("411111******1111", "10000003", "checking", True),
            ("476173******0010", "10000001", "checking", True),
            ("476173******0010", "10000002", "savings", False),
        ]
        assert ledger_problems(engine) == []
        stored = " ".join(
            v.hex() if isinstance(v, bytes) else str(v) for row in cards + terminals for v in row
        ).lower()
        for secret in ("4761739001010010", "4111111111111111", "4012345678909", MAC_KEY.hex()):
            assert secret not in stored
        assert all(row.pin_hash.startswith("$2b$04$") for row in cards)
        lookup = mac_key_lookup(engine, settings)
        assert lookup("ATM00003") == MAC_KEY
        assert lookup("ATM00099") is None
        with pytest.raises(KeyStoreError, match="SECRET_KEY"):
            mac_key_lookup(engine, settings_for(SECRET_KEY="another-secret-key-987654"))("ATM00001")
    finally:
        engine.dispose()


def test_seed_file_lists_the_shared_test_data() -> None:
    seed = load_seed(SEED_FILE)
    cards = {card.pan: card for customer in seed.customers for card in customer.cards}
    assert {pan: (c.pin, c.expiry) for pan, c in cards.items()} == {
        "4761739001010010": ("1234", "3012"),
        "4111111111111111": ("4321", "2912"),
        "4012345678909": ("0852", "2806"),
    }
    assert "0852" not in repr(cards["4012345678909"])
    assert [t.terminal_id for t in seed.terminals] == [f"ATM0000{n}" for n in range(1, 5)]
    assert all(t.keys.mac_key == MAC_KEY for t in seed.terminals)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('pin: "1234"', "pin: 1234"),
            r"customers\[0\]\.cards\[0\]\.pin: expected a quoted string",
        ),
        (('expiry: "2806"', 'expiry: "2813"'), r"cards\[0\]\.expiry: expected YYMM"),
        (('pan: "4012345678909"', 'pan: "4012345678908"'), "Luhn"),
        (("balance: 12000", "balance: 120.00"), "whole number of cents"),
        (('accounts: ["10000003"]', 'accounts: ["10000001"]'), "is not this customer's"),
        (('mac_key: "2B7E', 'mac_key: "'), r"terminals\[0\]\.keys: mac_key: expected 32"),
        (("type: savings, balance: 500000", "type: loan, balance: 500000"), "expected one of"),
        (("customers:", "customers: {}\nunused:"), "customers: expected a non-empty list"),
    ],
)
def test_seed_file_mistakes_are_named(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    text = SEED_FILE.read_text(encoding="utf-8")
    assert change[0] in text
    broken = tmp_path / "bank_seed.yaml"
    broken.write_text(text.replace(change[0], change[1], 1), encoding="utf-8")
    with pytest.raises(DataFileError, match=message) as caught:
        load_seed(broken)
    assert str(caught.value).startswith(f"{broken}:{caught.value.line}: ")
    assert isinstance(caught.value, ValueError)


def test_unreadable_seed_file(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="cannot read the file"):
        load_seed(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ncustomers: [", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"bad\.yaml:2: not valid YAML"):
        load_seed(bad)


def test_keys_are_bound_to_their_terminal_and_role(settings_for: Callable[..., Settings]) -> None:
    settings = settings_for()
    sealed = crypto_keys.seal_key(settings, "ATM00001", "mac_key", MAC_KEY)
    assert crypto_keys.open_key(settings, "ATM00001", "mac_key", sealed) == MAC_KEY
    with pytest.raises(KeyStoreError):
        crypto_keys.open_key(settings, "ATM00002", "mac_key", sealed)
    with pytest.raises(KeyStoreError):
        crypto_keys.open_key(settings, "ATM00001", "pin_key_aes", sealed)
    with pytest.raises(KeyStoreError, match="damaged"):
        crypto_keys.open_key(settings, "ATM00001", "mac_key", sealed[:10])
    assert crypto_keys.pan_digest(settings, "4111111111111111") != crypto_keys.pan_digest(
        settings_for(SECRET_KEY="another-secret-key-987654"), "4111111111111111"
    )
