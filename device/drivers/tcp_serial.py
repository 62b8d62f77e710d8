"""pyserial's socket:// port as a driver needs it: each write leaves at once, waits use poll(2)
(select cannot watch a descriptor above 1023, and a fleet of ATMs holds thousands), and a close
does not sleep (pyserial waits 0.3 s after every close for servers slow to take a new one)."""

from __future__ import annotations

import contextlib
import select
import socket

from serial.serialutil import PortNotOpenError, SerialException, Timeout
from serial.urlhandler.protocol_socket import Serial as SocketSerial

from device.drivers.polled_serial import poll_milliseconds, read_up_to, write_all


class TcpSerial(SocketSerial):
    """A serial link tunnelled over TCP (`socket://HOST:PORT`)."""

    _socket: socket.socket | None  # pyserial's own connection, left out of its type stubs

    def open(self) -> None:
        super().open()
        # Nagle's algorithm would hold a short command back until the last reply's segment is
        # acknowledged: a delayed ACK of about 40 ms on every exchange.
        self._connection().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if not self.is_open:
            return
        connection, self._socket = self._socket, None
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        self.is_open = False

    @property
    def in_waiting(self) -> int:
        """1 when something can be read (a socket does not say how much), as pyserial's."""
        return int(self._ready(select.POLLIN, Timeout(0)))

    def read(self, size: int = 1) -> bytes:
        connection = self._connection()
        return read_up_to(
            size,
            connection.recv,
            lambda timeout: self._ready(select.POLLIN, timeout),
            self.timeout,
            "socket disconnected",
        )

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        connection = self._connection()
        return write_all(
            data,
            connection.send,
            lambda timeout: self._ready(select.POLLOUT, timeout),
            self.write_timeout,
        )

    def reset_input_buffer(self) -> None:
        connection = self._connection()
        while self._ready(select.POLLIN, Timeout(0)):
            try:
                if not connection.recv(4096):
                    return  # the other end closed; the next read says so
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                raise SerialException(f"read failed: {err}") from err

    def _connection(self) -> socket.socket:
        if not self.is_open or self._socket is None:
            raise PortNotOpenError()
        return self._socket

    def _ready(self, event: int, timeout: Timeout) -> bool:
        poller = select.poll()
        poller.register(self._connection(), event)
        return bool(poller.poll(poll_milliseconds(timeout)))
