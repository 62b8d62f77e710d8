"""The emulator's end of a serial link: read with a timeout, write, close.

PtyEndpoint holds the master side of an OS pseudo-terminal; the driver opens `port` (the slave).
Other backends: socket_endpoint.py (TCP on 127.0.0.1), sim_endpoint.py (in-process, sim://).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import termios
import tty
from collections.abc import Iterable
from typing import Protocol

from peripherals.links.registry import LIVE


class LinkClosed(ConnectionError):
    """The link's other end is gone or the endpoint was closed."""


class LinkInUse(LinkClosed):
    """The link already has a driver on it, or its name is taken."""


class Endpoint(Protocol):
    url: str

    def read(self, timeout: float) -> bytes:
        """Bytes that arrived within `timeout` seconds; b"" if none."""
        ...

    def wait(self, timeout: float) -> bool:
        """Whether `read` has something to do (bytes, or a driver to accept) within `timeout`
        seconds; consumes nothing."""
        ...

    def write(self, data: bytes) -> None: ...

    def interrupt(self) -> None:
        """Make a `wait` in progress return at once (or the next one, if none is waiting)."""
        ...

    def close(self) -> None: ...


class Interrupt:
    """An eventfd a wait watches beside its descriptors, so another thread can end the wait."""

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._closed = False

    def wake(self) -> None:
        if not self._closed:
            with contextlib.suppress(OSError):
                os.eventfd_write(self.fd, 1)

    def readable(self, fds: Iterable[int], timeout: float) -> set[int]:
        """Those of `fds` readable within `timeout` seconds, or at once, with whichever are
        ready then, when woken (the wake is used up)."""
        ready = ready_descriptors((*fds, self.fd), select.POLLIN, timeout)
        if self.fd in ready:
            ready.discard(self.fd)
            with contextlib.suppress(OSError):  # BlockingIOError: already used up
                os.eventfd_read(self.fd)
        return ready

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self.fd)


class PtyEndpoint:
    """A pseudo-terminal pair, both sides raw, so bytes pass through unchanged."""

    WRITE_TIMEOUT = 2.0

    def __init__(self) -> None:
        self._master, self._slave = os.openpty()
        # Raw at once: the default line discipline would echo and rewrite bytes (CR/LF, ^C).
        tty.setraw(self._master, termios.TCSANOW)
        tty.setraw(self._slave, termios.TCSANOW)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self.url = self.port
        self._interrupt = Interrupt()
        self._closed = False
        LIVE.add("endpoint", self.url, self)

    def fileno(self) -> int:
        """The emulator's end of the pty."""
        return self._master

    def wait(self, timeout: float) -> bool:
        if self._closed:
            raise LinkClosed(self.url)
        return bool(self._interrupt.readable((self._master,), timeout))

    def interrupt(self) -> None:
        self._interrupt.wake()

    def read(self, timeout: float) -> bytes:
        if self._closed:
            raise LinkClosed(self.url)
        if not _wait_for(self._master, select.POLLIN, timeout):
            return b""
        try:
            return os.read(self._master, 4096)
        except BlockingIOError:
            return b""
        except OSError as err:
            # EIO: no process has the slave open any more; our own slave fd keeps that rare.
            if err.errno == errno.EIO:
                return b""
            raise LinkClosed(f"{self.url}: {err}") from err

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._closed:
                raise LinkClosed(self.url)
            if not _wait_for(self._master, select.POLLOUT, self.WRITE_TIMEOUT):
                raise LinkClosed(f"{self.url}: write timed out (kernel buffer full)")
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                continue
            view = view[written:]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._interrupt.close()
        LIVE.remove(self)


def ready_descriptors(fds: Iterable[int], event: int, timeout: float) -> set[int]:
    """Those of `fds` ready for `event` within `timeout` seconds (empty when none is).

    poll(2), not select(2): select cannot watch a descriptor above 1023, and a process serving a
    fleet of ATMs holds thousands.
    """
    poller = select.poll()
    for fd in fds:
        poller.register(fd, event)
    return {fd for fd, _ in poller.poll(max(0, int(timeout * 1000 + 0.999)))}


def _wait_for(fd: int, event: int, timeout: float) -> bool:
    """Whether `fd` is ready for `event` within `timeout` seconds."""
    return bool(ready_descriptors((fd,), event, timeout))
