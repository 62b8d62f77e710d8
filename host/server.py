"""The bank host's ISO 8583 TCP server: length-prefixed, MACed messages in, bank answers out.

One event loop (selectors) accepts and reads every connection and hands whole frames to a pool
of worker threads that call the bank, so a silent connection costs a socket, never a thread.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import importlib
import logging
import multiprocessing
import multiprocessing.process
import os
import select
import selectors
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event
from typing import Protocol

from config.card_numbers import mask_pan
from config.log_context import bind_log_context
from config.settings import Settings
from host import iso8583 as iso
from host import iso_mapping
from host.iso8583 import FieldTable, MacError, Message, MessageFormatError
from host.iso_mapping import is_terminal_id
from host.mac_keys import KEEP_SECONDS, MacKeyLookup, MacKeys
from host.messages import HostRequest, HostResponse, ResponseCode

log = logging.getLogger(__name__)

TICK_SECONDS = 0.1  # deadlines are checked this often at most
SEND_TIMEOUT_SECONDS = 5.0  # a peer that reads nothing for this long loses its connection
MAX_QUEUED_FRAMES = 8  # an ATM has one request in flight; more waiting is a flood
ANSWER_TIMES_KEPT = 100_000
LISTEN_BACKLOG = 1024
WORKERS = 32  # requests answered at once; each holds one database connection while it runs
ACCEPT_PAUSE_SECONDS = 0.2  # out of file descriptors: stop accepting this long
OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Authoriser(Protocol):
    def handle(self, request: HostRequest) -> HostResponse: ...


class HostServerError(OSError):
    """The server could not start listening."""


def _mac_error(body: bytes, message: Message, key: bytes) -> MacError | None:
    try:
        iso.verify_mac(body, message, key)
    except MacError as err:
        return err
    return None


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(eq=False)
class _Connection:
    """One accepted socket and what the loop and the workers know about it."""

    sock: socket.socket
    peer: str
    accepted_at: float
    last_active: float
    decoder: iso.FrameDecoder
    frames: deque[tuple[bytes, float]] = field(default_factory=deque)  # (body, when read)
    frame_started: float | None = None  # when the frame now arriving began
    proven: bool = False  # it sent a whole frame with a valid MAC: a genuine terminal
    busy: bool = False  # a worker is answering its frames; only the loop closes sockets
    closing: bool = False
    registered: bool = True


_LISTENER = object()
_WAKE = object()


class HostServer:
    """A TCP server answering ISO 8583 requests with a bank; start() in the background, stop().

    A connection must prove itself (send a whole frame with a valid MAC) within proof_timeout
    or it is closed. Only unproven connections count against max_unproven; when that many
    wait, the oldest of them is closed to make room, so a newcomer always gets its chance and
    proven terminals are never refused.
    """

    def __init__(
        self,
        bank: Authoriser,
        terminal_keys_lookup: MacKeyLookup,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        idle_timeout: float = 300.0,
        frame_timeout: float = 5.0,
        proof_timeout: float = 3.0,
        max_unproven: int = 512,
        workers: int = WORKERS,
        reuse_port: bool = False,
        now: Callable[[], dt.datetime] = _utc_now,
        table: FieldTable | None = None,
        mac_key_seconds: float = KEEP_SECONDS,
    ) -> None:
        if max_unproven < 1 or workers < 1:
            raise ValueError("max_unproven and workers must be at least 1")
        self.bank = bank
        self.mac_keys = MacKeys(terminal_keys_lookup, keep_seconds=mac_key_seconds)
        self.host = host
        self.port = port
        self.idle_timeout = idle_timeout
        self.frame_timeout = frame_timeout
        self.proof_timeout = proof_timeout
        self.max_unproven = max_unproven
        self.workers = workers
        self.reuse_port = reuse_port
        self.now = now
        self.table = table or iso.field_table()
        self._tick = max(0.01, min(TICK_SECONDS, frame_timeout / 4, proof_timeout / 4))
        self._listener: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._loop_thread: threading.Thread | None = None
        self._wake_reader: socket.socket | None = None
        self._wake_writer: socket.socket | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._idle_workers = threading.Condition(self._lock)
        self._connections: set[_Connection] = set()
        self._unproven: dict[_Connection, None] = {}  # in accept order: the oldest first
        self._close_requests: list[_Connection] = []
        self._working = 0
        self._evicted = 0
        self._accept_paused_until: float | None = None
        self.served = 0  # requests answered, for operators and tests
        self._answer_seconds: deque[float] = deque(maxlen=ANSWER_TIMES_KEPT)

    # ----- life cycle -------------------------------------------------------------------------

    def start(self) -> int:
        """Listen and serve in the background; return the bound port."""
        try:
            listener = socket.create_server(
                (self.host, self.port), reuse_port=self.reuse_port, backlog=LISTEN_BACKLOG
            )
        except OSError as err:
            raise HostServerError(f"cannot listen on {self.host}:{self.port}: {err}") from err
        listener.setblocking(False)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._stopping.clear()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, _LISTENER)
        self._selector.register(self._wake_reader, selectors.EVENT_READ, _WAKE)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=f"iso8583-{self.port}")
        self._loop_thread = threading.Thread(
            target=self._loop, name=f"iso8583-loop-{self.port}", daemon=True
        )
        self._loop_thread.start()
        log.info("ISO 8583 host listening on %s:%d", self.host, self.port)
        return self.port

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every connection and wait for the answers in progress."""
        self._stopping.set()
        self._wake()
        if self._loop_thread is not None:
            self._loop_thread.join(timeout)
            self._loop_thread = None

    def __enter__(self) -> HostServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    @property
    def unproven_count(self) -> int:
        with self._lock:
            return len(self._unproven)

    def _wake(self) -> None:
        writer = self._wake_writer
        if writer is not None:
            with contextlib.suppress(OSError):  # full or closed: the loop is awake or gone
                writer.send(b"\0")

    # ----- the event loop (one thread: it alone registers and closes sockets) -----------------

    def _loop(self) -> None:
        assert self._selector is not None
        selector = self._selector
        next_sweep = 0.0
        try:
            while not self._stopping.is_set():
                for key, _ in selector.select(self._tick):
                    if key.data is _LISTENER:
                        self._accept_all()
                    elif key.data is _WAKE:
                        with contextlib.suppress(OSError):
                            key.fileobj.recv(4096)  # type: ignore[union-attr]
                    else:
                        self._read(key.data)
                with self._lock:
                    requests, self._close_requests = self._close_requests, []
                for conn in requests:
                    self._close(conn)
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + self._tick
        except Exception:  # the loop must not die silently: say why and close everything
            log.exception("the ISO 8583 event loop failed")
        finally:
            self._shut_down()

    def _shut_down(self, timeout: float = 5.0) -> None:
        assert self._selector is not None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # wakes a worker still sending
                conn.sock.shutdown(socket.SHUT_RDWR)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._working and time.monotonic() < deadline:
                self._idle_workers.wait(deadline - time.monotonic())
            connections = list(self._connections)
            self._connections.clear()
            self._unproven.clear()
            self._close_requests.clear()
        for conn in connections:
            conn.sock.close()
        self._selector.close()
        self._selector = None
        for end in (self._wake_reader, self._wake_writer):
            if end is not None:
                end.close()
        self._wake_reader = self._wake_writer = None

    def _accept_all(self) -> None:
        assert self._listener is not None and self._selector is not None
        while True:
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                if err.errno in OUT_OF_DESCRIPTORS:
                    self._out_of_descriptors(err)
                elif not self._stopping.is_set():
                    log.error("accept failed: %s", err)
                return
            self._admit(sock, f"{address[0]}:{address[1]}")

    def _out_of_descriptors(self, err: OSError) -> None:
        assert self._listener is not None and self._selector is not None
        with self._lock:
            victim = self._oldest_unproven()
        if victim is not None:
            self._close(victim)
            self._evicted += 1
            return
        log.error("accept failed (%s): pausing new connections for %g s", err, ACCEPT_PAUSE_SECONDS)
        self._selector.unregister(self._listener)
        self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE_SECONDS

    def _admit(self, sock: socket.socket, peer: str) -> None:
        assert self._selector is not None
        sock.setblocking(False)
        with contextlib.suppress(OSError):  # the peer may be gone already
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        now = time.monotonic()
        conn = _Connection(sock, peer, now, now, iso.FrameDecoder(self.table.max_message_bytes))
        with self._lock:
            victim = self._oldest_unproven() if len(self._unproven) >= self.max_unproven else None
            self._connections.add(conn)
            self._unproven[conn] = None
        if victim is not None:
            self._close(victim)
            self._evicted += 1
        self._selector.register(sock, selectors.EVENT_READ, conn)

    def _oldest_unproven(self) -> _Connection | None:
        """The connection to close to make room (lock held): the oldest one not being answered."""
        fallback = None
        for conn in self._unproven:
            if not conn.busy:
                return conn
            fallback = fallback or conn
        return fallback

    def _read(self, conn: _Connection) -> None:
        if conn.closing:
            self._close(conn)
            return
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            log.info("%s: connection lost: %s", conn.peer, err)
            self._close(conn)
            return
        if not data:
            if conn.decoder.pending:
                log.warning("%s: closed mid-frame, %s", conn.peer, conn.decoder.describe_pending())
            self._close(conn)
            return
        now = time.monotonic()
        conn.last_active = now
        try:
            bodies = conn.decoder.feed(data)
        except MessageFormatError as err:
            log.warning("%s: bad frame, closing: %s", conn.peer, err)
            self._close(conn)
            return
        if not conn.decoder.pending:
            conn.frame_started = None
        elif bodies or conn.frame_started is None:
            conn.frame_started = now
        if bodies:
            self._queue(conn, bodies)

    def _queue(self, conn: _Connection, bodies: list[bytes]) -> None:
        """Queue whole frames for a worker; start one unless one is answering this connection."""
        assert self._pool is not None
        with self._lock:
            flooded = len(conn.frames) + len(bodies) > MAX_QUEUED_FRAMES
            start = not flooded and not conn.busy
            if not flooded:
                now = time.monotonic()
                conn.frames.extend((body, now) for body in bodies)
                conn.busy = True
        if flooded:
            log.warning("%s: more than %d requests waiting, closing", conn.peer, MAX_QUEUED_FRAMES)
            self._close(conn)
        elif start:
            self._pool.submit(self._work, conn)

    def _close(self, conn: _Connection) -> None:
        """Close a connection now, or as soon as the worker answering it is done."""
        assert self._selector is not None
        with self._lock:
            conn.closing = True
            self._unproven.pop(conn, None)
            busy = conn.busy
            if not busy:
                self._connections.discard(conn)
        if conn.registered:
            conn.registered = False
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
        if not busy:
            conn.sock.close()

    def _sweep(self, now: float) -> None:
        assert self._selector is not None and self._listener is not None
        if self._accept_paused_until is not None and now >= self._accept_paused_until:
            self._accept_paused_until = None
            self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)
        truncated: list[_Connection] = []
        unproven: list[_Connection] = []
        idle: list[_Connection] = []
        with self._lock:
            for conn in self._connections:
                if conn.busy or conn.closing:
                    continue
                if conn.frame_started is not None and now - conn.frame_started > self.frame_timeout:
                    truncated.append(conn)
                elif not conn.proven and now - conn.accepted_at > self.proof_timeout:
                    (truncated if conn.decoder.pending else unproven).append(conn)
                elif conn.proven and now - conn.last_active > self.idle_timeout:
                    idle.append(conn)
            evicted, self._evicted = self._evicted, 0
        for conn in truncated:
            log.warning(
                "%s: truncated frame, %s then silence", conn.peer, conn.decoder.describe_pending()
            )
            self._close(conn)
        for conn in idle:
            log.info("%s: idle for %.0f s, closing", conn.peer, self.idle_timeout)
            self._close(conn)
        for conn in unproven:
            self._close(conn)
        # One line per sweep, not per socket: a flood of silent connections must not flood the log.
        if len(unproven) == 1:
            log.info(
                "%s: no valid MACed message within %g s, closing",
                unproven[0].peer,
                self.proof_timeout,
            )
        elif unproven:
            log.info(
                "closed %d connections that sent no valid MACed message within %g s",
                len(unproven),
                self.proof_timeout,
            )
        if evicted:
            log.warning(
                "closed the %d oldest unproven connection(s): at most %d may wait for their "
                "first MACed message",
                evicted,
                self.max_unproven,
            )

    # ----- workers: answer the frames of one connection, in order -----------------------------

    def _work(self, conn: _Connection) -> None:
        with self._lock:
            self._working += 1
        try:
            while True:
                with self._lock:
                    if conn.closing or not conn.frames:
                        break
                    body, read_at = conn.frames.popleft()
                try:
                    # A copy: the terminal id bound for this message's log lines ends with it.
                    answer, genuine = copy_context().run(self._answer, body, conn.peer)
                except Exception:  # a bug or a dead key store must not kill the server
                    log.exception("%s: unexpected failure, closing", conn.peer)
                    answer, genuine = None, False
                if genuine:
                    with self._lock:
                        conn.proven = True
                        self._unproven.pop(conn, None)
                if answer is not None:
                    # Counted as the answer is handed to the socket, not after: a terminal that
                    # has read its answer then always finds its time among answer_seconds().
                    self._answer_seconds.append(time.monotonic() - read_at)
                if answer is None or not self._send(conn, iso.frame(answer)):
                    with self._lock:
                        conn.closing = True
                    break
                conn.last_active = time.monotonic()
        finally:
            with self._lock:
                conn.busy = False
                if conn.closing:
                    self._close_requests.append(conn)
                self._working -= 1
                self._idle_workers.notify_all()
            if conn.closing:
                self._wake()

    def _send(self, conn: _Connection, data: bytes) -> bool:
        """Send a whole answer on the non-blocking socket; False if the peer is gone or stuck."""
        view = memoryview(data)
        deadline = time.monotonic() + SEND_TIMEOUT_SECONDS
        poller: select.poll | None = None
        while view:
            try:
                view = view[conn.sock.send(view) :]
                continue
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as err:
                log.info("%s: connection lost while answering: %s", conn.peer, err)
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("%s: reads no answers, closing", conn.peer)
                return False
            if poller is None:
                poller = select.poll()  # poll, not select: descriptors above 1024 are normal here
                poller.register(conn.sock, select.POLLOUT)
            poller.poll(remaining * 1000)
        return True

    def _answer(self, body: bytes, peer: str) -> tuple[bytes | None, bool]:
        """The encoded answer to one message (None: close the connection), and whether the
        message carried a valid MAC (the connection then belongs to a genuine terminal)."""
        try:
            message = iso.decode_message(body, self.table, check=False)
        except MessageFormatError as err:
            log.warning("%s: malformed message, closing: %s", peer, err)
            return None, False
        rule = self.table.messages.get(message.mti)
        if rule is None or rule.response is None:
            log.warning("%s: message type %r is not a request, closing", peer, message.mti)
            return None, False
        terminal = message.fields.get("41")
        # Checked before the key store is asked: a NUL byte must never reach the database.
        if not is_terminal_id(terminal):
            log.warning(
                "%s: %s refused (63): field 41 %r is not 8 printable ASCII characters",
                peer,
                message.mti,
                terminal,
            )
            return self._error(message, ResponseCode.SECURITY_VIOLATION, None, peer), False
        assert isinstance(terminal, str)
        bind_log_context(terminal_id=terminal)
        key = self.mac_keys.key(terminal)
        mac_error = None if key is None else _mac_error(body, message, key)
        if mac_error is not None:
            # The terminal's key may have changed since it was read: the store decides.
            key = self.mac_keys.read(terminal)
            mac_error = None if key is None else _mac_error(body, message, key)
            if key is not None and mac_error is not None:
                log.warning("%s: %s", peer, mac_error)
                return self._error(message, ResponseCode.SECURITY_VIOLATION, key, peer), False
        if key is None:
            log.warning("%s: %s from unknown terminal %r refused", peer, message.mti, terminal)
            return self._error(message, ResponseCode.SECURITY_VIOLATION, None, peer), False
        try:
            iso.check_message(message, self.table)
            kind = iso_mapping.request_kind(message, self.table)
            request = iso_mapping.to_host_request(message, self.now(), self.table)
        except MessageFormatError as err:
            log.warning("%s: %s %s format error: %s", peer, terminal, message.mti, err)
            return self._error(message, ResponseCode.FORMAT_ERROR, key, peer), True
        started = time.perf_counter()
        try:
            response = self.bank.handle(request)
        except Exception:
            log.exception("%s: the bank failed on %s %s", peer, terminal, message.mti)
            return self._error(message, ResponseCode.SYSTEM_MALFUNCTION, key, peer), True
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.info(
            "%s %s stan=%s pc=%s pan=%s -> %s (%.1f ms)%s",
            terminal,
            message.mti,
            request.stan,
            message.text("3") or "-",
            mask_pan(request.pan) if request.pan else "-",
            response.response_code.value,
            elapsed_ms,
            f" {response.message}" if response.message else "",
        )
        try:
            answer = iso_mapping.to_iso_response(message, response, kind, self.table)
            encoded = iso.encode_message(answer, key, self.table)
        except MessageFormatError as err:
            log.error("%s: cannot encode the answer to %s: %s", peer, message.mti, err)
            return self._error(message, ResponseCode.SYSTEM_MALFUNCTION, key, peer), True
        self._count_served()
        return encoded, True

    def _error(
        self, message: Message, code: ResponseCode, key: bytes | None, peer: str
    ) -> bytes | None:
        try:
            answer = iso_mapping.error_response(message, code, self.now(), self.table)
            encoded = iso.encode_message(answer, key, self.table)
        except MessageFormatError as err:
            log.warning("%s: cannot even answer %s (%s), closing", peer, message.mti, err)
            return None
        self._count_served()
        return encoded

    def answer_seconds(self) -> list[float]:
        """Seconds from reading each request to its answer handed to the socket (queueing, the
        bank and the MAC included), for the latest ANSWER_TIMES_KEPT answers, oldest first."""
        return list(self._answer_seconds)

    def _count_served(self) -> None:
        with self._lock:
            self.served += 1


def serve(settings: Settings, host: str, port: int, processes: int = 1) -> None:
    """Run the host server on the bank database until interrupted (Ctrl-C).

    With `processes` > 1 that many processes share the port (SO_REUSEPORT: the kernel spreads
    connections over them, each connection staying with one), so the bank's Python work runs on
    every core; a process that dies is started again.
    """
    from host.database import database_url

    if processes < 1:
        raise HostServerError("the host needs at least one process")
    url = database_url(settings)  # the embedded server, if any, is started here, once
    _serve_on(settings, url, host, port, processes=processes)


def _serve_on(
    settings: Settings,
    url: str,
    host: str,
    port: int,
    *,
    processes: int,
    listening: Event | None = None,
) -> None:
    """Serve `port` in this process; the first of several `processes` starts and minds the rest.

    A helper sets `listening` once its socket is open; the first process announces the port only
    when every helper has, because a terminal keeps its connection to the process that accepted
    it: terminals that connect while the helpers are still starting would all stay on one.
    """
    helper = listening is not None
    from host.database import host_engine

    try:
        service = importlib.import_module("host.service")
        crypto_keys = importlib.import_module("host.crypto_keys")
    except ImportError as err:
        raise HostServerError(f"the authorisation service is not available: {err}") from err
    engine = host_engine(url, WORKERS)
    bank = service.Bank(engine, settings)
    mac_key_for = crypto_keys.mac_key_lookup(engine, settings)
    try:
        mac_key_for("00000000")  # the terminals table answers, so the bank is ready
    except Exception as err:
        engine.dispose()
        raise SystemExit(
            f"atm-sim: the bank database is not ready ({type(err).__name__}); "
            "run `atm-sim db upgrade` and `atm-sim db seed` first"
        ) from err
    server = HostServer(bank, mac_key_for, host=host, port=port, reuse_port=processes > 1)
    others: list[multiprocessing.process.BaseProcess] = []
    try:
        bound = server.start()
        if listening is not None:
            listening.set()
        spawn = multiprocessing.get_context("spawn")

        def start_helper(number: int) -> tuple[multiprocessing.process.BaseProcess, Event]:
            started = spawn.Event()
            process = spawn.Process(
                target=_helper_process,
                args=(settings, url, host, bound, processes, started),
                name=f"iso8583-host-{number}",
            )
            process.start()
            return process, started

        if not helper:
            starting = [start_helper(n) for n in range(2, processes + 1)]
            others.extend(process for process, _ in starting)
            for process, started in starting:
                _await_listening(process, started)
            shared = f", {processes} processes" if processes > 1 else ""
            print(f"ISO 8583 host listening on {host}:{bound}{shared} (Ctrl-C to stop)", flush=True)
        parent = os.getppid()
        while not (helper and os.getppid() != parent):  # a helper ends with the first process
            time.sleep(1.0)
            for n, process in enumerate(others):
                if not process.is_alive():
                    log.warning(
                        "host process %s ended (exit code %s); starting another",
                        process.name,
                        process.exitcode,
                    )
                    others[n], _ = start_helper(n + 2)
    finally:
        for process in others:
            process.terminate()
        for process in others:
            process.join(5.0)
        server.stop()
        engine.dispose()


HELPER_START_SECONDS = 60.0


def _await_listening(process: multiprocessing.process.BaseProcess, listening: Event) -> None:
    """Wait until a helper process listens; HostServerError if it ends or hangs first."""
    deadline = time.monotonic() + HELPER_START_SECONDS
    while not listening.wait(0.1):
        if not process.is_alive():
            raise HostServerError(
                f"host process {process.name} ended while starting (exit code {process.exitcode})"
            )
        if time.monotonic() > deadline:
            raise HostServerError(
                f"host process {process.name} did not listen within {HELPER_START_SECONDS:g} s"
            )


def _helper_process(
    settings: Settings, url: str, host: str, port: int, processes: int, listening: Event
) -> None:
    """One more process serving the port of `serve`; logs as the first one does."""
    from config.log_format import configure_logging

    configure_logging(settings.log_level, settings.log_format)

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    with contextlib.suppress(KeyboardInterrupt):
        _serve_on(settings, url, host, port, processes=processes, listening=listening)
