"""The bare I/O a withdrawal session's floor is made of, sampled between its sessions so that the
floor and the sessions see the same machine: a pty round trip to an emulator, a TCP round trip,
a PostgreSQL transaction with the conditional UPDATE a withdrawal needs, an append and fsync.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import threading
import time
from pathlib import Path
from types import TracebackType

import sqlalchemy as sa

from device.drivers.base import SerialDriver
from peripherals.emulator import Emulator
from peripherals.links.endpoint import PtyEndpoint
from peripherals.links.runner import LinkRunner

_PTY_BYTES = b"0123456789ABCDEF"
_TCP_BYTES = b"x" * 64
_JOURNAL_LINE = b"x" * 120 + b"\n"
_CONDITIONAL_UPDATE = sa.text(
    "UPDATE accounts SET available_balance = available_balance - 0 "
    "WHERE number = '10000001' AND available_balance >= 0 RETURNING available_balance"
)


class _Echo(Emulator):
    NAME = "echo"

    def receive(self, data: bytes) -> None:
        self.send(data)


class IoFloor:
    """Samples of each kind of bare I/O, taken by `sample()` whenever the caller chooses; each
    figure is the median of its samples, in seconds."""

    def __init__(self, engine: sa.Engine, folder: Path) -> None:
        self._engine = engine
        self._probe = folder / "fsync-probe"
        self.pty: list[float] = []
        self.tcp: list[float] = []
        self.database: list[float] = []
        self.disk: list[float] = []
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> IoFloor:
        with contextlib.ExitStack() as stack:
            link = stack.enter_context(LinkRunner(_Echo(), PtyEndpoint()))
            self._driver = SerialDriver(link.url)
            stack.callback(self._driver.close)
            server = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
            echo = threading.Thread(target=self._echo, args=(server,), daemon=True)
            echo.start()
            stack.callback(echo.join, 2)
            self._client = stack.enter_context(socket.create_connection(server.getsockname()))
            self._client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._fd = os.open(self._probe, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            stack.callback(self._probe.unlink)
            stack.callback(os.close, self._fd)
            self._stack = stack.pop_all()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()

    @staticmethod
    def _echo(server: socket.socket) -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    def sample(self, *, pty: int = 8, tcp: int = 4, database: int = 2, disk: int = 2) -> None:
        """Take that many more samples of each."""
        for _ in range(pty):
            start = time.perf_counter()
            self._driver.write(_PTY_BYTES)
            got = b""
            while len(got) < len(_PTY_BYTES):
                got += self._driver.read_some(time.monotonic() + 1.0)
            self.pty.append(time.perf_counter() - start)
        for _ in range(tcp):
            start = time.perf_counter()
            self._client.sendall(_TCP_BYTES)
            got = b""
            while len(got) < len(_TCP_BYTES):
                got += self._client.recv(4096)
            self.tcp.append(time.perf_counter() - start)
        for _ in range(database):
            start = time.perf_counter()
            with self._engine.begin() as conn:
                conn.execute(_CONDITIONAL_UPDATE).one()
            self.database.append(time.perf_counter() - start)
        for _ in range(disk):
            start = time.perf_counter()
            os.write(self._fd, _JOURNAL_LINE)
            os.fsync(self._fd)
            self.disk.append(time.perf_counter() - start)

    def medians(self) -> tuple[float, float, float, float]:
        """(pty round trip, TCP round trip, PostgreSQL transaction, append and fsync)."""
        median = statistics.median
        return median(self.pty), median(self.tcp), median(self.database), median(self.disk)
