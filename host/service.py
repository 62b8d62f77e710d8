"""The bank's authorisation service: answers every HostRequest with a HostResponse, moving money
through the double-entry ledger with conditional updates, idempotent by terminal, STAN and date.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from config.settings import Settings
from host import crypto_keys, dukpt, pin_unit
from host.iso_mapping import is_terminal_id
from host.ledger import InsufficientFunds, Posting, ledger_lines, post_entry
from host.messages import HostRequest, HostResponse, RequestKind, ResponseCode, StatementLine
from host.models import (
    Account,
    Card,
    CardAccount,
    DailyUsage,
    Hold,
    HostTransaction,
    JournalLine,
    Terminal,
)

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
MINI_STATEMENT_LINES = 10
BLOCKED_ORIGINAL = "blocked_original"  # a STAN reversed before its request arrived
CARD_KINDS = frozenset(
    {
        RequestKind.BALANCE,
        RequestKind.WITHDRAWAL,
        RequestKind.TRANSFER,
        RequestKind.MINI_STATEMENT,
        RequestKind.PIN_CHANGE,
    }
)
ADVICE_KINDS = frozenset({RequestKind.COMPLETION, RequestKind.REVERSAL})
# Network messages claim no STAN: an ATM that lost its STAN file must still be able to sign on.
NETWORK_KINDS = frozenset({RequestKind.SIGN_ON, RequestKind.ECHO})
# A completion or reversal of a withdrawal already settled that way, under a new STAN: its row
# keeps the STAN and the answer, under its own kind, so each withdrawal has one settling record.
REPEAT_KINDS = {
    RequestKind.COMPLETION: "completion_repeat",
    RequestKind.REVERSAL: "reversal_repeat",
}
RETRY_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock, serialization failure
ATTEMPTS = 3


# ----- the statements of every card request, built once ------------------------------------------
# Built per call they cost more Python time than the database needs to run them; here they are
# compiled once and run on the session's connection (plain rows, no ORM bookkeeping).

_TERMINAL = sa.select(Terminal).where(Terminal.terminal_id == sa.bindparam("terminal_id"))
_CLAIM = (
    pg_insert(HostTransaction)
    .on_conflict_do_nothing(constraint="uq_host_transactions_idempotency")
    .returning(HostTransaction.id)
)
_FINISH = (
    sa.update(HostTransaction)
    .where(HostTransaction.id == sa.bindparam("record_id"))
    .values(
        response_code=sa.bindparam("response_code"),
        retrieval_reference=sa.bindparam("retrieval_reference"),
        response=sa.bindparam("response", type_=HostTransaction.response.type),
        card_id=sa.bindparam("card_id"),
        account_id=sa.bindparam("account_id"),
        amount=sa.bindparam("amount"),
        original_id=sa.bindparam("original_id"),
        kind=sa.func.coalesce(sa.bindparam("repeat_kind", type_=sa.String), HostTransaction.kind),
    )
)
_CARD_LOCKED = (
    sa.select(Card)
    .where(Card.pan_hash == sa.bindparam("pan_hash"))
    .with_for_update()
    .execution_options(populate_existing=True)
)
_LINKED_ACCOUNTS = (
    sa.select(
        Account.id,
        Account.number,
        CardAccount.account_type,
        CardAccount.is_default,
        Account.currency,
    )
    .join(CardAccount, CardAccount.account_id == Account.id)
    .where(CardAccount.card_id == sa.bindparam("card_id"))
    .order_by(Account.id)
)
_BALANCES = sa.select(Account.ledger_balance, Account.available_balance).where(
    Account.id == sa.bindparam("account_id")
)
_usage = pg_insert(DailyUsage)
_USE_LIMIT = _usage.on_conflict_do_update(
    index_elements=[DailyUsage.account_id, DailyUsage.day, DailyUsage.kind],
    set_={"used": DailyUsage.used + _usage.excluded.used},
    where=DailyUsage.used + _usage.excluded.used <= sa.bindparam("limit"),
).returning(DailyUsage.used)
# A withdrawal's limit, hold and hold record in one statement: the funds are held only if the
# limit took the amount, and the hold row is written only if the funds were held. A limit taken
# with no funds behind it is given back by the caller (its row stays locked until commit).
_HOLD_WITHDRAWAL = sa.text(
    """
    WITH usage AS (
        INSERT INTO daily_usage (account_id, day, kind, used)
        VALUES (:account_id, :day, 'withdrawal', :amount)
        ON CONFLICT (account_id, day, kind) DO UPDATE
            SET used = daily_usage.used + excluded.used
            WHERE daily_usage.used + excluded.used <= :limit
        RETURNING used
    ), funds AS (
        UPDATE accounts SET available_balance = available_balance - :amount
        WHERE id = :account_id AND available_balance >= :amount AND EXISTS (SELECT FROM usage)
        RETURNING ledger_balance, available_balance
    ), hold AS (
        INSERT INTO holds (host_transaction_id, account_id, terminal_id, amount, posted_amount,
                           usage_day, status, created_at)
        SELECT :record_id, :account_id, :terminal_id, :amount, 0, :day, 'held', :created_at
        FROM funds
    )
    SELECT EXISTS (SELECT FROM usage) AS within_limit, funds.ledger_balance,
           funds.available_balance
    FROM (VALUES (1)) AS one LEFT JOIN funds ON true
    """
)
_ORIGINAL_KINDS = [RequestKind.WITHDRAWAL.value, BLOCKED_ORIGINAL]
_ORIGINAL_SENT_AT = (
    sa.select(HostTransaction)
    .where(
        HostTransaction.terminal_id == sa.bindparam("terminal_id"),
        HostTransaction.stan == sa.bindparam("stan"),
        HostTransaction.transmitted_at == sa.bindparam("transmitted_at"),
        HostTransaction.kind.in_(_ORIGINAL_KINDS),
        HostTransaction.id != sa.bindparam("record_id"),
    )
    .order_by(HostTransaction.id.desc())
    .limit(1)
)
_ORIGINAL_RECENT = (
    sa.select(HostTransaction)
    .where(
        HostTransaction.terminal_id == sa.bindparam("terminal_id"),
        HostTransaction.stan == sa.bindparam("stan"),
        HostTransaction.business_date.in_(sa.bindparam("days", expanding=True)),
        HostTransaction.kind.in_(_ORIGINAL_KINDS),
        HostTransaction.id != sa.bindparam("record_id"),
    )
    .order_by(HostTransaction.business_date.desc())
    .limit(1)
)
_HOLD_LOCKED = (
    sa.select(Hold).where(Hold.host_transaction_id == sa.bindparam("original_id")).with_for_update()
)
_SETTLEMENT_ACCOUNT = sa.select(Terminal.settlement_account_id).where(
    Terminal.terminal_id == sa.bindparam("terminal_id")
)


class Declined(Exception):
    """A request the bank refuses; whatever it had written for the request is undone first."""

    def __init__(self, code: ResponseCode, message: str = "") -> None:
        super().__init__(message or code.name)
        self.code = code
        self.message = message


def _over_limit(kind: str) -> Declined:
    return Declined(ResponseCode.EXCEEDS_WITHDRAWAL_LIMIT, f"over the daily {kind} limit")


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ----- what one request needs ------------------------------------------------------------------


@dataclass
class _Record:
    """The host transaction row this request claimed, filled in as the answer takes shape."""

    id: int
    business_date: dt.date
    card_id: int | None = None
    account_id: int | None = None
    amount: int = 0
    original_id: int | None = None
    kind: str | None = None  # set when the request turns out to be a repeat (REPEAT_KINDS)


@dataclass(frozen=True)
class _LinkedAccount:
    id: int
    number: str
    account_type: str
    is_default: bool
    currency: str


def _utc(at: dt.datetime) -> dt.datetime:
    return (at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def _business_date(request: HostRequest) -> dt.date:
    return _utc(request.transmitted_at).date()


def _printable(text: object, longest: int) -> bool:
    return isinstance(text, str) and 0 < len(text) <= longest and all(" " <= c <= "~" for c in text)


def _digits(text: object, length: int) -> bool:
    return isinstance(text, str) and len(text) == length and text.isascii() and text.isdigit()


def _shape_problem(request: HostRequest) -> str | None:
    """Why a request cannot be served at all (answered 30), or None."""
    if not isinstance(request.kind, RequestKind):
        return "unknown request kind"
    # Checked before any database access: a NUL byte or a stray character never reaches SQL.
    if not _digits(request.stan, 6):
        return "the STAN must be 6 digits"
    if not is_terminal_id(request.terminal_id):
        return "the terminal id must be 8 printable ASCII characters"
    if not isinstance(request.transmitted_at, dt.datetime):
        return "no transmission time"
    if not _digits(request.currency, 3):
        return "the currency must be 3 digits"
    if request.expiry is not None and not _digits(request.expiry, 4):
        return "the expiry must be 4 digits (YYMM)"
    for name in ("from_account", "to_account"):
        value = getattr(request, name)
        if value is not None and not _printable(value, 34):
            return f"{name} must be 1 to 34 printable ASCII characters"
    if request.original_transmitted_at is not None and not isinstance(
        request.original_transmitted_at, dt.datetime
    ):
        return "the original transmission time must be a time"
    for name in ("amount", "dispensed_amount"):
        value = getattr(request, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            return f"{name} must be whole cents"
        if value is not None and value < 0:
            return f"{name} must not be negative"
    if request.kind in CARD_KINDS:
        if request.pin_block is None or request.pin_block_format is None:
            return "a card request needs a PIN block"
        if request.pin_block_format not in pin_unit.SUPPORTED_FORMATS:
            return f"PIN block format {request.pin_block_format} is not supported"
        if request.kind is RequestKind.PIN_CHANGE and request.new_pin_block is None:
            return "a PIN change needs the new PIN block"
        ksn_bytes = dukpt.AES_KSN_BYTES if request.pin_block_format == 4 else dukpt.TDES_KSN_BYTES
        for name in ("pin_ksn", "new_pin_ksn"):
            ksn = getattr(request, name)
            if ksn is not None and len(ksn) != ksn_bytes:
                return f"{name} must be {ksn_bytes} bytes for format {request.pin_block_format}"
        if request.new_pin_block is not None and (request.pin_ksn is None) != (
            request.new_pin_ksn is None
        ):
            return "the old and new PIN blocks must both be under DUKPT or both under fixed keys"
    if request.kind in ADVICE_KINDS and not _digits(request.original_stan, 6):
        return "a completion or reversal needs the original STAN (6 digits)"
    return None


def _response_to_json(response: HostResponse) -> dict[str, Any]:
    return {
        "response_code": response.response_code.value,
        "stan": response.stan,
        "retrieval_reference": response.retrieval_reference,
        "approval_code": response.approval_code,
        "ledger_balance": response.ledger_balance,
        "available_balance": response.available_balance,
        "statement": [
            {
                "posted_at": line.posted_at.isoformat(),
                "description": line.description,
                "amount": line.amount,
                "balance_after": line.balance_after,
            }
            for line in response.statement
        ],
        "message": response.message,
    }


def _response_from_json(data: dict[str, Any]) -> HostResponse:
    return HostResponse(
        response_code=ResponseCode(data["response_code"]),
        stan=data["stan"],
        retrieval_reference=data["retrieval_reference"],
        approval_code=data["approval_code"],
        ledger_balance=data["ledger_balance"],
        available_balance=data["available_balance"],
        statement=tuple(
            StatementLine(
                posted_at=dt.datetime.fromisoformat(line["posted_at"]),
                description=line["description"],
                amount=line["amount"],
                balance_after=line["balance_after"],
            )
            for line in data["statement"]
        ),
        message=data["message"],
    )


class Bank:
    """The authorisation service. Thread-safe: every call opens its own session."""

    def __init__(self, engine: sa.Engine, settings: Settings, clock: Clock | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.clock: Clock = clock or _utc_now
        self._digest_key = crypto_keys.derive_key(settings, "request-digest")
        # PIN blocks bcrypt found right, for one session timeout: one bcrypt per customer session.
        self.verified_pins = pin_unit.VerifiedPins(
            settings, dt.timedelta(seconds=settings.session_timeout_seconds)
        )

    # ----- entry point ------------------------------------------------------------------------

    def handle(self, request: HostRequest) -> HostResponse:
        """Answer a request. Never raises: bad input and failures get a response code."""
        stan = request.stan if isinstance(request.stan, str) else ""
        try:
            problem = _shape_problem(request)
            if problem is not None:
                return HostResponse(ResponseCode.FORMAT_ERROR, stan, message=problem)
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    return self._handle_once(request)
                except DBAPIError as err:
                    # A pooled connection the database closed (a restart) failed before anything
                    # was committed; the pool has dropped it, so the request runs again.
                    sqlstate = getattr(err.orig, "sqlstate", None)
                    cause = "connection lost" if err.connection_invalidated else sqlstate
                    if attempt == ATTEMPTS or not (
                        err.connection_invalidated or sqlstate in RETRY_SQLSTATES
                    ):
                        raise
                    log.info("%s stan=%s: %s, trying again", request.terminal_id, stan, cause)
        except Exception:
            log.exception("%s stan=%s: the bank failed", request.terminal_id, stan)
        return HostResponse(ResponseCode.SYSTEM_MALFUNCTION, stan, message="bank failure")

    def _now(self) -> dt.datetime:
        now = self.clock()
        if now.tzinfo is None:
            raise ValueError("the bank's clock must return an aware datetime")
        return now.astimezone(dt.UTC)

    def _handle_once(self, request: HostRequest) -> HostResponse:
        now = self._now()
        with Session(self.engine) as session, session.begin():
            terminal = session.scalar(_TERMINAL, {"terminal_id": request.terminal_id})
            if terminal is None:
                return HostResponse(
                    ResponseCode.SECURITY_VIOLATION, request.stan, message="unknown terminal"
                )
            if request.kind in NETWORK_KINDS:
                return self._network(session, request, terminal, now)
            claimed = self._claim(session, request, now)
            if isinstance(claimed, HostResponse):
                return claimed
            response = self._dispatch(session, request, terminal, claimed, now)
            return self._finish(session, claimed, response)

    # ----- idempotency --------------------------------------------------------------------------

    def _digest(self, request: HostRequest) -> bytes:
        """What makes a resend "the same request": every field the ATM sent.

        An ATM resends a request byte for byte (same PIN block, same field 7 time); a STAN
        reused after the ATM lost its state comes with another time or PIN block, and must not
        be answered with the first request's answer. Only this keyed digest is stored.
        """

        def time(at: dt.datetime | None) -> str:
            return "" if at is None else _utc(at).isoformat()

        def octets(value: bytes | None) -> str:
            return "" if value is None else value.hex()

        parts = (
            request.kind.value,
            time(request.transmitted_at),
            request.pan or "",
            request.expiry or "",
            str(request.amount),
            request.currency,
            request.from_account or "",
            request.to_account or "",
            request.original_stan or "",
            time(request.original_transmitted_at),
            "" if request.dispensed_amount is None else str(request.dispensed_amount),
            "" if request.pin_block_format is None else str(request.pin_block_format),
            octets(request.pin_block),
            octets(request.pin_ksn),
            octets(request.new_pin_block),
            octets(request.new_pin_ksn),
        )
        return hmac.new(self._digest_key, "\x1f".join(parts).encode(), hashlib.sha256).digest()

    def _claim(
        self, session: Session, request: HostRequest, now: dt.datetime
    ) -> _Record | HostResponse:
        """Claim (terminal, STAN, business date), or the first answer if it is already taken."""
        business_date = _business_date(request)
        digest = self._digest(request)
        record_id = (
            session.connection()
            .execute(
                _CLAIM,
                {
                    "terminal_id": request.terminal_id,
                    "stan": request.stan,
                    "business_date": business_date,
                    "kind": request.kind.value,
                    "request_digest": digest,
                    "transmitted_at": request.transmitted_at,
                    "received_at": now,
                    "amount": request.amount,
                },
            )
            .scalar()
        )
        if record_id is not None:
            return _Record(record_id, business_date)
        first = session.execute(
            sa.select(HostTransaction.request_digest, HostTransaction.response).where(
                HostTransaction.terminal_id == request.terminal_id,
                HostTransaction.stan == request.stan,
                HostTransaction.business_date == business_date,
            )
        ).one()
        if first.request_digest is not None and not hmac.compare_digest(
            first.request_digest, digest
        ):
            return HostResponse(
                ResponseCode.DUPLICATE_TRANSMISSION,
                request.stan,
                message="STAN already used today for another request",
            )
        if first.response is None:
            raise RuntimeError("a host transaction was committed without its answer")
        return _response_from_json(first.response)

    def _finish(self, session: Session, record: _Record, response: HostResponse) -> HostResponse:
        reference = f"{record.id:012d}"
        approval = f"A{record.id % 100000:05d}" if response.approved else ""
        response = dataclasses.replace(
            response, retrieval_reference=reference, approval_code=approval
        )
        session.connection().execute(
            _FINISH,
            {
                "record_id": record.id,
                "response_code": response.response_code.value,
                "retrieval_reference": reference,
                "response": _response_to_json(response),
                "card_id": record.card_id,
                "account_id": record.account_id,
                "amount": record.amount,
                "original_id": record.original_id,
                "repeat_kind": record.kind,
            },
        )
        return response

    # ----- network messages -------------------------------------------------------------------

    def _network(
        self, session: Session, request: HostRequest, terminal: Terminal, now: dt.datetime
    ) -> HostResponse:
        """Sign-on and echo: answered without claiming their STAN (nothing to replay)."""
        if request.kind is RequestKind.ECHO:
            return HostResponse(ResponseCode.APPROVED, request.stan)
        terminal.last_sign_on_at = now
        return HostResponse(
            ResponseCode.APPROVED,
            request.stan,
            message="signed on",
            last_stan=self.last_stan(session, terminal.terminal_id),
        )

    @staticmethod
    def last_stan(session: Session, terminal_id: str) -> str | None:
        """The STAN of the newest request the host recorded from a terminal, any day, or None.

        A blocked original is left out: its STAN came inside a reversal, not as a request.
        """
        return session.scalar(
            sa.select(HostTransaction.stan)
            .where(
                HostTransaction.terminal_id == terminal_id,
                HostTransaction.kind != BLOCKED_ORIGINAL,
            )
            .order_by(HostTransaction.id.desc())
            .limit(1)
        )

    # ----- dispatch ---------------------------------------------------------------------------

    def _dispatch(
        self,
        session: Session,
        request: HostRequest,
        terminal: Terminal,
        record: _Record,
        now: dt.datetime,
    ) -> HostResponse:
        kind = request.kind
        if kind is RequestKind.REVERSAL:
            return self._reversal(session, request, record, now)
        try:
            if kind is RequestKind.COMPLETION:
                with session.begin_nested():
                    return self._completion(session, request, record, now)
            keys = crypto_keys.open_terminal_keys(self.settings, terminal)
            card = self._authenticate(session, request, terminal, keys, record, now)
            # Only a transfer makes several writes a decline must undo; the others read, write
            # once, or (a withdrawal) undo their one write themselves: no savepoint round trips.
            if kind is RequestKind.BALANCE:
                return self._balance(session, request, card)
            if kind is RequestKind.WITHDRAWAL:
                return self._withdrawal(session, request, card, record, now)
            if kind is RequestKind.MINI_STATEMENT:
                return self._mini_statement(session, request, card, record)
            if kind is RequestKind.PIN_CHANGE:
                return self._pin_change(session, request, card, keys)
            with session.begin_nested():
                return self._transfer(session, request, card, record, now)
        except Declined as declined:
            return HostResponse(declined.code, request.stan, message=declined.message)
        except InsufficientFunds:
            return HostResponse(
                ResponseCode.INSUFFICIENT_FUNDS, request.stan, message="insufficient funds"
            )

    # ----- card and PIN -----------------------------------------------------------------------

    def _authenticate(
        self,
        session: Session,
        request: HostRequest,
        terminal: Terminal,
        keys: crypto_keys.TerminalKeys,
        record: _Record,
        now: dt.datetime,
    ) -> Card:
        """The card, once its status, expiry, lockout and PIN pass; else Declined."""
        pan = request.pan or ""
        if not (12 <= len(pan) <= 19 and pan.isascii() and pan.isdigit()):
            raise Declined(ResponseCode.INVALID_CARD, "no valid card number")
        # The card row stays locked until the answer is committed: the PIN checks of one card
        # run one after another, each seeing the count and lock the previous one left, so at
        # most MAX_FAILED_PIN_ATTEMPTS guesses are judged per lockout however many arrive.
        card = session.scalar(
            _CARD_LOCKED, {"pan_hash": crypto_keys.pan_digest(self.settings, pan)}
        )
        if card is None:
            raise Declined(ResponseCode.INVALID_CARD, "unknown card")
        record.card_id = card.id
        if card.status == "captured":
            raise Declined(ResponseCode.LOST_OR_CAPTURED_CARD, "card captured")
        if card.status == "blocked":
            raise Declined(ResponseCode.TRANSACTION_NOT_PERMITTED, "card blocked")
        this_month = now.strftime("%y%m")
        presented = request.expiry or card.expiry
        if presented < this_month or card.expiry < this_month:
            raise Declined(ResponseCode.EXPIRED_CARD, "card expired")
        if presented != card.expiry:
            raise Declined(ResponseCode.INVALID_CARD, "expiry does not match the card")
        if card.locked_until is not None and now < card.locked_until:
            raise Declined(ResponseCode.PIN_TRIES_EXCEEDED, "card locked after wrong PINs")
        assert request.pin_block is not None and request.pin_block_format is not None
        for ksn in (request.pin_ksn, request.new_pin_ksn):
            if ksn is not None:
                self._accept_ksn(session, terminal, ksn)
        if card.failed_pin_attempts or card.status == "locked":
            # A wrong PIN was counted since (here or in another host process), or the card was
            # locked: the next right PIN is hashed again.
            self.verified_pins.forget(card.id)
        try:
            correct = pin_unit.verify_pin_block(
                self.settings,
                keys,
                request.pin_block,
                request.pin_block_format,
                pan,
                card.pin_hash,
                request.pin_ksn,
                memory=self.verified_pins,
                card_id=card.id,
                now=now,
            )
        except pin_unit.MissingKeyError as err:
            raise Declined(ResponseCode.SECURITY_VIOLATION, str(err)) from err
        except pin_unit.PinBlockError:
            correct = False  # a block that does not decipher counts as a wrong PIN
        if not correct:
            self.verified_pins.forget(card.id)
            self._count_wrong_pin(session, card, now)
        if card.failed_pin_attempts or card.status == "locked":
            session.execute(
                sa.update(Card)
                .where(Card.id == card.id)
                .values(failed_pin_attempts=0, locked_until=None, status="active")
                .execution_options(synchronize_session=False)
            )
        return card

    @staticmethod
    def _accept_ksn(session: Session, terminal: Terminal, ksn: bytes) -> None:
        """Record the newest KSN of the terminal; an older one is a replay.

        The newest one itself is taken again: an ATM sends the PIN block it holds with each
        request of one customer session (verification, then the transaction).
        """
        key_id, counter = dukpt.split_ksn(ksn)
        accepted = session.scalar(
            sa.update(Terminal)
            .where(
                Terminal.id == terminal.id,
                sa.or_(
                    Terminal.dukpt_key_id.is_(None),
                    Terminal.dukpt_key_id != key_id,
                    Terminal.dukpt_counter <= counter,
                ),
            )
            .values(dukpt_key_id=key_id, dukpt_counter=counter)
            .returning(Terminal.id)
            .execution_options(synchronize_session=False)
        )
        if accepted is None:
            raise Declined(
                ResponseCode.SECURITY_VIOLATION, "DUKPT key serial number used before (replay)"
            )

    def _count_wrong_pin(self, session: Session, card: Card, now: dt.datetime) -> None:
        limit = self.settings.max_failed_pin_attempts
        until = now + dt.timedelta(seconds=self.settings.lockout_duration_seconds)
        lock_over = sa.and_(Card.locked_until.is_not(None), Card.locked_until <= now)
        # A lockout that has run out starts the count again; one UPDATE keeps racing tries exact.
        count = sa.case((lock_over, 1), else_=Card.failed_pin_attempts + 1)
        attempts = session.scalar(
            sa.update(Card)
            .where(Card.id == card.id)
            .values(
                failed_pin_attempts=count,
                locked_until=sa.case(
                    (count >= limit, until), (lock_over, None), else_=Card.locked_until
                ),
                status=sa.case((count >= limit, "locked"), else_=Card.status),
            )
            .returning(Card.failed_pin_attempts)
            .execution_options(synchronize_session=False)
        )
        assert attempts is not None
        if attempts >= limit:
            log.warning(
                "card %s locked until %s after %d wrong PINs",
                card.masked_pan,
                until.isoformat(timespec="seconds"),
                attempts,
            )
            raise Declined(ResponseCode.PIN_TRIES_EXCEEDED, "too many wrong PINs: card locked")
        raise Declined(ResponseCode.INCORRECT_PIN, "wrong PIN")

    # ----- accounts ---------------------------------------------------------------------------

    def _linked_accounts(self, session: Session, card: Card) -> list[_LinkedAccount]:
        rows = session.connection().execute(_LINKED_ACCOUNTS, {"card_id": card.id})
        return [_LinkedAccount(*row) for row in rows]

    def _resolve(
        self, session: Session, card: Card, wanted: str | None, *, role: str = "account"
    ) -> _LinkedAccount:
        for account in self._linked_accounts(session, card):
            if (
                (wanted is None and account.is_default)
                or wanted == account.account_type
                or wanted == account.number
            ):
                return account
        raise Declined(ResponseCode.NO_SUCH_ACCOUNT, f"the card has no such {role}")

    @staticmethod
    def _balances(session: Session, account_id: int) -> tuple[int, int]:
        row = session.connection().execute(_BALANCES, {"account_id": account_id}).one()
        return row.ledger_balance, row.available_balance

    def _use_limit(
        self, session: Session, account_id: int, day: dt.date, kind: str, amount: int, limit: int
    ) -> None:
        """Count `amount` against the account's daily limit, atomically, or Declined(61)."""
        if amount > limit:
            raise _over_limit(kind)
        used = (
            session.connection()
            .execute(
                _USE_LIMIT,
                {
                    "account_id": account_id,
                    "day": day,
                    "kind": kind,
                    "used": amount,
                    "limit": limit,
                },
            )
            .scalar()
        )
        if used is None:
            raise _over_limit(kind)

    @staticmethod
    def _release_limit(
        session: Session, account_id: int, day: dt.date, kind: str, amount: int
    ) -> None:
        if amount:
            session.execute(
                sa.update(DailyUsage)
                .where(
                    DailyUsage.account_id == account_id,
                    DailyUsage.day == day,
                    DailyUsage.kind == kind,
                )
                .values(used=DailyUsage.used - amount)
                .execution_options(synchronize_session=False)
            )

    # ----- card requests ----------------------------------------------------------------------

    def _balance(self, session: Session, request: HostRequest, card: Card) -> HostResponse:
        account = self._resolve(session, card, request.from_account)
        ledger, available = self._balances(session, account.id)
        return HostResponse(
            ResponseCode.APPROVED, request.stan, ledger_balance=ledger, available_balance=available
        )

    def _withdrawal(
        self, session: Session, request: HostRequest, card: Card, record: _Record, now: dt.datetime
    ) -> HostResponse:
        account = self._resolve(session, card, request.from_account)
        record.account_id = account.id
        amount = request.amount
        if amount <= 0:
            raise Declined(ResponseCode.INVALID_AMOUNT, "the amount must be above zero")
        if request.currency != account.currency:
            raise Declined(ResponseCode.TRANSACTION_NOT_PERMITTED, "currency not served")
        limit = self.settings.daily_withdrawal_limit
        if amount > limit:
            raise _over_limit("withdrawal")
        day = now.date()
        row = (
            session.connection()
            .execute(
                _HOLD_WITHDRAWAL,
                {
                    "account_id": account.id,
                    "day": day,
                    "amount": amount,
                    "limit": limit,
                    "record_id": record.id,
                    "terminal_id": request.terminal_id,
                    "created_at": now,
                },
            )
            .one()
        )
        if not row.within_limit:
            raise _over_limit("withdrawal")
        if row.ledger_balance is None:
            self._release_limit(session, account.id, day, "withdrawal", amount)
            raise Declined(ResponseCode.INSUFFICIENT_FUNDS, "insufficient funds")
        record.amount = amount
        return HostResponse(
            ResponseCode.APPROVED,
            request.stan,
            ledger_balance=row.ledger_balance,
            available_balance=row.available_balance,
        )

    def _transfer(
        self, session: Session, request: HostRequest, card: Card, record: _Record, now: dt.datetime
    ) -> HostResponse:
        source = self._resolve(session, card, request.from_account, role="source account")
        record.account_id = source.id
        if request.to_account is None:
            raise Declined(ResponseCode.NO_SUCH_ACCOUNT, "no destination account")
        target = self._resolve(session, card, request.to_account, role="destination account")
        if target.id == source.id:
            raise Declined(ResponseCode.INVALID_TRANSACTION, "same source and destination")
        amount = request.amount
        if amount <= 0:
            raise Declined(ResponseCode.INVALID_AMOUNT, "the amount must be above zero")
        if not request.currency == source.currency == target.currency:
            raise Declined(ResponseCode.TRANSACTION_NOT_PERMITTED, "currency not served")
        self._use_limit(
            session, source.id, now.date(), "transfer", amount, self.settings.daily_transfer_limit
        )
        postings = [
            Posting(source.id, -amount, f"Transfer to {target.number}"),
            Posting(target.id, amount, f"Transfer from {source.number}"),
        ]
        balances = post_entry(
            session,
            posted_at=now,
            kind="transfer",
            description=f"Transfer {source.number} to {target.number}",
            postings=sorted(postings, key=lambda p: p.account_id),  # one lock order: no deadlock
            host_transaction_id=record.id,
        )
        record.amount = amount
        ledger, available = balances[source.id]
        return HostResponse(
            ResponseCode.APPROVED, request.stan, ledger_balance=ledger, available_balance=available
        )

    def _mini_statement(
        self, session: Session, request: HostRequest, card: Card, record: _Record
    ) -> HostResponse:
        account = self._resolve(session, card, request.from_account)
        record.account_id = account.id
        rows = session.execute(
            ledger_lines(account.id).order_by(JournalLine.id.desc()).limit(MINI_STATEMENT_LINES)
        ).all()
        lines = tuple(StatementLine(*row) for row in reversed(rows))
        ledger, available = self._balances(session, account.id)
        return HostResponse(
            ResponseCode.APPROVED,
            request.stan,
            ledger_balance=ledger,
            available_balance=available,
            statement=lines,
        )

    def _pin_change(
        self, session: Session, request: HostRequest, card: Card, keys: crypto_keys.TerminalKeys
    ) -> HostResponse:
        assert request.new_pin_block is not None and request.pin_block_format is not None
        try:
            new_hash = pin_unit.hash_pin_block(
                self.settings,
                keys,
                request.new_pin_block,
                request.pin_block_format,
                request.pan or "",
                request.new_pin_ksn,
            )
        except pin_unit.PinBlockError as err:
            raise Declined(
                ResponseCode.INVALID_TRANSACTION, "the new PIN block is invalid"
            ) from err
        session.execute(
            sa.update(Card)
            .where(Card.id == card.id)
            .values(pin_hash=new_hash)
            .execution_options(synchronize_session=False)
        )
        self.verified_pins.forget(card.id)  # the old PIN's blocks (the new hash refuses them too)
        log.info("card %s: PIN changed", card.masked_pan)
        return HostResponse(ResponseCode.APPROVED, request.stan, message="PIN changed")

    # ----- completion and reversal ------------------------------------------------------------

    def _original(
        self, session: Session, request: HostRequest, record: _Record
    ) -> HostTransaction | None:
        """The withdrawal a completion or reversal names.

        With field 90's original transmission time: the one with that STAN and time from the
        same terminal, however many days ago (a late advice still finds its hold). Without it:
        the STAN of the same terminal today or yesterday.
        """
        names = {
            "terminal_id": request.terminal_id,
            "stan": request.original_stan,
            "record_id": record.id,
        }
        if request.original_transmitted_at is not None:
            return session.scalar(
                _ORIGINAL_SENT_AT, {**names, "transmitted_at": request.original_transmitted_at}
            )
        days = [record.business_date, record.business_date - dt.timedelta(days=1)]
        return session.scalar(_ORIGINAL_RECENT, {**names, "days": days})

    @staticmethod
    def _hold_of(session: Session, original: HostTransaction) -> Hold | None:
        return session.scalar(_HOLD_LOCKED, {"original_id": original.id})

    def _settle(
        self,
        session: Session,
        hold: Hold,
        record: _Record,
        request: HostRequest,
        posted: int,
        now: dt.datetime,
    ) -> None:
        """Post `posted` cents of a held withdrawal and release the rest of the hold."""
        release = hold.amount - posted
        self._release_limit(session, hold.account_id, hold.usage_day, "withdrawal", release)
        if posted:
            settlement = self._settlement_account(session, hold.terminal_id)
            post_entry(
                session,
                posted_at=now,
                kind="withdrawal",
                description=f"ATM withdrawal at {hold.terminal_id}",
                postings=[
                    Posting(hold.account_id, -posted, f"ATM {hold.terminal_id}", release),
                    Posting(settlement, posted, f"Cash out, account {hold.account_id}"),
                ],
                host_transaction_id=record.id,
            )
        elif release:
            session.execute(
                sa.update(Account)
                .where(Account.id == hold.account_id)
                .values(available_balance=Account.available_balance + release)
                .execution_options(synchronize_session=False)
            )
        hold.posted_amount = posted
        hold.settled_at = now

    @staticmethod
    def _settlement_account(session: Session, terminal_id: str) -> int:
        account = (
            session.connection().execute(_SETTLEMENT_ACCOUNT, {"terminal_id": terminal_id}).scalar()
        )
        assert account is not None
        return account

    def _advice_response(
        self, session: Session, request: HostRequest, hold: Hold, message: str
    ) -> HostResponse:
        ledger, available = self._balances(session, hold.account_id)
        return HostResponse(
            ResponseCode.APPROVED,
            request.stan,
            ledger_balance=ledger,
            available_balance=available,
            message=message,
        )

    def _completion(
        self, session: Session, request: HostRequest, record: _Record, now: dt.datetime
    ) -> HostResponse:
        original = self._original(session, request, record)
        hold = None if original is None else self._hold_of(session, original)
        if original is None or hold is None:
            raise Declined(ResponseCode.ORIGINAL_NOT_FOUND, "no approved withdrawal with that STAN")
        record.original_id = original.id
        record.account_id = hold.account_id
        if hold.status == "completed":
            record.kind = REPEAT_KINDS[RequestKind.COMPLETION]
            return self._advice_response(session, request, hold, "already completed")
        if hold.status == "reversed":
            raise Declined(ResponseCode.INVALID_TRANSACTION, "the withdrawal was reversed")
        wanted = (
            request.dispensed_amount if request.dispensed_amount is not None else request.amount
        )
        posted = min(wanted, hold.amount)
        self._settle(session, hold, record, request, posted, now)
        hold.status = "completed"
        record.amount = posted
        note = "" if wanted <= hold.amount else "capped at the authorised amount"
        return self._advice_response(session, request, hold, note)

    def _reversal(
        self, session: Session, request: HostRequest, record: _Record, now: dt.datetime
    ) -> HostResponse:
        original = self._original(session, request, record)
        if original is None:
            if self._block_original(session, request, record, now):
                record.amount = request.amount
                return HostResponse(
                    ResponseCode.ORIGINAL_NOT_FOUND,
                    request.stan,
                    message="original not found; it will be refused if it arrives",
                )
            # The original was being written while we looked: it exists now, reverse it.
            original = self._original(session, request, record)
            if original is None:
                return HostResponse(
                    ResponseCode.ORIGINAL_NOT_FOUND,
                    request.stan,
                    message="that STAN belongs to another kind of request",
                )
        record.original_id = original.id
        if original.kind == BLOCKED_ORIGINAL:
            return HostResponse(
                ResponseCode.ORIGINAL_NOT_FOUND, request.stan, message="already reversed"
            )
        hold = self._hold_of(session, original)
        if hold is None:
            return HostResponse(
                ResponseCode.APPROVED, request.stan, message="the original was declined: no hold"
            )
        record.account_id = hold.account_id
        dispensed = min(request.dispensed_amount or 0, hold.amount)
        if hold.status == "reversed":
            record.kind = REPEAT_KINDS[RequestKind.REVERSAL]
            return self._advice_response(session, request, hold, "already reversed")
        if hold.status == "held":
            self._settle(session, hold, record, request, dispensed, now)
        elif dispensed < hold.posted_amount:
            refund = hold.posted_amount - dispensed
            self._release_limit(session, hold.account_id, hold.usage_day, "withdrawal", refund)
            post_entry(
                session,
                posted_at=now,
                kind="reversal",
                description=f"ATM reversal at {hold.terminal_id}",
                postings=[
                    Posting(hold.account_id, refund, f"ATM {hold.terminal_id} reversal"),
                    Posting(
                        self._settlement_account(session, hold.terminal_id),
                        -refund,
                        f"Cash back, account {hold.account_id}",
                    ),
                ],
                host_transaction_id=record.id,
            )
            hold.posted_amount = dispensed
            hold.settled_at = now
        hold.status = "reversed"
        record.amount = hold.amount - hold.posted_amount
        return self._advice_response(session, request, hold, "reversed")

    def _block_original(
        self, session: Session, request: HostRequest, record: _Record, now: dt.datetime
    ) -> bool:
        """Record a reversed STAN whose request never came, so a late arrival is refused.

        False when the original appeared meanwhile (its key is taken).
        """
        assert request.original_stan is not None
        refusal = HostResponse(
            ResponseCode.INVALID_TRANSACTION,
            request.original_stan,
            message="this request was reversed before it arrived",
        )
        if request.original_transmitted_at is not None:
            # Field 90 tells when the original was sent: block exactly that key.
            keys = [(_utc(request.original_transmitted_at).date(), request.original_transmitted_at)]
        else:
            # The original was sent at or before its reversal: today, or yesterday near midnight.
            keys = [
                (record.business_date - dt.timedelta(days=days_back), request.transmitted_at)
                for days_back in (0, 1)
            ]
        for index, (business_date, transmitted_at) in enumerate(keys):
            inserted = session.scalar(
                pg_insert(HostTransaction)
                .values(
                    terminal_id=request.terminal_id,
                    stan=request.original_stan,
                    business_date=business_date,
                    kind=BLOCKED_ORIGINAL,
                    request_digest=None,
                    transmitted_at=transmitted_at,
                    received_at=now,
                    amount=request.amount,
                    original_id=record.id,
                    response_code=refusal.response_code.value,
                    response=_response_to_json(refusal),
                )
                .on_conflict_do_nothing(constraint="uq_host_transactions_idempotency")
                .returning(HostTransaction.id)
            )
            if index == 0 and inserted is None:
                return False
        return True
