"""The bank host's ISO 8583 TCP server: length-prefixed, MACed messages in, bank answers out.

One thread per connection: each ATM keeps one connection with at most one request in flight,
and the bank call blocks on PostgreSQL, so a thread per ATM is simple and never starves others.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Protocol

from config import iso8583 as iso
from config.iso8583 import FieldTable, MacError, Message, MessageFormatError
from config.settings import Settings
from host import iso_mapping
from host.messages import HostRequest, HostResponse, ResponseCode

log = logging.getLogger(__name__)

MacKeyLookup = Callable[[str], "bytes | None"]
ACCEPT_POLL_SECONDS = 0.2


class Authoriser(Protocol):
    def handle(self, request: HostRequest) -> HostResponse: ...


class HostServerError(OSError):
    """The server could not start listening."""


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class HostServer:
    """A TCP server answering ISO 8583 requests with a bank; start() in the background, stop()."""

    def __init__(
        self,
        bank: Authoriser,
        terminal_keys_lookup: MacKeyLookup,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        idle_timeout: float = 300.0,
        frame_timeout: float = 5.0,
        max_connections: int = 256,
        now: Callable[[], dt.datetime] = _utc_now,
        table: FieldTable | None = None,
    ) -> None:
        self.bank = bank
        self.mac_key_for = terminal_keys_lookup
        self.host = host
        self.port = port
        self.idle_timeout = idle_timeout
        self.frame_timeout = frame_timeout
        self.max_connections = max_connections
        self.now = now
        self.table = table or iso.field_table()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self.served = 0  # requests answered, for operators and tests

    # ----- life cycle -------------------------------------------------------------------------

    def start(self) -> int:
        """Listen and serve in background threads; return the bound port."""
        try:
            listener = socket.create_server((self.host, self.port), reuse_port=False)
        except OSError as err:
            raise HostServerError(f"cannot listen on {self.host}:{self.port}: {err}") from err
        listener.settimeout(ACCEPT_POLL_SECONDS)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._stopping.clear()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"iso8583-accept-{self.port}", daemon=True
        )
        self._accept_thread.start()
        log.info("ISO 8583 host listening on %s:%d", self.host, self.port)
        return self.port

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every connection and wait for their threads."""
        self._stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the blocked accept() on Linux
                self._listener.shutdown(socket.SHUT_RDWR)
        if self._accept_thread is not None:
            self._accept_thread.join(timeout)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            connections = list(self._connections.items())
        for conn, _ in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                conn.shutdown(socket.SHUT_RDWR)
        for _, thread in connections:
            thread.join(timeout)

    def __enter__(self) -> HostServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        listener = self._listener
        while not self._stopping.is_set():
            try:
                conn, peer = listener.accept()
            except TimeoutError:
                continue
            except OSError as err:
                if not self._stopping.is_set():
                    log.error("accept failed: %s", err)
                    time.sleep(ACCEPT_POLL_SECONDS)
                continue
            name = f"{peer[0]}:{peer[1]}"
            with self._lock:
                if len(self._connections) >= self.max_connections:
                    log.warning("%s: refused, already %d connections", name, len(self._connections))
                    conn.close()
                    continue
                thread = threading.Thread(
                    target=self._serve_connection, args=(conn, name), name=f"iso8583-{name}"
                )
                thread.daemon = True
                self._connections[conn] = thread
            thread.start()

    # ----- one connection ---------------------------------------------------------------------

    def _serve_connection(self, conn: socket.socket, peer: str) -> None:
        decoder = iso.FrameDecoder(self.table.max_message_bytes)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while not self._stopping.is_set():
                conn.settimeout(self.frame_timeout if decoder.pending else self.idle_timeout)
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    if decoder.pending:
                        log.warning(
                            "%s: truncated frame, %s then silence", peer, decoder.describe_pending()
                        )
                    else:
                        log.info("%s: idle for %.0f s, closing", peer, self.idle_timeout)
                    return
                except OSError as err:
                    if not self._stopping.is_set():
                        log.info("%s: connection lost: %s", peer, err)
                    return
                if not data:
                    if decoder.pending:
                        log.warning("%s: closed mid-frame, %s", peer, decoder.describe_pending())
                    return
                try:
                    bodies = decoder.feed(data)
                except MessageFormatError as err:
                    log.warning("%s: bad frame, closing: %s", peer, err)
                    return
                for body in bodies:
                    try:
                        answer = self._answer(body, peer)
                    except Exception:  # a bug or a dead key store must not kill the server
                        log.exception("%s: unexpected failure, closing", peer)
                        return
                    if answer is None:
                        return
                    conn.sendall(iso.frame(answer))
        except OSError as err:
            log.info("%s: connection lost while answering: %s", peer, err)
        finally:
            with self._lock:
                self._connections.pop(conn, None)
            conn.close()

    def _answer(self, body: bytes, peer: str) -> bytes | None:
        """The encoded answer to one message, or None to close the connection."""
        try:
            message = iso.decode_message(body, self.table, check=False)
        except MessageFormatError as err:
            log.warning("%s: malformed message, closing: %s", peer, err)
            return None
        rule = self.table.messages.get(message.mti)
        if rule is None or rule.response is None:
            log.warning("%s: message type %r is not a request, closing", peer, message.mti)
            return None
        terminal = message.fields.get("41")
        key = self.mac_key_for(terminal) if isinstance(terminal, str) else None
        if key is None:
            log.warning("%s: %s from unknown terminal %r refused", peer, message.mti, terminal)
            return self._error(message, ResponseCode.SECURITY_VIOLATION, None, peer)
        try:
            iso.verify_mac(body, message, key)
        except MacError as err:
            log.warning("%s: %s", peer, err)
            return self._error(message, ResponseCode.SECURITY_VIOLATION, key, peer)
        try:
            iso.check_message(message, self.table)
            kind = iso_mapping.request_kind(message, self.table)
            request = iso_mapping.to_host_request(message, self.now(), self.table)
        except MessageFormatError as err:
            log.warning("%s: %s %s format error: %s", peer, terminal, message.mti, err)
            return self._error(message, ResponseCode.FORMAT_ERROR, key, peer)
        started = time.perf_counter()
        try:
            response = self.bank.handle(request)
        except Exception:
            log.exception("%s: the bank failed on %s %s", peer, terminal, message.mti)
            return self._error(message, ResponseCode.SYSTEM_MALFUNCTION, key, peer)
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.info(
            "%s %s stan=%s pc=%s pan=%s -> %s (%.1f ms)%s",
            terminal,
            message.mti,
            request.stan,
            message.text("3") or "-",
            iso.mask_pan(request.pan) if request.pan else "-",
            response.response_code.value,
            elapsed_ms,
            f" {response.message}" if response.message else "",
        )
        try:
            answer = iso_mapping.to_iso_response(message, response, kind, self.table)
            encoded = iso.encode_message(answer, key, self.table)
        except MessageFormatError as err:
            log.error("%s: cannot encode the answer to %s: %s", peer, message.mti, err)
            return self._error(message, ResponseCode.SYSTEM_MALFUNCTION, key, peer)
        self._count_served()
        return encoded

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

    def _count_served(self) -> None:
        with self._lock:
            self.served += 1


def serve(settings: Settings, host: str, port: int) -> None:
    """Run the host server on the bank database until interrupted (Ctrl-C)."""
    from host.database import database_url, make_engine

    try:
        service = importlib.import_module("host.service")
        crypto_keys = importlib.import_module("host.crypto_keys")
    except ImportError as err:
        raise HostServerError(f"the authorisation service is not available: {err}") from err
    engine = make_engine(database_url(settings))
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
    server = HostServer(bank, mac_key_for, host=host, port=port)
    try:
        bound = server.start()
        print(f"ISO 8583 host listening on {host}:{bound} (Ctrl-C to stop)", flush=True)
        threading.Event().wait()
    finally:
        server.stop()
        engine.dispose()
