"""A TCP proxy between the ATM and the bank host that can play a failing host: down, slow,
declining, reply lost, connection dropped. Delays are spent on the ATM's virtual clock.

Time model: the ATM's host client gives up when *either* its clock or the real time passes its
timeout. A "slow" reply therefore moves the shared VirtualClock forward by the delay (no real
waiting) and is forwarded only if that is still inside the ATM's host timeout; otherwise the
proxy waits (in real time, briefly) for the ATM to give up and drops the late reply. A lost
reply moves the clock by the whole host timeout, as the ATM would have waited that long.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from dataclasses import dataclass, replace

from device.clock import Clock, VirtualClock
from host import iso8583 as iso
from host.iso8583 import Message, MessageFormatError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.02
UPSTREAM_REPLY_SECONDS = 10.0  # real seconds the real host gets to answer the proxy
GIVE_UP_SECONDS = 3.0  # real seconds the proxy waits for the ATM to notice its timeout
MODES = ("up", "down", "slow", "declining", "reply_lost", "connection_dropped")
FINANCIAL = ("0100", "0200")


class HostFaultError(ConnectionError):
    """The proxy cannot do what was asked (bad mode, cannot listen, upstream unreachable)."""


@dataclass(frozen=True)
class HostBehaviour:
    """What the proxy does to the next requests.

    mode: one of MODES. seconds: the delay of "slow". code: the answer of "declining".
    count: how many requests it applies to before the proxy is "up" again (0: until changed).
    how: for "down", "refuse" (no listener: connection refused) or "close" (accept, then
    close). mtis: only requests of these types are affected (empty: every request; "declining"
    defaults to 0100 and 0200 so that sign-on and advices still reach the bank).
    """

    mode: str = "up"
    seconds: float = 0.0
    code: str = "05"
    count: int = 0
    how: str = "refuse"
    mtis: tuple[str, ...] = ()


class HostFaultProxy:
    """Listen on 127.0.0.1 (a free port), relay to `upstream`, misbehave as told by `set()`."""

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        clock: Clock,
        mac_key: bytes,
        atm_host_timeout: float,
    ) -> None:
        self.upstream = upstream
        self.clock = clock
        self.mac_key = mac_key
        self.atm_host_timeout = atm_host_timeout
        self.port = 0
        self.behaviour = HostBehaviour()
        self.handled: list[tuple[str, str]] = []  # (mti, what the proxy did), for reports
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()

    # ----- life -------------------------------------------------------------------------------

    def start(self) -> int:
        self._listen()
        return self.port

    def _listen(self) -> None:
        try:
            listener = socket.create_server(("127.0.0.1", self.port))
        except OSError as err:
            raise HostFaultError(f"host proxy cannot listen on port {self.port}: {err}") from err
        listener.settimeout(POLL_SECONDS * 5)
        self.port = listener.getsockname()[1]
        self._listener = listener
        thread = threading.Thread(
            target=self._accept_loop, args=(listener,), name=f"host-proxy-{self.port}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _unlisten(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def stop(self) -> None:
        self._stopping.set()
        self._unlisten()
        self._close_connections()
        for thread in self._threads:
            thread.join(5.0)
        self._threads = []

    def __enter__(self) -> HostFaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- control ----------------------------------------------------------------------------

    def set(self, behaviour: HostBehaviour) -> None:
        """Change what the proxy does from now on (a host going down also drops its links)."""
        if behaviour.mode not in MODES:
            raise HostFaultError(f"unknown host mode {behaviour.mode!r}; modes: {', '.join(MODES)}")
        if behaviour.mode == "declining" and not behaviour.mtis:
            behaviour = replace(behaviour, mtis=FINANCIAL)
        with self._lock:
            previous, self.behaviour = self.behaviour, behaviour
        if behaviour.mode == "down":
            self._close_connections()
            if behaviour.how == "refuse":
                self._unlisten()
        elif previous.mode == "down" and self._listener is None and not self._stopping.is_set():
            self._listen()

    def _close_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _take(self, mti: str) -> HostBehaviour:
        """The behaviour for one request, counting it against `count`."""
        with self._lock:
            behaviour = self.behaviour
            if behaviour.mode == "up" or (behaviour.mtis and mti not in behaviour.mtis):
                return HostBehaviour()
            if behaviour.count:
                left = behaviour.count - 1
                self.behaviour = replace(behaviour, count=left) if left else HostBehaviour()
            return behaviour

    # ----- relaying ---------------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopping.is_set() and self._listener is listener:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.behaviour.mode == "down":
                conn.close()  # "close": the connection opens and is closed at once
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._connections.add(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        upstream: socket.socket | None = None
        decoder = iso.FrameDecoder()
        try:
            conn.settimeout(POLL_SECONDS * 5)
            while not self._stopping.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                for body in decoder.feed(data):
                    if upstream is None:
                        upstream = socket.create_connection(self.upstream, 5.0)
                        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    if not self._relay(conn, upstream, body):
                        return
        except (OSError, MessageFormatError) as err:
            log.info("host proxy connection ended: %s", err)
        finally:
            with self._lock:
                self._connections.discard(conn)
            conn.close()
            if upstream is not None:
                upstream.close()

    def _relay(self, conn: socket.socket, upstream: socket.socket, body: bytes) -> bool:
        """Handle one request; False to close the ATM's connection."""
        mti = body[:4].decode("ascii", "replace")
        behaviour = self._take(mti)
        mode = behaviour.mode
        self.handled.append((mti, mode))
        if mode == "down":
            return False
        if mode == "declining":
            conn.sendall(iso.frame(self._decline(body, behaviour.code)))
            return True
        upstream.sendall(iso.frame(body))
        reply = _read_frame(upstream, UPSTREAM_REPLY_SECONDS)
        if mode == "connection_dropped":
            return False  # the bank did the work; the ATM never hears of it
        if mode == "reply_lost":
            self._spend(self.atm_host_timeout)
            return True
        if mode == "slow":
            self._spend(behaviour.seconds)
            if behaviour.seconds >= self.atm_host_timeout:
                _wait_for_close(conn, GIVE_UP_SECONDS)
                return False
        conn.sendall(iso.frame(reply))
        return True

    def _spend(self, seconds: float) -> None:
        if isinstance(self.clock, VirtualClock):
            self.clock.advance(seconds)
        else:
            time.sleep(seconds)  # on the system clock a delay is a real delay

    def _decline(self, body: bytes, code: str) -> bytes:
        """The answer a declining host gives: the request's echoed fields, field 39 = code,
        MACed with the terminal's key."""
        request = iso.decode_message(body)
        table = iso.field_table()
        mti = iso.response_mti(request.mti)
        rule = table.messages[mti]
        fields: dict[str, str | bytes] = {
            number: value
            for number, value in request.fields.items()
            if number in rule.allowed
            and number != "128"
            and iso.field_is_valid(table, number, value)
        }
        fields["39"] = code
        return iso.encode_message(Message(mti, fields), self.mac_key)


def _read_frame(sock: socket.socket, seconds: float) -> bytes:
    decoder = iso.FrameDecoder()
    sock.settimeout(seconds)
    while True:
        data = sock.recv(65536)
        if not data:
            raise HostFaultError("the host closed the connection before answering")
        bodies = decoder.feed(data)
        if bodies:
            return bodies[0]


def _wait_for_close(conn: socket.socket, seconds: float) -> None:
    """Wait until the ATM closes its end (it gave up) or `seconds` pass."""
    deadline = time.monotonic() + seconds
    conn.settimeout(POLL_SECONDS)
    while time.monotonic() < deadline:
        try:
            if not conn.recv(65536):
                return
        except TimeoutError:
            continue
        except OSError:
            return
