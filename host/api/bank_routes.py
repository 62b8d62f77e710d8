"""The bank administration routes under /bank: customers, accounts and ledger lines, cards
(masked; block, unblock, reset PIN tries), terminals (key check values), host records, open holds
and statement PDFs made as jobs. Viewers read; only admins change cards.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import AfterValidator, AwareDatetime

from config.settings import Settings
from host import bank_admin
from host.api import bank_queries
from host.api.job_port import JobFailed, JobInfo, JobOutcome, JobQueue, Work
from host.api.operators import OperatorAuth, Principal
from host.api.schemas import (
    MAX_ID,
    MAX_PAGE,
    AccountNumber,
    AccountOut,
    AccountPage,
    BankDate,
    CardOut,
    CardPage,
    CardStatus,
    CustomerOut,
    CustomerPage,
    ErrorOut,
    HoldList,
    HoldOut,
    HostTransactionPage,
    JobOut,
    LedgerPage,
    StatementIn,
    TerminalId,
    TerminalOut,
)
from host.api.security import AUTH_RESPONSES, require_role
from host.messages import RequestKind
from host.models import BANK_ACCOUNT_KINDS, CUSTOMER_ACCOUNT_KINDS
from host.statements import StatementError, read_statement, render_statement

STATEMENT_JOB = "statement"
STATEMENT_FILE = "statement.pdf"
JOB_ID = r"^[0-9a-f]{32}$"
PDF_SCHEMA = {"type": "string", "format": "binary"}

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="rows per page")]
Offset = Annotated[int, Query(ge=0, le=10**9, description="rows to skip")]
OptionalId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
AccountKind = Literal["checking", "savings", "bank_equity", "atm_settlement"]
assert set(CUSTOMER_ACCOUNT_KINDS + BANK_ACCOUNT_KINDS) == {
    "checking",
    "savings",
    "bank_equity",
    "atm_settlement",
}


def _in_calendar(value: dt.datetime) -> dt.datetime:
    if not 1900 <= value.astimezone(dt.UTC).year <= 9000:
        raise ValueError("expected a time between the years 1900 and 9000")
    return value


BankTime = Annotated[AwareDatetime, AfterValidator(_in_calendar)]
NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorOut, "description": "no such record"}
}


def job_out(job: JobInfo) -> JobOut:
    return JobOut(
        id=job.id,
        kind=job.kind,
        status=job.status,  # type: ignore[arg-type]  # the queue's own four words
        submitted_at=job.submitted_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        result=dict(job.result),
        error=job.error,
        files=list(job.files),
    )


def bank_router(
    engine: sa.Engine, settings: Settings, auth: OperatorAuth, jobs: JobQueue
) -> APIRouter:
    router = APIRouter(prefix="/bank", tags=["bank"], responses=AUTH_RESPONSES)
    viewer = Depends(require_role(auth, "viewer"))
    admin = require_role(auth, "admin")

    # ----- customers and accounts ---------------------------------------------------------

    @router.get("/customers", response_model=CustomerPage, dependencies=[viewer])
    def customers(limit: Limit = 50, offset: Offset = 0) -> CustomerPage:
        """Customers with their account numbers and card ids."""
        return bank_queries.list_customers(engine, limit, offset)

    @router.get(
        "/customers/{customer_id}",
        response_model=CustomerOut,
        dependencies=[viewer],
        responses=NOT_FOUND,
    )
    def customer(customer_id: Annotated[int, PathParam(ge=1, le=MAX_ID)]) -> CustomerOut:
        found = bank_queries.get_customer(engine, customer_id)
        if found is None:
            raise HTTPException(404, f"no customer {customer_id}")
        return found

    @router.get("/accounts", response_model=AccountPage, dependencies=[viewer])
    def accounts(
        customer_id: OptionalId = None,
        kind: AccountKind | None = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> AccountPage:
        """Accounts with their balances in cents (customer and bank-side accounts)."""
        return bank_queries.list_accounts(
            engine, customer_id=customer_id, kind=kind, limit=limit, offset=offset
        )

    @router.get(
        "/accounts/{number}",
        response_model=AccountOut,
        dependencies=[viewer],
        responses=NOT_FOUND,
    )
    def account(number: Annotated[AccountNumber, PathParam()]) -> AccountOut:
        found = bank_queries.get_account(engine, number)
        if found is None:
            raise HTTPException(404, f"no account {number!r}")
        return found

    @router.get(
        "/accounts/{number}/lines",
        response_model=LedgerPage,
        dependencies=[viewer],
        responses=NOT_FOUND,
    )
    def account_lines(
        number: Annotated[AccountNumber, PathParam()],
        date_from: Annotated[BankDate | None, Query(alias="from")] = None,
        date_to: Annotated[BankDate | None, Query(alias="to")] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> LedgerPage:
        """Ledger lines of an account, newest first; `from` and `to` are UTC days, inclusive."""
        page = bank_queries.ledger_lines(
            engine, number, start=date_from, end=date_to, limit=limit, offset=offset
        )
        if page is None:
            raise HTTPException(404, f"no account {number!r}")
        return page

    # ----- cards ------------------------------------------------------------------------------

    @router.get("/cards", response_model=CardPage, dependencies=[viewer])
    def cards(
        customer_id: OptionalId = None,
        status: CardStatus | None = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> CardPage:
        """Cards, masked (first 6, last 4): never a full number, a PIN or a PIN block."""
        return bank_queries.list_cards(
            engine, customer_id=customer_id, status=status, limit=limit, offset=offset
        )

    @router.get(
        "/cards/{card_id}", response_model=CardOut, dependencies=[viewer], responses=NOT_FOUND
    )
    def card(card_id: Annotated[int, PathParam(ge=1, le=MAX_ID)]) -> CardOut:
        found = bank_queries.get_card(engine, card_id)
        if found is None:
            raise HTTPException(404, f"no card {card_id}")
        return found

    def _card_action(action: str, summary: str) -> None:
        @router.post(
            f"/cards/{{card_id}}/{action}",
            response_model=CardOut,
            responses=NOT_FOUND,
            summary=summary,
            name=f"card_{action.replace('-', '_')}",
        )
        def change(
            card_id: Annotated[int, PathParam(ge=1, le=MAX_ID)],
            principal: Principal = Depends(admin),  # noqa: B008
        ) -> CardOut:
            changed = bank_queries.change_card(engine, card_id, action, principal.name)
            if changed is None:
                raise HTTPException(404, f"no card {card_id}")
            return changed

    _card_action("block", "Block a card: the host declines it (57) until unblocked (admin)")
    _card_action("unblock", "Put a blocked or captured card back into use (admin)")
    _card_action("reset-pin-tries", "Reset the failed PIN tries and lift a PIN lockout (admin)")

    # ----- terminals, host records, holds ---------------------------------------------------

    @router.get("/terminals", response_model=list[TerminalOut], dependencies=[viewer])
    def terminals() -> list[TerminalOut]:
        """Terminals with the check values of their keys (never a key)."""
        return bank_queries.list_terminals(engine, settings)

    @router.get(
        "/terminals/{terminal_id}",
        response_model=TerminalOut,
        dependencies=[viewer],
        responses=NOT_FOUND,
    )
    def terminal(terminal_id: Annotated[TerminalId, PathParam()]) -> TerminalOut:
        found = bank_queries.list_terminals(engine, settings, terminal_id)
        if not found:
            raise HTTPException(404, f"no terminal {terminal_id!r}")
        return found[0]

    @router.get("/host-transactions", response_model=HostTransactionPage, dependencies=[viewer])
    def host_transactions(
        terminal_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9]{1,8}$")] = None,
        kind: RequestKind | None = None,
        response_code: Annotated[str | None, Query(pattern=r"^[0-9A-Z]{2}$")] = None,
        stan: Annotated[str | None, Query(pattern=r"^[0-9]{6}$")] = None,
        account: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9-]{1,34}$")] = None,
        card_id: OptionalId = None,
        since: Annotated[BankTime | None, Query(description="received at or after")] = None,
        until: Annotated[BankTime | None, Query(description="received before")] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> HostTransactionPage:
        """Every request the host answered, newest first, with masked cards."""
        where = bank_queries.HostRecordFilter(
            terminal_id=terminal_id,
            kind=None if kind is None else kind.value,
            response_code=response_code,
            stan=stan,
            account=account,
            card_id=card_id,
            since=since,
            until=until,
        )
        return bank_queries.host_transactions(engine, where, limit, offset)

    @router.get("/holds", response_model=HoldList, dependencies=[viewer])
    def holds(
        older_than_seconds: Annotated[float, Query(ge=0, le=10**9)] = 0,
    ) -> HoldList:
        """Withdrawals authorised whose completion or reversal never came, oldest first."""
        found = bank_admin.open_holds(engine, older_than_seconds=older_than_seconds)
        items = [HoldOut(**vars(hold)) for hold in found]
        return HoldList(count=len(items), total_amount=sum(h.amount for h in items), items=items)

    # ----- statements ---------------------------------------------------------------------------

    @router.post(
        "/statements",
        status_code=202,
        response_model=JobOut,
        dependencies=[viewer],
        responses=NOT_FOUND,
    )
    def request_statement(body: StatementIn, response: Response) -> JobOut:
        """Ask for a PDF statement of an account and period: a job to poll."""
        found = bank_queries.get_account(engine, body.account)
        if found is None or found.kind not in CUSTOMER_ACCOUNT_KINDS:
            raise HTTPException(404, f"no customer account {body.account!r}")
        args = {"account": body.account, "from": body.from_.isoformat(), "to": body.to.isoformat()}
        job = jobs.submit(STATEMENT_JOB, _statement_work(body), args)
        response.headers["Location"] = f"/bank/statements/{job.id}"
        return job_out(job)

    def _statement_work(body: StatementIn) -> Work:
        def work() -> JobOutcome:
            try:
                statement = read_statement(engine, body.account, body.from_, body.to)
            except StatementError as err:
                raise JobFailed(str(err)) from err
            out_dir = settings.statement_output_dir
            out_dir.mkdir(parents=True, exist_ok=True)
            name = f"statement-{body.account}-{body.from_}-{body.to}-{uuid.uuid4().hex[:8]}.pdf"
            path = render_statement(statement, out_dir / name)
            return JobOutcome(
                result={
                    "account": body.account,
                    "from": body.from_.isoformat(),
                    "to": body.to.isoformat(),
                    "opening_balance": statement.opening_balance,
                    "closing_balance": statement.closing_balance,
                    "lines": len(statement.rows),
                },
                files={STATEMENT_FILE: path},
            )

        return work

    def _statement_job(job_id: str) -> JobInfo:
        job = jobs.get(job_id)
        if job is None or job.kind != STATEMENT_JOB:
            raise HTTPException(404, f"no statement job {job_id}")
        return job

    @router.get(
        "/statements/{job_id}",
        response_model=JobOut,
        dependencies=[viewer],
        responses=NOT_FOUND,
    )
    def statement_job(job_id: Annotated[str, PathParam(pattern=JOB_ID)]) -> JobOut:
        """The statement job: queued, running, succeeded (the PDF is ready) or failed."""
        return job_out(_statement_job(job_id))

    @router.get(
        "/statements/{job_id}/pdf",
        response_class=FileResponse,
        dependencies=[viewer],
        responses={
            200: {
                "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}
            },
            404: {"model": ErrorOut, "description": "no such job, or its PDF is elsewhere (S3)"},
            409: {"model": ErrorOut, "description": "the statement is not ready (or failed)"},
        },
    )
    def statement_pdf(job_id: Annotated[str, PathParam(pattern=JOB_ID)]) -> FileResponse:
        """The statement PDF once its job has succeeded."""
        job = _statement_job(job_id)
        path: Path | None = jobs.file(job.id, STATEMENT_FILE)
        if job.status == "succeeded" and path is None:
            raise HTTPException(
                404, f"statement job {job_id} left no PDF here; its result says where it is"
            )
        if job.status != "succeeded" or path is None:
            raise HTTPException(
                409, f"statement job {job_id} is {job.status}; poll until succeeded"
            )
        if not path.is_file():
            raise HTTPException(
                404, f"the PDF of statement job {job_id} is gone from {path.parent}"
            )
        return FileResponse(path, media_type="application/pdf", filename=path.name)

    return router
