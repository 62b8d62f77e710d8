"""Operator accounts of the HTTP service: creation, sign-in with lockout and rate limit, and
bearer tokens signed with a key from SECRET_KEY that stop working after SESSION_TIMEOUT_SECONDS
without use.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import logging
import re
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import bcrypt
import jwt
import sqlalchemy as sa

from config.settings import Settings
from host.api.rate_limit import InProcessRateLimiter, RateLimiter
from host.crypto_keys import derive_key
from host.models import OPERATOR_ROLES, Operator, OperatorSession

log = logging.getLogger(__name__)

ROLE_RANK = {role: rank for rank, role in enumerate(OPERATOR_ROLES)}  # viewer < operator < admin
NAME_PATTERN = re.compile(r"[A-Za-z0-9._@-]{1,64}")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
TOUCH_EVERY_SECONDS = 1.0  # a token's last use is written at most this often (or a tenth of
# the timeout, if shorter), so one busy token does not write its row on every request
RECENT_SESSIONS_KEPT = 10_000  # sessions remembered as recently confirmed, at most
SESSIONS_KEPT_SECONDS = 86400  # ended or idle sessions are deleted after a day
TOKEN_ALGORITHM = "HS256"  # noqa: S105 - an algorithm name, not a secret


class OperatorError(ValueError):
    """An operator cannot be created as asked (bad name, role or password)."""


class SignInRefused(Exception):
    """Wrong name or password, or a locked operator: the message says which and what to do."""


class SignInThrottled(Exception):
    """Too many sign-in attempts from one client: wait `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many sign-in attempts; try again in {retry_after:.0f} s")
        self.retry_after = retry_after


class NotSignedIn(Exception):
    """A missing, forged, ended or expired token."""


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    session_id: str

    def may(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


@dataclass(frozen=True)
class IssuedToken:
    token: str
    role: str
    idle_timeout_seconds: int

    def __repr__(self) -> str:  # a token is a credential: never in a log
        return f"IssuedToken(role={self.role})"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _password_secret(settings: Settings, password: str) -> bytes:
    # HMAC with the pepper first: bcrypt reads only 72 bytes, and password + pepper may be longer.
    digest = hmac.new(
        settings.pin_pepper.encode("utf-8"),
        password.encode("utf-8", "surrogatepass"),
        hashlib.sha256,
    ).digest()
    return base64.b64encode(digest)


def hash_password(settings: Settings, password: str) -> str:
    """bcrypt of the password peppered with PIN_PEPPER, at BCRYPT_ROUNDS."""
    salt = bcrypt.gensalt(settings.bcrypt_rounds)
    return bcrypt.hashpw(_password_secret(settings, password), salt).decode("ascii")


def check_password(settings: Settings, password: str, stored: str) -> bool:
    try:
        return bcrypt.checkpw(_password_secret(settings, password), stored.encode("ascii"))
    except ValueError:  # a damaged hash in the row: refuse, never crash
        return False


def check_new_operator(name: str, role: str, password: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise OperatorError(f"operator name {name!r}: expected 1 to 64 letters, digits or . _ @ -")
    if role not in ROLE_RANK:
        raise OperatorError(f"role {role!r}: expected one of {', '.join(OPERATOR_ROLES)}")
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise OperatorError(
            f"password: expected {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
        )


def create_operator(
    engine: sa.Engine,
    settings: Settings,
    name: str,
    role: str,
    password: str,
    *,
    replace: bool = False,
) -> str:
    """Create an operator (or, with replace, give an existing one a new role and password and
    lift its lockout); returns one line saying what was done."""
    check_new_operator(name, role, password)
    password_hash = hash_password(settings, password)
    now = _utc_now()
    with engine.begin() as conn:
        existing = conn.scalar(sa.select(Operator.id).where(Operator.name == name))
        if existing is not None and not replace:
            raise OperatorError(f"operator {name!r} exists already; use --replace to change it")
        if existing is None:
            conn.execute(
                sa.insert(Operator).values(
                    name=name,
                    role=role,
                    password_hash=password_hash,
                    failed_attempts=0,
                    locked_until=None,
                    created_at=now,
                )
            )
            return f"operator {name} created with role {role}"
        conn.execute(
            sa.update(Operator)
            .where(Operator.id == existing)
            .values(role=role, password_hash=password_hash, failed_attempts=0, locked_until=None)
        )
        # A new password ends the sessions signed in with the old one.
        conn.execute(
            sa.update(OperatorSession)
            .where(OperatorSession.operator_id == existing, OperatorSession.ended_at.is_(None))
            .values(ended_at=now)
        )
    return f"operator {name} updated: role {role}, new password, sessions ended"


class OperatorAuth:
    """Sign-in, token checks and sign-out against the operators table."""

    def __init__(
        self,
        engine: sa.Engine,
        settings: Settings,
        *,
        limiter: RateLimiter | None = None,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.limiter = limiter or InProcessRateLimiter()
        self.clock = clock
        self._key = derive_key(settings, "operator-tokens")
        # Unknown names cost one bcrypt check too, so timing does not tell which names exist.
        self._decoy_hash = hash_password(settings, secrets.token_urlsafe(16))
        # Sessions the database confirmed lately, with when: a busy token is read from the
        # database once per touch interval, not on every request.
        self._recent: dict[str, tuple[Principal, dt.datetime]] = {}
        self._recent_lock = threading.Lock()

    @property
    def idle_timeout(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.settings.session_timeout_seconds)

    # ----- sign-in ------------------------------------------------------------------------------

    def sign_in(self, name: str, password: str, client: str) -> IssuedToken:
        wait = self.limiter.hit(f"client:{client}")
        if wait > 0:
            raise SignInThrottled(wait)
        now = self.clock()
        refusal, role, session_id = "", "", ""
        with self.engine.begin() as conn:
            # The row lock makes concurrent guesses at one operator wait their turn, so no more
            # than MAX_FAILED_PIN_ATTEMPTS are judged before the lockout starts.
            row = conn.execute(
                sa.select(
                    Operator.id,
                    Operator.role,
                    Operator.password_hash,
                    Operator.failed_attempts,
                    Operator.locked_until,
                )
                .where(Operator.name == name)
                .with_for_update()
            ).one_or_none()
            if row is None:
                check_password(self.settings, password, self._decoy_hash)
                refusal = "wrong operator name or password"
            elif row.locked_until is not None and now < row.locked_until:
                left = (row.locked_until - now).total_seconds()
                refusal = f"operator {name} is locked; try again in {left:.0f} s"
            elif not check_password(self.settings, password, row.password_hash):
                failed = row.failed_attempts + 1
                limit = self.settings.max_failed_pin_attempts
                if failed >= limit:
                    until = now + dt.timedelta(seconds=self.settings.lockout_duration_seconds)
                    conn.execute(
                        sa.update(Operator)
                        .where(Operator.id == row.id)
                        .values(failed_attempts=0, locked_until=until)
                    )
                    log.warning("operator %s locked after %d failed sign-ins", name, failed)
                    refusal = (
                        f"wrong password; operator {name} is now locked for "
                        f"{self.settings.lockout_duration_seconds} s"
                    )
                else:
                    conn.execute(
                        sa.update(Operator)
                        .where(Operator.id == row.id)
                        .values(failed_attempts=failed, locked_until=None)
                    )
                    refusal = "wrong operator name or password"
            else:
                conn.execute(
                    sa.update(Operator)
                    .where(Operator.id == row.id)
                    .values(failed_attempts=0, locked_until=None)
                )
                role, session_id = row.role, uuid.uuid4().hex
                conn.execute(
                    sa.insert(OperatorSession).values(
                        session_id=session_id,
                        operator_id=row.id,
                        created_at=now,
                        last_used_at=now,
                        ended_at=None,
                    )
                )
                self._forget_old_sessions(conn, now)
        if refusal:
            raise SignInRefused(refusal)
        log.info("operator %s signed in (%s)", name, role)
        token = jwt.encode(
            {"sub": name, "sid": session_id, "iat": int(now.timestamp())},
            self._key,
            algorithm=TOKEN_ALGORITHM,
        )
        return IssuedToken(token, role, self.settings.session_timeout_seconds)

    def _forget_old_sessions(self, conn: sa.Connection, now: dt.datetime) -> None:
        cutoff = now - self.idle_timeout - dt.timedelta(seconds=SESSIONS_KEPT_SECONDS)
        conn.execute(sa.delete(OperatorSession).where(OperatorSession.last_used_at < cutoff))

    # ----- tokens -------------------------------------------------------------------------------

    def _claims(self, token: str) -> tuple[str, str]:
        try:
            # pyjwt compares the signature in constant time (hmac.compare_digest).
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[TOKEN_ALGORITHM],
                options={"require": ["sub", "sid", "iat"]},
            )
        except (jwt.PyJWTError, ValueError, UnicodeError):
            raise NotSignedIn("the token is not valid; sign in again at POST /auth/token") from None
        name, session_id = claims.get("sub"), claims.get("sid")
        if not isinstance(name, str) or not isinstance(session_id, str):
            raise NotSignedIn("the token is not valid; sign in again at POST /auth/token")
        return name, session_id

    @property
    def touch_every(self) -> dt.timedelta:
        return dt.timedelta(
            seconds=min(TOUCH_EVERY_SECONDS, self.settings.session_timeout_seconds / 10)
        )

    def authenticate(self, token: str) -> Principal:
        """The operator a token belongs to, if its session is open and was used lately.

        A session confirmed less than a touch interval ago is not read again; so a sign-out
        or a new password in another process takes effect here within that interval, and the
        idle timeout counts from at most that much before the last use."""
        name, session_id = self._claims(token)
        now = self.clock()
        with self._recent_lock:
            recent = self._recent.get(session_id)
        fresh = recent is not None and dt.timedelta(0) <= now - recent[1] < self.touch_every
        if recent is not None and fresh and hmac.compare_digest(recent[0].name, name):
            return recent[0]
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(Operator.name, Operator.role, OperatorSession.last_used_at)
                .join(Operator, Operator.id == OperatorSession.operator_id)
                .where(
                    OperatorSession.session_id == session_id,
                    OperatorSession.ended_at.is_(None),
                    OperatorSession.last_used_at > now - self.idle_timeout,
                )
            ).one_or_none()
            if row is None or not hmac.compare_digest(row.name, name):
                raise NotSignedIn(
                    "the session has ended (signed out, or unused for "
                    f"{self.settings.session_timeout_seconds} s); sign in again"
                )
            confirmed = row.last_used_at
            if now - row.last_used_at >= self.touch_every:
                conn.execute(
                    sa.update(OperatorSession)
                    .where(
                        OperatorSession.session_id == session_id, OperatorSession.last_used_at < now
                    )
                    .values(last_used_at=now)
                )
                conn.commit()
                confirmed = now
        principal = Principal(row.name, row.role, session_id)
        with self._recent_lock:
            if len(self._recent) > RECENT_SESSIONS_KEPT:
                self._recent.clear()
            self._recent[session_id] = (principal, confirmed)
        return principal

    def sign_out(self, principal: Principal) -> None:
        with self._recent_lock:
            self._recent.pop(principal.session_id, None)
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(OperatorSession)
                .where(OperatorSession.session_id == principal.session_id)
                .values(ended_at=self.clock())
            )
        log.info("operator %s signed out", principal.name)
