"""The ATM's link to the bank host: ISO 8583 over TCP, every message MACed, one request at a time.

Speaks only host.iso8583 (the shared protocol); satisfies device.controller.ports.HostPort.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from device import crash_points
from device.clock import Clock, SystemClock
from device.controller.ports import HostReply, HostUnavailable, MiniStatementLine
from device.stan_counter import StanCounter, StanStoreError
from host import iso8583 as iso
from host.iso8583 import MacError, Message, MessageFormatError

log = logging.getLogger(__name__)

# Called with the STAN and transmission time a request will carry, just before it leaves.
BeforeSend = Callable[[str, dt.datetime], None]

WAIT_SLICE_SECONDS = 0.05
LAST_STAN_FIELD = "48"  # in the sign-on answer: the last STAN the host recorded from us


class HostClientError(HostUnavailable):
    """The host link failed; a ConnectionError (and what the controller treats as no host)."""


class HostUnreachable(HostClientError):
    """No connection to the host could be made."""


class HostTimeout(HostClientError, TimeoutError):
    """The request went out but no answer came in time: its outcome is unknown."""


class HostProtocolError(HostClientError):
    """The host's answer was malformed or its MAC wrong, so it cannot be trusted."""


class HostRefused(HostClientError):
    """The host refused the terminal itself (sign-on declined, unknown terminal, bad MAC)."""

    def __init__(self, message: str, response_code: str) -> None:
        super().__init__(message)
        self.response_code = response_code


class Card(Protocol):
    @property
    def pan(self) -> str: ...
    @property
    def expiry(self) -> str: ...
    @property
    def service_code(self) -> str: ...


class EncryptedPin(Protocol):
    @property
    def block(self) -> bytes: ...
    @property
    def format(self) -> int: ...
    @property
    def ksn(self) -> str | None: ...  # DUKPT key serial number in hex; None for a fixed key


class HostClient:
    """One terminal's connection to the host. Not for concurrent use: one request at a time."""

    def __init__(
        self,
        host: str,
        port: int,
        terminal_id: str,
        mac_key: bytes,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        clock: Clock | None = None,
        stan: StanCounter | None = None,
        currency: str = "978",
        connect_attempts: int = 3,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if len(terminal_id) != 8:
            raise ValueError(f"a terminal id is 8 characters, not {terminal_id!r}")
        self.host = host
        self.port = port
        self.terminal_id = terminal_id
        self._mac_key = bytes(mac_key)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.clock: Clock = clock or SystemClock()
        self.stan = stan or StanCounter()
        self.currency = currency
        self.connect_attempts = max(1, connect_attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sleep = sleep
        self._sock: socket.socket | None = None
        self._decoder = iso.FrameDecoder()
        self._fresh = False  # the connection has carried no exchange yet
        self._receive_timeout = 0.0  # the connection's SO_RCVTIMEO, in seconds
        self._lock = threading.Lock()

    # ----- connection -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        """Open the connection, trying a few times with growing pauses; HostUnreachable if not."""
        if self._sock is not None:
            return
        delay = self.backoff
        last: OSError | None = None
        for attempt in range(self.connect_attempts):
            if attempt:
                self.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
            try:
                sock = socket.create_connection((self.host, self.port), self.connect_timeout)
            except OSError as err:
                last = err
                log.info("host %s:%d not reachable (%s)", self.host, self.port, err)
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Blocking, with the kernel's own timeouts: a send and a receive are one system call
            # each, where a Python socket timeout adds a poll(2) before each (and settimeout an
            # ioctl(2)); every such call hands the interpreter lock to another thread, which a
            # fleet of ATMs in one process pays for in context switches.
            sock.settimeout(None)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(self.timeout))
            self._set_receive_timeout(sock, WAIT_SLICE_SECONDS)
            self._sock = sock
            self._decoder = iso.FrameDecoder()
            self._fresh = True
            return
        raise HostUnreachable(
            f"host {self.host}:{self.port} unreachable after {self.connect_attempts} tries: {last}"
        ) from last

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def __enter__(self) -> HostClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- one exchange -----------------------------------------------------------------------

    def request(self, mti: str, fields: Mapping[str, str | bytes]) -> Message:
        """Send one request (STAN, times, terminal id and MAC added here) and return its answer.

        The answer's MAC is checked. A request whose connection turns out to be dead before any
        answer is sent once more, unchanged, on a new connection: the host answers a repeated
        STAN with its first answer, so nothing is done twice. A silent host is a HostTimeout.
        """
        return self._send(mti, fields)[0]

    def _send(
        self,
        mti: str,
        fields: Mapping[str, str | bytes],
        before_send: BeforeSend | None = None,
    ) -> tuple[Message, dt.datetime]:
        with self._lock:
            now = self.clock.now()
            message = Message(
                mti,
                {
                    **fields,
                    "7": iso.transmission_time(now),
                    "11": self.stan.next(),
                    "41": self.terminal_id,
                    **({} if mti == "0800" else iso.local_time_fields(now)),
                },
            )
            try:
                body = iso.encode_message(message, self._mac_key)
            except MessageFormatError as err:
                raise HostProtocolError(f"cannot build {mti}: {err}") from err
            if before_send is not None:
                # The caller writes its intent durably first; if that fails, nothing is sent.
                before_send(message.text("11") or "", now.replace(microsecond=0))
            try:
                return self._exchange(message, body), now
            except HostClientError as err:
                err.stan, err.transmitted_at = message.text("11"), now
                raise

    def _exchange(self, message: Message, body: bytes) -> Message:
        for attempt in (1, 2):
            self.connect()
            reused = not self._fresh
            self._fresh = False
            try:
                assert self._sock is not None
                if crash_points.active:
                    crash_points.reached(f"host.send:{message.mti}")
                self._sock.sendall(iso.frame(body))
                return self._await_answer(message)
            except HostClientError:
                raise
            except (ConnectionError, _PeerClosed) as err:
                self.close()
                if reused and attempt == 1:
                    log.info("host connection was dead (%s); sending again", err)
                    continue
                raise HostUnreachable(f"host closed the connection: {err}") from err
            except OSError as err:
                self.close()
                raise HostUnreachable(f"host link failed: {err}") from err
        raise AssertionError("unreachable")

    def _await_answer(self, request: Message) -> Message:
        sock = self._sock
        assert sock is not None
        expected_mti = iso.response_mti(request.mti)
        stan = request.text("11")
        clock_deadline = self.clock.monotonic() + self.timeout
        real_deadline = time.monotonic() + self.timeout
        while True:
            remaining = real_deadline - time.monotonic()
            if remaining <= 0 or self.clock.monotonic() >= clock_deadline:
                self.close()  # a late answer must not be taken for the next request's
                raise HostTimeout(
                    f"no answer to {request.mti} stan {stan} within {self.timeout:g} s"
                )
            wait = min(remaining, WAIT_SLICE_SECONDS)
            if wait != self._receive_timeout:
                self._set_receive_timeout(sock, wait)
            try:
                data = sock.recv(65536)
            except (BlockingIOError, TimeoutError):  # the slice ran out (EAGAIN)
                continue
            if not data:
                raise _PeerClosed("closed by the host before it answered")
            try:
                bodies = self._decoder.feed(data)
            except MessageFormatError as err:
                self.close()
                raise HostProtocolError(f"bad frame from the host: {err}") from err
            for body in bodies:
                answer = self._check_answer(body)
                if answer.mti == expected_mti and answer.text("11") == stan:
                    if crash_points.active:
                        crash_points.reached(f"host.receive:{answer.mti}")
                    return answer
                log.warning("discarding a stale %s stan %s", answer.mti, answer.text("11"))

    def _set_receive_timeout(self, sock: socket.socket, seconds: float) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(seconds))
        self._receive_timeout = seconds

    def _check_answer(self, body: bytes) -> Message:
        try:
            answer = iso.decode_message(body)
        except MessageFormatError as err:
            self.close()
            raise HostProtocolError(f"malformed answer from the host: {err}") from err
        code = answer.text("39") or ""
        if "128" not in answer and code == "63":
            self.close()
            raise HostRefused(f"host refused terminal {self.terminal_id} (code 63)", code)
        try:
            iso.verify_mac(body, answer, self._mac_key)
        except MacError as err:
            self.close()
            raise HostProtocolError(f"answer failed the MAC check: {err}") from err
        if answer.text("41") != self.terminal_id:
            self.close()
            raise HostProtocolError(f"answer addressed to terminal {answer.text('41')!r}")
        return answer

    # ----- typed requests (device.controller.ports.HostPort) ----------------------------------

    def sign_on(self) -> None:
        """Sign on; adopt the host's last STAN of this terminal when it is ahead of ours."""
        answer = self._network("sign_on")
        last_seen = answer.text(LAST_STAN_FIELD)
        if last_seen is None:
            return
        try:
            moved = self.stan.resync(last_seen)
        except StanStoreError as err:
            raise HostProtocolError(f"sign-on answer unreadable: {err}") from err
        if moved:
            log.warning("STAN moved forward to %s, the last one the host recorded", last_seen)

    def echo(self) -> None:
        self._network("echo")

    def _network(self, kind: str) -> Message:
        code = iso.field_table().network_code_for(kind)
        answer = self.request("0800", {"70": code})
        response_code = answer.text("39") or ""
        if response_code != "00":
            raise HostRefused(
                f"host declined {kind.replace('_', '-')} ({response_code})", response_code
            )
        return answer

    def verify_pin(self, card: Card, pin: EncryptedPin) -> HostReply:
        return self._card_request("0100", "pin_verify", card, pin)

    def balance(self, card: Card, pin: EncryptedPin, account: str) -> HostReply:
        return self._card_request("0100", "balance", card, pin, from_account=account)

    def withdraw(
        self,
        card: Card,
        pin: EncryptedPin,
        account: str,
        amount: int,
        *,
        before_send: BeforeSend | None = None,
    ) -> HostReply:
        return self._card_request(
            "0200",
            "withdrawal",
            card,
            pin,
            from_account=account,
            amount=amount,
            before_send=before_send,
        )

    def transfer(
        self, card: Card, pin: EncryptedPin, from_account: str, to_account: str, amount: int
    ) -> HostReply:
        return self._card_request(
            "0200",
            "transfer",
            card,
            pin,
            from_account=from_account,
            to_account=to_account,
            amount=amount,
        )

    def mini_statement(self, card: Card, pin: EncryptedPin, account: str) -> HostReply:
        return self._card_request("0200", "mini_statement", card, pin, from_account=account)

    def change_pin(self, card: Card, pin: EncryptedPin, new_pin: EncryptedPin) -> HostReply:
        return self._card_request("0200", "pin_change", card, pin, new_pin=new_pin)

    def complete(self, original_stan: str, transmitted_at: str, amount: int) -> str:
        """Completion advice (0220) of a withdrawal: `amount` cents were handed out.

        Returns the host's response code; 91 or 96 mean it was not handled: send it again later.
        """
        fields = self._advice_fields(original_stan, transmitted_at, amount)
        fields["95"] = iso.replacement_amounts(amount)
        return self._advice("0220", fields)

    def reverse(
        self, original_stan: str, transmitted_at: str, amount: int, dispensed_amount: int
    ) -> str:
        """Reversal advice (0420) of a withdrawal of `amount`; partial if some cash went out."""
        fields = self._advice_fields(original_stan, transmitted_at, amount)
        if dispensed_amount > 0:
            fields["95"] = iso.replacement_amounts(dispensed_amount)
        return self._advice("0420", fields)

    def _advice_fields(
        self, original_stan: str, transmitted_at: str, amount: int
    ) -> dict[str, str | bytes]:
        try:
            original_time = dt.datetime.fromisoformat(transmitted_at)
        except ValueError as err:
            raise HostProtocolError(f"original time {transmitted_at!r} is not ISO 8601") from err
        if original_time.tzinfo is None:
            original_time = original_time.replace(tzinfo=dt.UTC)
        withdrawal = iso.field_table().processing_code_for("withdrawal")
        return {
            "3": withdrawal + "0000",
            "4": iso.amount_field(amount),
            "49": self.currency,
            "90": iso.original_data_elements(
                "0200", original_stan, iso.transmission_time(original_time)
            ),
        }

    def _advice(self, mti: str, fields: dict[str, str | bytes]) -> str:
        answer = self.request(mti, fields)
        return answer.text("39") or ""

    def _card_request(
        self,
        mti: str,
        kind: str,
        card: Card,
        pin: EncryptedPin,
        *,
        from_account: str | None = None,
        to_account: str | None = None,
        amount: int | None = None,
        new_pin: EncryptedPin | None = None,
        before_send: BeforeSend | None = None,
    ) -> HostReply:
        table = iso.field_table()
        fields: dict[str, str | bytes] = {"49": self.currency}
        from_type, from_number = _account_parts(from_account, table)
        to_type, to_number = _account_parts(to_account, table)
        fields["3"] = table.processing_code_for(kind) + from_type + to_type
        if from_number:
            fields["102"] = from_number
        if to_number:
            fields["103"] = to_number
        if amount is not None:
            fields["4"] = iso.amount_field(amount)
        if card.service_code:
            fields["35"] = iso.track2(card.pan, card.expiry, card.service_code)
        else:
            fields["2"] = card.pan
            fields["14"] = card.expiry
        fields[_pin_field(pin)] = pin.block
        fields["53"] = iso.security_control(pin.format, _key_management(pin))
        if pin.ksn:
            fields["120"] = bytes.fromhex(pin.ksn)
        if new_pin is not None:
            if new_pin.format != pin.format or _key_management(new_pin) != _key_management(pin):
                raise HostProtocolError("the new PIN block must use the old one's format and keys")
            fields["111"] = new_pin.block
            if new_pin.ksn:
                fields["121"] = bytes.fromhex(new_pin.ksn)
        answer, sent_at = self._send(mti, fields, before_send)
        return _reply(answer, sent_at)


class _PeerClosed(Exception):
    """The host closed the connection before answering."""


def _key_management(pin: EncryptedPin) -> iso.KeyManagement:
    if not pin.ksn:
        return iso.KeyManagement.FIXED_KEY
    if len(pin.ksn) == 20 and pin.format != 4:
        return iso.KeyManagement.DUKPT_TDES
    if len(pin.ksn) == 24 and pin.format == 4:
        return iso.KeyManagement.DUKPT_AES
    raise HostProtocolError(f"a {len(pin.ksn) // 2}-byte KSN cannot go with format {pin.format}")


def _pin_field(pin: EncryptedPin) -> str:
    if len(pin.block) == 8 and pin.format != 4:
        return "52"
    if len(pin.block) == 16 and pin.format == 4:
        return "110"
    raise HostProtocolError(f"a {len(pin.block)}-byte PIN block of format {pin.format} cannot go")


def _account_parts(account: str | None, table: iso.FieldTable) -> tuple[str, str]:
    """Field 3 account type code and, for an account number, the number for field 102/103."""
    if not account:
        return "00", ""
    if account in table.account_types.values():
        return table.account_type_code(account), ""
    return "00", account


def _reply(answer: Message, sent_at: dt.datetime) -> HostReply:
    ledger = available = None
    balances_text = answer.text("54")
    statement: tuple[MiniStatementLine, ...] = ()
    try:
        for balance in iso.decode_balances(balances_text) if balances_text else []:
            if balance.amount_type == iso.LEDGER:
                ledger = balance.amount
            elif balance.amount_type == iso.AVAILABLE:
                available = balance.amount
        statement_text = answer.text("62")
        if statement_text:
            statement = tuple(
                MiniStatementLine(e.posted_at, e.description, e.amount, e.balance_after)
                for e in iso.decode_statement(statement_text)
            )
    except MessageFormatError as err:
        raise HostProtocolError(f"host answer unreadable: {err}") from err
    # transmitted_at is the request's field 7 time: a reversal names the original by it.
    return HostReply(
        response_code=answer.text("39") or "",
        stan=answer.text("11") or "",
        transmitted_at=sent_at.replace(microsecond=0),
        ledger_balance=ledger,
        available_balance=available,
        statement=statement,
    )


def _timeval(seconds: float) -> bytes:
    """A struct timeval for SO_RCVTIMEO / SO_SNDTIMEO; at least 1 us, as 0 means no timeout."""
    micros = max(1, round(seconds * 1_000_000))
    return struct.pack("@ll", micros // 1_000_000, micros % 1_000_000)
