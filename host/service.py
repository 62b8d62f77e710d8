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

import psycopg
import sqlalchemy as sa
from psycopg.types.json import Jsonb
from sqlalchemy.exc import DBAPIError

from config.settings import Settings
from host import crypto_keys, dukpt, pin_unit
from host.driver_sql import DriverTransaction
from host.iso_mapping import is_terminal_id
from host.ledger import InsufficientFunds, Posting, ledger_lines, post_entry
from host.messages import HostRequest, HostResponse, RequestKind, ResponseCode, StatementLine
from host.models import JournalLine

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


# ----- the statements of every request ----------------------------------------------------------
# Plain SQL run on the driver (DriverTransaction): SQLAlchemy's Python per statement cost more
# than the database needs to run them.

_TERMINAL_COLUMNS = """id, terminal_id, tmk_sealed, pin_key_tdes_sealed, pin_key_aes_sealed,
    mac_key_sealed, dukpt_bdk_tdes_sealed, dukpt_bdk_aes_sealed"""
_TERMINAL = f"""
    SELECT {_TERMINAL_COLUMNS} FROM terminals WHERE terminal_id = %(terminal_id)s
"""  # noqa: S608 (built from constants of this module only)
_SIGNED_ON = "UPDATE terminals SET last_sign_on_at = %(now)s WHERE id = %(id)s"
_LAST_STAN = f"""
    SELECT stan FROM host_transactions
    WHERE terminal_id = %(terminal_id)s AND kind <> '{BLOCKED_ORIGINAL}'
    ORDER BY id DESC LIMIT 1
"""  # noqa: S608 (built from constants of this module only)
# A request's terminal, its claim of (terminal, STAN, business date) and, once claimed, its card
# (locked) with the card's linked accounts, each [id, number, account_type, is_default,
# currency]: one round trip instead of three. No row: an unknown terminal, nothing claimed; a
# null record_id: the STAN is taken (no card locked); null card columns: no such card (or none
# asked for, as a completion or reversal names no card).
_OPEN = f"""
    WITH terminal AS (
        SELECT {_TERMINAL_COLUMNS} FROM terminals WHERE terminal_id = %(terminal_id)s
    ), claim AS (
        INSERT INTO host_transactions (terminal_id, stan, business_date, kind, request_digest,
                                       transmitted_at, received_at, amount)
        SELECT terminal_id, %(stan)s, %(business_date)s, %(kind)s, %(request_digest)s,
               %(transmitted_at)s, %(received_at)s, %(amount)s
        FROM terminal
        ON CONFLICT ON CONSTRAINT uq_host_transactions_idempotency DO NOTHING
        RETURNING id
    ), card AS (
        SELECT c.id, c.masked_pan, c.expiry, c.pin_hash, c.failed_pin_attempts, c.locked_until,
               c.status,
               (SELECT coalesce(json_agg(json_build_array(a.id, a.number, ca.account_type,
                                                          ca.is_default, a.currency)
                                         ORDER BY a.id), '[]'::json)
                FROM accounts a JOIN card_accounts ca ON ca.account_id = a.id
                WHERE ca.card_id = c.id) AS accounts
        FROM cards c WHERE c.pan_hash = %(pan_hash)s AND EXISTS (SELECT FROM claim)
        FOR UPDATE OF c
    )
    SELECT terminal.*, (SELECT id FROM claim) AS record_id,
           card.id AS card_id, card.masked_pan, card.expiry, card.pin_hash,
           card.failed_pin_attempts, card.locked_until, card.status, card.accounts
    FROM terminal LEFT JOIN card ON true
"""  # noqa: S608 (built from constants of this module only)
_FIRST_ANSWER = """
    SELECT request_digest, response FROM host_transactions
    WHERE terminal_id = %(terminal_id)s AND stan = %(stan)s AND business_date = %(business_date)s
"""
_FINISH = """
    UPDATE host_transactions
    SET response_code = %(response_code)s, retrieval_reference = %(retrieval_reference)s,
        response = %(response)s, card_id = %(card_id)s, account_id = %(account_id)s,
        amount = %(amount)s, original_id = %(original_id)s,
        kind = coalesce(%(repeat_kind)s, kind)
    WHERE id = %(record_id)s
"""
# Newest KSN of the terminal or a replay: the newest itself is taken again (see _accept_ksn).
_ACCEPT_KSN = """
    UPDATE terminals SET dukpt_key_id = %(key_id)s, dukpt_counter = %(counter)s
    WHERE id = %(id)s AND (dukpt_key_id IS NULL OR dukpt_key_id <> %(key_id)s
                           OR dukpt_counter <= %(counter)s)
    RETURNING id
"""
# A lockout that has run out starts the count again; one UPDATE keeps racing tries exact.
_LOCK_OVER = "(locked_until IS NOT NULL AND locked_until <= %(now)s)"
_COUNT = f"(CASE WHEN {_LOCK_OVER} THEN 1 ELSE failed_pin_attempts + 1 END)"
_COUNT_WRONG_PIN = f"""
    UPDATE cards
    SET failed_pin_attempts = {_COUNT},
        locked_until = CASE WHEN {_COUNT} >= %(limit)s THEN %(until)s
                            WHEN {_LOCK_OVER} THEN NULL ELSE locked_until END,
        status = CASE WHEN {_COUNT} >= %(limit)s THEN 'locked' ELSE status END
    WHERE id = %(id)s
    RETURNING failed_pin_attempts
"""  # noqa: S608 (built from constants of this module only)
_PIN_RIGHT = """
    UPDATE cards SET failed_pin_attempts = 0, locked_until = NULL, status = 'active'
    WHERE id = %(id)s
"""
_NEW_PIN = "UPDATE cards SET pin_hash = %(pin_hash)s WHERE id = %(id)s"
_BALANCES = "SELECT ledger_balance, available_balance FROM accounts WHERE id = %(account_id)s"
_USE_LIMIT = """
    INSERT INTO daily_usage (account_id, day, kind, used)
    VALUES (%(account_id)s, %(day)s, %(kind)s, %(used)s)
    ON CONFLICT (account_id, day, kind) DO UPDATE
        SET used = daily_usage.used + excluded.used
        WHERE daily_usage.used + excluded.used <= %(limit)s
    RETURNING used
"""
_RELEASE_LIMIT = """
    UPDATE daily_usage SET used = used - %(amount)s
    WHERE account_id = %(account_id)s AND day = %(day)s AND kind = %(kind)s
"""
# A withdrawal's limit, hold and hold record in one statement: the funds are held only if the
# limit took the amount, and the hold row is written only if the funds were held. A limit taken
# with no funds behind it is given back by the caller (its row stays locked until commit).
_HOLD_WITHDRAWAL = """
    WITH usage AS (
        INSERT INTO daily_usage (account_id, day, kind, used)
        VALUES (%(account_id)s, %(day)s, 'withdrawal', %(amount)s)
        ON CONFLICT (account_id, day, kind) DO UPDATE
            SET used = daily_usage.used + excluded.used
            WHERE daily_usage.used + excluded.used <= %(limit)s
        RETURNING used
    ), funds AS (
        UPDATE accounts SET available_balance = available_balance - %(amount)s
        WHERE id = %(account_id)s AND available_balance >= %(amount)s
          AND EXISTS (SELECT FROM usage)
        RETURNING ledger_balance, available_balance
    ), hold AS (
        INSERT INTO holds (host_transaction_id, account_id, terminal_id, amount, posted_amount,
                           usage_day, status, created_at)
        SELECT %(record_id)s, %(account_id)s, %(terminal_id)s, %(amount)s, 0, %(day)s, 'held',
               %(created_at)s
        FROM funds
    )
    SELECT EXISTS (SELECT FROM usage) AS within_limit, funds.ledger_balance,
           funds.available_balance
    FROM (VALUES (1)) AS one LEFT JOIN funds ON true
"""
_RELEASE_FUNDS = """
    UPDATE accounts SET available_balance = available_balance + %(amount)s
    WHERE id = %(account_id)s
"""
_ORIGINAL = f"""
    SELECT id, kind FROM host_transactions
    WHERE terminal_id = %(terminal_id)s AND stan = %(stan)s
      AND kind IN ('{RequestKind.WITHDRAWAL.value}', '{BLOCKED_ORIGINAL}')
      AND id <> %(record_id)s
"""  # noqa: S608 (built from constants of this module only)
_ORIGINAL_SENT_AT = _ORIGINAL + " AND transmitted_at = %(transmitted_at)s ORDER BY id DESC LIMIT 1"
_ORIGINAL_RECENT = (
    _ORIGINAL + " AND business_date = ANY(%(days)s) ORDER BY business_date DESC LIMIT 1"
)
# The original found by one of the two above, with its hold (locked) and the settlement account
# of the hold's terminal, in one statement; the hold's columns are NULL when it has none.
_WITH_HOLD = """
    SELECT original.id, original.kind, hold.id AS hold_id, hold.account_id, hold.terminal_id,
           hold.amount, hold.posted_amount, hold.usage_day, hold.status, hold.settled_at,
           terminals.settlement_account_id
    FROM ({original}) AS original
    LEFT JOIN LATERAL (
        SELECT id, account_id, terminal_id, amount, posted_amount, usage_day, status, settled_at
        FROM holds WHERE host_transaction_id = original.id FOR UPDATE
    ) AS hold ON true
    LEFT JOIN terminals ON terminals.terminal_id = hold.terminal_id
"""
_ORIGINAL_SENT_AT_WITH_HOLD = _WITH_HOLD.format(original=_ORIGINAL_SENT_AT)
_ORIGINAL_RECENT_WITH_HOLD = _WITH_HOLD.format(original=_ORIGINAL_RECENT)
_SAVE_HOLD = """
    UPDATE holds SET posted_amount = %(posted_amount)s, status = %(status)s,
                     settled_at = %(settled_at)s
    WHERE id = %(id)s
"""
_BLOCK_ORIGINAL = """
    INSERT INTO host_transactions (terminal_id, stan, business_date, kind, request_digest,
                                   transmitted_at, received_at, amount, original_id,
                                   response_code, response)
    VALUES (%(terminal_id)s, %(stan)s, %(business_date)s, %(kind)s, NULL, %(transmitted_at)s,
            %(received_at)s, %(amount)s, %(original_id)s, %(response_code)s, %(response)s)
    ON CONFLICT ON CONSTRAINT uq_host_transactions_idempotency DO NOTHING
    RETURNING id
"""


class Declined(Exception):
    """A request the bank refuses; whatever it had written for the request is undone first."""

    def __init__(self, code: ResponseCode, message: str = "") -> None:
        super().__init__(message or code.name)
        self.code = code
        self.message = message


def _over_limit(kind: str) -> Declined:
    return Declined(ResponseCode.EXCEEDS_WITHDRAWAL_LIMIT, f"over the daily {kind} limit")


def _retry_cause(err: Exception) -> str | None:
    """Why a request that failed in the database may run again (nothing was committed), or None."""
    if isinstance(err, DBAPIError) and err.connection_invalidated:
        return "connection lost"
    sqlstate = getattr(err.orig if isinstance(err, DBAPIError) else err, "sqlstate", None)
    return sqlstate if sqlstate in RETRY_SQLSTATES else None


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


@dataclass
class _Hold:
    """A withdrawal's hold as read under its row lock; settling changes it, then saves it."""

    id: int
    account_id: int
    terminal_id: str
    amount: int
    posted_amount: int
    usage_day: dt.date
    status: str
    settled_at: dt.datetime | None
    settlement_account_id: int  # of the hold's terminal, where its cash is posted


@dataclass(frozen=True)
class _LinkedAccount:
    id: int
    number: str
    account_type: str
    is_default: bool
    currency: str


@dataclass(frozen=True)
class _Card:
    """The card a request names, as read (and locked) with the request's claim."""

    id: int
    masked_pan: str
    expiry: str
    pin_hash: str
    failed_pin_attempts: int
    locked_until: dt.datetime | None
    status: str
    accounts: list[list[Any]]  # [id, number, account_type, is_default, currency] each

    @classmethod
    def of(cls, row: Any) -> _Card:
        return cls(
            row.card_id,
            row.masked_pan,
            row.expiry,
            row.pin_hash,
            row.failed_pin_attempts,
            row.locked_until,
            row.status,
            row.accounts,
        )


def _card_number(request: HostRequest) -> str | None:
    pan = request.pan or ""
    return pan if 12 <= len(pan) <= 19 and pan.isascii() and pan.isdigit() else None


def _unknown_terminal(request: HostRequest) -> HostResponse:
    return HostResponse(ResponseCode.SECURITY_VIOLATION, request.stan, message="unknown terminal")


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
    """The authorisation service. Thread-safe: every call runs in its own transaction."""

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
                except (DBAPIError, psycopg.Error) as err:
                    # A pooled connection the database closed (a restart) failed before anything
                    # was committed; the pool has dropped it, so the request runs again.
                    cause = _retry_cause(err)
                    if attempt == ATTEMPTS or cause is None:
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
        # Every statement runs on the driver; the scenario bank's hook on the engine refuses
        # a stale transaction as it begins.
        with DriverTransaction.begin(self.engine) as tx:
            if request.kind in NETWORK_KINDS:
                terminal = tx.first(_TERMINAL, {"terminal_id": request.terminal_id})
                if terminal is None:
                    return _unknown_terminal(request)
                return self._network(tx, request, terminal, now)
            business_date = _business_date(request)
            digest = self._digest(request)
            opened = tx.first(_OPEN, self._open_parameters(request, business_date, digest, now))
            if opened is None:
                return _unknown_terminal(request)
            if opened.record_id is None:
                return self._first_answer(tx, request, business_date, digest)
            record = _Record(opened.record_id, business_date)
            card = None if opened.card_id is None else _Card.of(opened)
            response = self._dispatch(tx, request, opened, record, card, now)
            return self._finish(tx, record, response)

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

    def _open_parameters(
        self, request: HostRequest, business_date: dt.date, digest: bytes, now: dt.datetime
    ) -> dict[str, object]:
        """The claim of (terminal, STAN, business date), and the card a card request names."""
        pan = _card_number(request)
        return {
            "terminal_id": request.terminal_id,
            "stan": request.stan,
            "business_date": business_date,
            "kind": request.kind.value,
            "request_digest": digest,
            "transmitted_at": request.transmitted_at,
            "received_at": now,
            "amount": request.amount,
            "pan_hash": None
            if pan is None or request.kind in ADVICE_KINDS
            else crypto_keys.pan_digest(self.settings, pan),
        }

    def _first_answer(
        self, tx: DriverTransaction, request: HostRequest, business_date: dt.date, digest: bytes
    ) -> HostResponse:
        """The answer to the request that claimed this STAN first, if this one is its resend."""
        first = tx.one(
            _FIRST_ANSWER,
            {
                "terminal_id": request.terminal_id,
                "stan": request.stan,
                "business_date": business_date,
            },
        )
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

    def _finish(
        self, tx: DriverTransaction, record: _Record, response: HostResponse
    ) -> HostResponse:
        reference = f"{record.id:012d}"
        approval = f"A{record.id % 100000:05d}" if response.approved else ""
        response = dataclasses.replace(
            response, retrieval_reference=reference, approval_code=approval
        )
        # The answer is written and committed in one round trip: nothing follows it.
        tx.run_and_commit(
            _FINISH,
            {
                "record_id": record.id,
                "response_code": response.response_code.value,
                "retrieval_reference": reference,
                "response": Jsonb(_response_to_json(response)),
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
        self, tx: DriverTransaction, request: HostRequest, terminal: Any, now: dt.datetime
    ) -> HostResponse:
        """Sign-on and echo: answered without claiming their STAN (nothing to replay)."""
        if request.kind is RequestKind.ECHO:
            return HostResponse(ResponseCode.APPROVED, request.stan)
        tx.run(_SIGNED_ON, {"now": now, "id": terminal.id})
        # A blocked original is left out of the last STAN: its STAN came inside a reversal.
        last_stan: str | None = tx.scalar(_LAST_STAN, {"terminal_id": terminal.terminal_id})
        return HostResponse(
            ResponseCode.APPROVED, request.stan, message="signed on", last_stan=last_stan
        )

    # ----- dispatch ---------------------------------------------------------------------------

    def _dispatch(
        self,
        tx: DriverTransaction,
        request: HostRequest,
        terminal: Any,
        record: _Record,
        card: _Card | None,
        now: dt.datetime,
    ) -> HostResponse:
        kind = request.kind
        if kind is RequestKind.REVERSAL:
            return self._reversal(tx, request, record, now)
        try:
            if kind is RequestKind.COMPLETION:
                with tx.savepoint():
                    return self._completion(tx, request, record, now)
            keys = crypto_keys.open_terminal_keys(self.settings, terminal)
            card = self._authenticate(tx, request, terminal, keys, card, record, now)
            # Only a transfer makes several writes a decline must undo; the others read, write
            # once, or (a withdrawal) undo their one write themselves: no savepoint round trips.
            if kind is RequestKind.BALANCE:
                return self._balance(tx, request, card)
            if kind is RequestKind.WITHDRAWAL:
                return self._withdrawal(tx, request, card, record, now)
            if kind is RequestKind.MINI_STATEMENT:
                return self._mini_statement(tx, request, card, record)
            if kind is RequestKind.PIN_CHANGE:
                return self._pin_change(tx, request, card, keys)
            with tx.savepoint():
                return self._transfer(tx, request, card, record, now)
        except Declined as declined:
            return HostResponse(declined.code, request.stan, message=declined.message)
        except InsufficientFunds:
            return HostResponse(
                ResponseCode.INSUFFICIENT_FUNDS, request.stan, message="insufficient funds"
            )

    # ----- card and PIN -----------------------------------------------------------------------

    def _authenticate(
        self,
        tx: DriverTransaction,
        request: HostRequest,
        terminal: Any,
        keys: crypto_keys.TerminalKeys,
        card: _Card | None,
        record: _Record,
        now: dt.datetime,
    ) -> _Card:
        """The card (read and locked with the claim), once its status, expiry, lockout and PIN
        pass; else Declined."""
        pan = _card_number(request)
        if pan is None:
            raise Declined(ResponseCode.INVALID_CARD, "no valid card number")
        # The card row stays locked until the answer is committed: the PIN checks of one card
        # run one after another, each seeing the count and lock the previous one left, so at
        # most MAX_FAILED_PIN_ATTEMPTS guesses are judged per lockout however many arrive.
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
                self._accept_ksn(tx, terminal, ksn)
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
            self._count_wrong_pin(tx, card, now)
        if card.failed_pin_attempts or card.status == "locked":
            tx.run(_PIN_RIGHT, {"id": card.id})
        return card

    @staticmethod
    def _accept_ksn(tx: DriverTransaction, terminal: Any, ksn: bytes) -> None:
        """Record the newest KSN of the terminal; an older one is a replay.

        The newest one itself is taken again: an ATM sends the PIN block it holds with each
        request of one customer session (verification, then the transaction).
        """
        key_id, counter = dukpt.split_ksn(ksn)
        accepted = tx.scalar(_ACCEPT_KSN, {"id": terminal.id, "key_id": key_id, "counter": counter})
        if accepted is None:
            raise Declined(
                ResponseCode.SECURITY_VIOLATION, "DUKPT key serial number used before (replay)"
            )

    def _count_wrong_pin(self, tx: DriverTransaction, card: _Card, now: dt.datetime) -> None:
        limit = self.settings.max_failed_pin_attempts
        until = now + dt.timedelta(seconds=self.settings.lockout_duration_seconds)
        attempts: int = tx.scalar(
            _COUNT_WRONG_PIN, {"id": card.id, "now": now, "limit": limit, "until": until}
        )
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

    @staticmethod
    def _resolve(card: _Card, wanted: str | None, *, role: str = "account") -> _LinkedAccount:
        for account in (_LinkedAccount(*entry) for entry in card.accounts):
            if (
                (wanted is None and account.is_default)
                or wanted == account.account_type
                or wanted == account.number
            ):
                return account
        raise Declined(ResponseCode.NO_SUCH_ACCOUNT, f"the card has no such {role}")

    @staticmethod
    def _balances(tx: DriverTransaction, account_id: int) -> tuple[int, int]:
        row = tx.one(_BALANCES, {"account_id": account_id})
        return row.ledger_balance, row.available_balance

    def _use_limit(
        self,
        tx: DriverTransaction,
        account_id: int,
        day: dt.date,
        kind: str,
        amount: int,
        limit: int,
    ) -> None:
        """Count `amount` against the account's daily limit, atomically, or Declined(61)."""
        if amount > limit:
            raise _over_limit(kind)
        used = tx.scalar(
            _USE_LIMIT,
            {"account_id": account_id, "day": day, "kind": kind, "used": amount, "limit": limit},
        )
        if used is None:
            raise _over_limit(kind)

    @staticmethod
    def _release_limit(
        tx: DriverTransaction, account_id: int, day: dt.date, kind: str, amount: int
    ) -> None:
        """Give `amount` back to the daily limit, with the transaction's next statement."""
        if amount:
            tx.defer(
                _RELEASE_LIMIT,
                {"account_id": account_id, "day": day, "kind": kind, "amount": amount},
            )

    # ----- card requests ----------------------------------------------------------------------

    def _balance(self, tx: DriverTransaction, request: HostRequest, card: _Card) -> HostResponse:
        account = self._resolve(card, request.from_account)
        ledger, available = self._balances(tx, account.id)
        return HostResponse(
            ResponseCode.APPROVED, request.stan, ledger_balance=ledger, available_balance=available
        )

    def _withdrawal(
        self,
        tx: DriverTransaction,
        request: HostRequest,
        card: _Card,
        record: _Record,
        now: dt.datetime,
    ) -> HostResponse:
        account = self._resolve(card, request.from_account)
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
        row = tx.one(
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
        if not row.within_limit:
            raise _over_limit("withdrawal")
        if row.ledger_balance is None:
            self._release_limit(tx, account.id, day, "withdrawal", amount)
            raise Declined(ResponseCode.INSUFFICIENT_FUNDS, "insufficient funds")
        record.amount = amount
        return HostResponse(
            ResponseCode.APPROVED,
            request.stan,
            ledger_balance=row.ledger_balance,
            available_balance=row.available_balance,
        )

    def _transfer(
        self,
        tx: DriverTransaction,
        request: HostRequest,
        card: _Card,
        record: _Record,
        now: dt.datetime,
    ) -> HostResponse:
        source = self._resolve(card, request.from_account, role="source account")
        record.account_id = source.id
        if request.to_account is None:
            raise Declined(ResponseCode.NO_SUCH_ACCOUNT, "no destination account")
        target = self._resolve(card, request.to_account, role="destination account")
        if target.id == source.id:
            raise Declined(ResponseCode.INVALID_TRANSACTION, "same source and destination")
        amount = request.amount
        if amount <= 0:
            raise Declined(ResponseCode.INVALID_AMOUNT, "the amount must be above zero")
        if not request.currency == source.currency == target.currency:
            raise Declined(ResponseCode.TRANSACTION_NOT_PERMITTED, "currency not served")
        self._use_limit(
            tx, source.id, now.date(), "transfer", amount, self.settings.daily_transfer_limit
        )
        postings = [
            Posting(source.id, -amount, f"Transfer to {target.number}"),
            Posting(target.id, amount, f"Transfer from {source.number}"),
        ]
        balances = post_entry(
            tx,
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
        self, tx: DriverTransaction, request: HostRequest, card: _Card, record: _Record
    ) -> HostResponse:
        account = self._resolve(card, request.from_account)
        record.account_id = account.id
        # The ledger's one query of an account's lines, on the transaction's SQLAlchemy connection.
        rows = tx.connection.execute(
            ledger_lines(account.id).order_by(JournalLine.id.desc()).limit(MINI_STATEMENT_LINES)
        ).all()
        lines = tuple(StatementLine(*row) for row in reversed(rows))
        ledger, available = self._balances(tx, account.id)
        return HostResponse(
            ResponseCode.APPROVED,
            request.stan,
            ledger_balance=ledger,
            available_balance=available,
            statement=lines,
        )

    def _pin_change(
        self,
        tx: DriverTransaction,
        request: HostRequest,
        card: _Card,
        keys: crypto_keys.TerminalKeys,
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
        tx.run(_NEW_PIN, {"id": card.id, "pin_hash": new_hash})
        self.verified_pins.forget(card.id)  # the old PIN's blocks (the new hash refuses them too)
        log.info("card %s: PIN changed", card.masked_pan)
        return HostResponse(ResponseCode.APPROVED, request.stan, message="PIN changed")

    # ----- completion and reversal ------------------------------------------------------------

    def _original(self, tx: DriverTransaction, request: HostRequest, record: _Record) -> Any:
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
            return tx.first(
                _ORIGINAL_SENT_AT_WITH_HOLD,
                {**names, "transmitted_at": request.original_transmitted_at},
            )
        days = [record.business_date, record.business_date - dt.timedelta(days=1)]
        return tx.first(_ORIGINAL_RECENT_WITH_HOLD, {**names, "days": days})

    @staticmethod
    def _hold_of(original: Any) -> _Hold | None:
        """The hold read (and locked) with the original, or None if it has none."""
        if original.hold_id is None:
            return None
        return _Hold(
            original.hold_id,
            original.account_id,
            original.terminal_id,
            original.amount,
            original.posted_amount,
            original.usage_day,
            original.status,
            original.settled_at,
            original.settlement_account_id,
        )

    def _settle(
        self,
        tx: DriverTransaction,
        hold: _Hold,
        record: _Record,
        request: HostRequest,
        posted: int,
        now: dt.datetime,
    ) -> None:
        """Post `posted` cents of a held withdrawal and release the rest of the hold."""
        release = hold.amount - posted
        self._release_limit(tx, hold.account_id, hold.usage_day, "withdrawal", release)
        if posted:
            post_entry(
                tx,
                posted_at=now,
                kind="withdrawal",
                description=f"ATM withdrawal at {hold.terminal_id}",
                postings=[
                    Posting(hold.account_id, -posted, f"ATM {hold.terminal_id}", release),
                    Posting(
                        hold.settlement_account_id, posted, f"Cash out, account {hold.account_id}"
                    ),
                ],
                host_transaction_id=record.id,
            )
        elif release:
            tx.defer(_RELEASE_FUNDS, {"account_id": hold.account_id, "amount": release})
        hold.posted_amount = posted
        hold.settled_at = now

    @classmethod
    def _save_hold(cls, tx: DriverTransaction, hold: _Hold) -> tuple[int, int]:
        """Write the hold back; the balances of its account after it, in the same round trip."""
        tx.defer(
            _SAVE_HOLD,
            {
                "id": hold.id,
                "posted_amount": hold.posted_amount,
                "status": hold.status,
                "settled_at": hold.settled_at,
            },
        )
        return cls._balances(tx, hold.account_id)

    @staticmethod
    def _advice_response(
        request: HostRequest, balances: tuple[int, int], message: str
    ) -> HostResponse:
        ledger, available = balances
        return HostResponse(
            ResponseCode.APPROVED,
            request.stan,
            ledger_balance=ledger,
            available_balance=available,
            message=message,
        )

    def _completion(
        self, tx: DriverTransaction, request: HostRequest, record: _Record, now: dt.datetime
    ) -> HostResponse:
        original = self._original(tx, request, record)
        hold = None if original is None else self._hold_of(original)
        if original is None or hold is None:
            raise Declined(ResponseCode.ORIGINAL_NOT_FOUND, "no approved withdrawal with that STAN")
        record.original_id = original.id
        record.account_id = hold.account_id
        if hold.status == "completed":
            record.kind = REPEAT_KINDS[RequestKind.COMPLETION]
            balances = self._balances(tx, hold.account_id)
            return self._advice_response(request, balances, "already completed")
        if hold.status == "reversed":
            raise Declined(ResponseCode.INVALID_TRANSACTION, "the withdrawal was reversed")
        wanted = (
            request.dispensed_amount if request.dispensed_amount is not None else request.amount
        )
        posted = min(wanted, hold.amount)
        self._settle(tx, hold, record, request, posted, now)
        hold.status = "completed"
        balances = self._save_hold(tx, hold)
        record.amount = posted
        note = "" if wanted <= hold.amount else "capped at the authorised amount"
        return self._advice_response(request, balances, note)

    def _reversal(
        self, tx: DriverTransaction, request: HostRequest, record: _Record, now: dt.datetime
    ) -> HostResponse:
        original = self._original(tx, request, record)
        if original is None:
            if self._block_original(tx, request, record, now):
                record.amount = request.amount
                return HostResponse(
                    ResponseCode.ORIGINAL_NOT_FOUND,
                    request.stan,
                    message="original not found; it will be refused if it arrives",
                )
            # The original was being written while we looked: it exists now, reverse it.
            original = self._original(tx, request, record)
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
        hold = self._hold_of(original)
        if hold is None:
            return HostResponse(
                ResponseCode.APPROVED, request.stan, message="the original was declined: no hold"
            )
        record.account_id = hold.account_id
        dispensed = min(request.dispensed_amount or 0, hold.amount)
        if hold.status == "reversed":
            record.kind = REPEAT_KINDS[RequestKind.REVERSAL]
            balances = self._balances(tx, hold.account_id)
            return self._advice_response(request, balances, "already reversed")
        if hold.status == "held":
            self._settle(tx, hold, record, request, dispensed, now)
        elif dispensed < hold.posted_amount:
            refund = hold.posted_amount - dispensed
            self._release_limit(tx, hold.account_id, hold.usage_day, "withdrawal", refund)
            post_entry(
                tx,
                posted_at=now,
                kind="reversal",
                description=f"ATM reversal at {hold.terminal_id}",
                postings=[
                    Posting(hold.account_id, refund, f"ATM {hold.terminal_id} reversal"),
                    Posting(
                        hold.settlement_account_id, -refund, f"Cash back, account {hold.account_id}"
                    ),
                ],
                host_transaction_id=record.id,
            )
            hold.posted_amount = dispensed
            hold.settled_at = now
        hold.status = "reversed"
        balances = self._save_hold(tx, hold)
        record.amount = hold.amount - hold.posted_amount
        return self._advice_response(request, balances, "reversed")

    def _block_original(
        self, tx: DriverTransaction, request: HostRequest, record: _Record, now: dt.datetime
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
            inserted = tx.scalar(
                _BLOCK_ORIGINAL,
                {
                    "terminal_id": request.terminal_id,
                    "stan": request.original_stan,
                    "business_date": business_date,
                    "kind": BLOCKED_ORIGINAL,
                    "transmitted_at": transmitted_at,
                    "received_at": now,
                    "amount": request.amount,
                    "original_id": record.id,
                    "response_code": refusal.response_code.value,
                    "response": Jsonb(_response_to_json(refusal)),
                },
            )
            if index == 0 and inserted is None:
                return False
        return True
