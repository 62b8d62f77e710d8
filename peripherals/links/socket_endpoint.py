"""The emulator's end of a TCP link on 127.0.0.1: the driver opens `socket://127.0.0.1:PORT`.

One driver at a time; a newer connection replaces an older one, and a driver may reconnect.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading

from peripherals.links.endpoint import Interrupt, LinkClosed, ready_descriptors
from peripherals.links.registry import LIVE

log = logging.getLogger(__name__)


class SocketEndpoint:
    """A listening TCP socket; bytes from the connected driver are the link's input."""

    WRITE_TIMEOUT = 2.0

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        try:
            self._listener = socket.create_server((host, port))
        except OSError as err:
            raise LinkClosed(f"cannot listen on {host}:{port}: {err}") from err
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"socket://{host}:{self.port}"
        self._client: socket.socket | None = None
        self._lock = threading.Lock()
        self._interrupt = Interrupt()
        self._closed = False
        LIVE.add("endpoint", self.url, self)

    def fileno(self) -> int:
        """The listening socket's descriptor."""
        return self._listener.fileno()

    @property
    def connected(self) -> bool:
        return self._client is not None

    def wait(self, timeout: float) -> bool:
        if self._closed:
            raise LinkClosed(self.url)
        watch = [self._listener] if self._client is None else [self._listener, self._client]
        try:
            return bool(self._interrupt.readable([s.fileno() for s in watch], timeout))
        except (OSError, ValueError) as err:  # closed under our feet
            if self._closed:
                raise LinkClosed(self.url) from err
            return False

    def interrupt(self) -> None:
        self._interrupt.wake()

    def read(self, timeout: float) -> bytes:
        if self._closed:
            raise LinkClosed(self.url)
        client = self._client
        watch = [self._listener] if client is None else [self._listener, client]
        try:
            ready = _ready(watch, select.POLLIN, timeout)
        except (OSError, ValueError) as err:  # closed under our feet
            if self._closed:
                raise LinkClosed(self.url) from err
            return b""
        if self._listener in ready:
            self._accept()
        if client is not None and client in ready:
            try:
                data = client.recv(4096)
            except BlockingIOError:
                return b""
            except OSError as err:
                log.info("%s: driver connection failed: %s", self.url, err)
                self._drop(client)
                return b""
            if not data:
                log.info("%s: driver disconnected", self.url)
                self._drop(client)
            return data
        return b""

    def write(self, data: bytes) -> None:
        if self._client is None and not self._closed:
            self._accept()  # a driver that has just connected may not be accepted yet
        with self._lock:
            if self._closed:
                raise LinkClosed(self.url)
            client = self._client
            if client is None:
                raise LinkClosed(f"{self.url}: no driver connected")
            try:
                # poll + send keeps the socket non-blocking for the reader thread
                view = memoryview(data)
                while view:
                    if not _ready([client], select.POLLOUT, self.WRITE_TIMEOUT):
                        raise LinkClosed(f"{self.url}: write timed out (driver not reading)")
                    view = view[client.send(view) :]
            except (OSError, ValueError) as err:
                self._client = None
                with contextlib.suppress(OSError):
                    client.close()
                raise LinkClosed(f"{self.url}: driver connection lost: {err}") from err

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(OSError):
                client.close()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._interrupt.close()
        LIVE.remove(self)

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, OSError):
            return
        conn.setblocking(False)
        # A serial line sends each byte at once; Nagle's algorithm would hold small replies back.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            old, self._client = self._client, conn
        if old is not None:
            log.info("%s: a new driver connection replaces the old one", self.url)
            with contextlib.suppress(OSError):
                old.close()

    def _drop(self, client: socket.socket) -> None:
        with self._lock:
            if self._client is client:
                self._client = None
        with contextlib.suppress(OSError):
            client.close()


def _ready(sockets: list[socket.socket], event: int, timeout: float) -> list[socket.socket]:
    """Those of `sockets` ready for `event` within `timeout` seconds (poll: no fd limit)."""
    ready = ready_descriptors([s.fileno() for s in sockets], event, timeout)
    return [s for s in sockets if s.fileno() in ready]
