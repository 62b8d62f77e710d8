"""pyserial's socket:// port as a driver needs it: each write leaves at once, and a close does not
sleep (pyserial waits 0.3 s after every close for servers slow to take a new connection)."""

from __future__ import annotations

import contextlib
import socket

from serial.urlhandler.protocol_socket import Serial as SocketSerial


class TcpSerial(SocketSerial):
    """A serial link tunnelled over TCP (`socket://HOST:PORT`)."""

    _socket: socket.socket | None  # pyserial's own connection, left out of its type stubs

    def open(self) -> None:
        super().open()
        assert self._socket is not None
        # Nagle's algorithm would hold a short command back until the last reply's segment is
        # acknowledged: a delayed ACK of about 40 ms on every exchange.
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if not self.is_open:
            return
        connection, self._socket = self._socket, None
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        self.is_open = False
