"""PDF account statements (reportlab): the ledger lines of one account between two dates, with the
opening and closing balance, written into settings.statement_output_dir.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from config.settings import Settings
from host.database import database_url, make_engine
from host.ledger import ledger_lines
from host.models import CUSTOMER_ACCOUNT_KINDS, Account, Customer, JournalEntry, JournalLine


class StatementError(ValueError):
    """A statement cannot be made for what was asked (unknown account, dates in wrong order)."""


@dataclass(frozen=True)
class StatementRow:
    posted_at: dt.datetime
    description: str
    amount: int
    balance_after: int


@dataclass(frozen=True)
class Statement:
    account_number: str
    account_kind: str
    customer: str
    currency: str
    start: dt.date
    end: dt.date
    opening_balance: int
    closing_balance: int
    rows: tuple[StatementRow, ...]


def money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100:,}.{abs(cents) % 100:02d}"


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def read_statement(
    engine: sa.Engine, account_number: str, start: dt.date, end: dt.date
) -> Statement:
    """The statement's data: lines posted from `start` to `end` inclusive (UTC days)."""
    if start > end:
        raise StatementError(f"the statement starts ({start}) after it ends ({end})")
    with engine.connect() as conn:
        account = conn.execute(
            sa.select(Account.id, Account.kind, Account.currency, Customer.name)
            .join(Customer, Customer.id == Account.customer_id)
            .where(Account.number == account_number, Account.kind.in_(CUSTOMER_ACCOUNT_KINDS))
        ).one_or_none()
        if account is None:
            raise StatementError(f"no customer account {account_number!r}")
        lines = ledger_lines(account.id)
        before = conn.execute(
            lines.where(JournalEntry.posted_at < _day_start(start))
            .order_by(JournalLine.id.desc())
            .limit(1)
        ).one_or_none()
        rows = conn.execute(
            lines.where(
                JournalEntry.posted_at >= _day_start(start),
                JournalEntry.posted_at < _day_start(end + dt.timedelta(days=1)),
            ).order_by(JournalLine.id)
        ).all()
    opening = before.balance_after if before is not None else 0
    found = tuple(StatementRow(*row) for row in rows)
    return Statement(
        account_number=account_number,
        account_kind=account.kind,
        customer=account.name,
        currency=account.currency,
        start=start,
        end=end,
        opening_balance=opening,
        closing_balance=found[-1].balance_after if found else opening,
        rows=found,
    )


def render_statement(statement: Statement, path: Path, *, compress: bool = True) -> Path:
    """Write the statement as a PDF at `path`."""
    styles = getSampleStyleSheet()
    doc = SimpleDocTemplate(
        str(path),
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
        title=f"Statement {statement.account_number}",
        author="ATM simulator bank",
        pageCompression=1 if compress else 0,
        invariant=1,
    )
    period = f"{statement.start.isoformat()} to {statement.end.isoformat()}"
    story: list[object] = [
        Paragraph("Account statement", styles["Title"]),
        Paragraph(
            f"{statement.customer}, {statement.account_kind} account {statement.account_number}",
            styles["Normal"],
        ),
        Paragraph(
            f"Period {period} (UTC), amounts in currency {statement.currency}", styles["Normal"]
        ),
        Spacer(1, 6 * mm),
    ]
    table = [["Date", "Description", "Amount", "Balance"]]
    table.append(["", "Opening balance", "", money(statement.opening_balance)])
    for row in statement.rows:
        table.append(
            [
                row.posted_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M"),
                row.description,
                money(row.amount),
                money(row.balance_after),
            ]
        )
    table.append(["", "Closing balance", "", money(statement.closing_balance)])
    grid = Table(table, colWidths=[35 * mm, 75 * mm, 30 * mm, 32 * mm], repeatRows=1)
    grid.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
                ("FONTNAME", (0, 1), (-1, 1), "Helvetica-Oblique"),
                ("FONTNAME", (0, -1), (-1, -1), "Helvetica-Bold"),
                ("ALIGN", (2, 0), (-1, -1), "RIGHT"),
                ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black),
                ("LINEABOVE", (0, -1), (-1, -1), 0.5, colors.black),
            ]
        )
    )
    story.append(grid)
    doc.build(story)
    return path


def write_statement(
    settings: Settings, account_number: str, start: dt.date, end: dt.date, *, compress: bool = True
) -> Path:
    """Write the statement of an account as a PDF in settings.statement_output_dir; its path."""
    engine = make_engine(database_url(settings))
    try:
        statement = read_statement(engine, account_number, start, end)
    finally:
        engine.dispose()
    out_dir = settings.statement_output_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"statement-{account_number}-{start.isoformat()}-{end.isoformat()}.pdf"
    return render_statement(statement, path, compress=compress)
