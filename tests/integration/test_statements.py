"""PDF statements: a real PDF in the output directory, with the period's ledger lines and the
opening and closing balances read from the page content."""

from __future__ import annotations

import base64
import datetime as dt
import re
import zlib
from pathlib import Path

import pytest

from config.settings import Settings
from host.messages import RequestKind
from host.service import Bank
from host.statements import StatementError, write_statement
from tests.integration.conftest import ALICE, BankClock, BankRequests

STREAM = re.compile(rb"stream\r?\n(.*?)\s*endstream", re.DOTALL)


def page_text(pdf: bytes) -> str:
    """The text drawn on the pages: the string operands of the content streams."""
    chunks = []
    for raw in STREAM.findall(pdf):
        if raw.rstrip().endswith(b"~>"):  # reportlab compresses as ASCII85 over Flate
            raw = zlib.decompress(base64.a85decode(raw.strip(), adobe=True))
        chunks.append(raw)
    content = b"\n".join(chunks).decode("latin-1")
    return "\n".join(re.findall(r"\((.*?)\) Tj", content))


def _activity(bank: Bank, bank_requests: BankRequests, bank_clock: BankClock) -> None:
    bank_clock.set(dt.datetime(2030, 1, 10, 9, 30, tzinfo=dt.UTC))
    withdrawal = bank_requests.card(RequestKind.WITHDRAWAL, ALICE, amount=12345)
    assert bank.handle(withdrawal).approved
    assert bank.handle(
        bank_requests.advice(RequestKind.COMPLETION, withdrawal.stan, 12345, dispensed=12345)
    ).approved
    bank_clock.set(dt.datetime(2030, 1, 11, 16, 5, tzinfo=dt.UTC))
    assert bank.handle(
        bank_requests.card(
            RequestKind.TRANSFER, ALICE, amount=50000, from_account="savings", to_account="checking"
        )
    ).approved
    bank_clock.set(dt.datetime(2030, 1, 12, 8, 0, tzinfo=dt.UTC))
    assert bank.handle(bank_requests.card(RequestKind.WITHDRAWAL, ALICE, amount=100)).approved


@pytest.mark.parametrize("compress", [True, False])
def test_statement_of_a_period(
    bank: Bank,
    bank_requests: BankRequests,
    bank_clock: BankClock,
    bank_settings: Settings,
    compress: bool,
) -> None:
    _activity(bank, bank_requests, bank_clock)
    path = write_statement(
        bank_settings, "10000001", dt.date(2030, 1, 10), dt.date(2030, 1, 11), compress=compress
    )
    assert path.parent == bank_settings.statement_output_dir
    assert path.name == "statement-10000001-2030-01-10-2030-01-11.pdf"
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    text = page_text(data)
    assert "Alice Martin, checking account 10000001" in text
    lines = text.splitlines()
    opening = lines.index("Opening balance")
    assert lines[opening + 1] == "2,500.00"
    assert "2030-01-10 09:30" in text and "ATM ATM00001" in text and "-123.45" in text
    assert "2030-01-11 16:05" in text and "Transfer from 10000002" in text and "500.00" in text
    closing = lines.index("Closing balance")
    assert lines[closing + 1] == "2,876.55"  # 2500.00 - 123.45 + 500.00
    assert "2030-01-12" not in text  # the hold of the 12th is after the period and not posted


def test_empty_period_shows_the_balance_it_carries(
    bank_settings: Settings, bank: Bank, bank_requests: BankRequests, bank_clock: BankClock
) -> None:
    _activity(bank, bank_requests, bank_clock)
    path = write_statement(bank_settings, "10000002", dt.date(2031, 1, 1), dt.date(2031, 1, 31))
    lines = page_text(path.read_bytes()).splitlines()
    assert lines[lines.index("Opening balance") + 1] == "9,500.00"
    assert lines[lines.index("Closing balance") + 1] == "9,500.00"


def test_statement_refusals(bank_settings: Settings, bank: Bank) -> None:
    with pytest.raises(StatementError, match="no customer account '99999999'"):
        write_statement(bank_settings, "99999999", dt.date(2030, 1, 1), dt.date(2030, 1, 2))
    with pytest.raises(StatementError, match="no customer account"):
        write_statement(bank_settings, "BANK-EQUITY", dt.date(2030, 1, 1), dt.date(2030, 1, 2))
    with pytest.raises(StatementError, match="starts"):
        write_statement(bank_settings, "10000001", dt.date(2030, 1, 2), dt.date(2030, 1, 1))
    assert not Path(bank_settings.statement_output_dir).exists() or not any(
        Path(bank_settings.statement_output_dir).iterdir()
    )
