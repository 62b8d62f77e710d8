"""The driver's socket:// port: writes leave at once (TCP_NODELAY), a close does not sleep, and a
read says when the other end went away."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import serial
from pytest_mock import MockerFixture

from device.drivers.base import open_port
from device.drivers.tcp_serial import TcpSerial


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    yield server
    server.close()


def test_a_socket_url_opens_with_nagle_off_and_carries_bytes(listener: socket.socket) -> None:
    port = open_port(f"socket://127.0.0.1:{listener.getsockname()[1]}", timeout=1.0)
    accepted, _ = listener.accept()
    try:
        assert isinstance(port, TcpSerial)
        assert port._socket is not None
        assert port._socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        port.write(b"\x02ping")
        assert accepted.recv(16) == b"\x02ping"
        accepted.sendall(b"\x06")
        assert port.read(1) == b"\x06"
    finally:
        port.close()
        accepted.close()


def test_a_close_ends_the_connection_without_sleeping(
    listener: socket.socket, mocker: MockerFixture
) -> None:
    port = open_port(f"socket://127.0.0.1:{listener.getsockname()[1]}", timeout=1.0)
    accepted, _ = listener.accept()
    sleep = mocker.patch("serial.urlhandler.protocol_socket.time.sleep")
    port.close()
    assert not port.is_open and sleep.call_count == 0
    accepted.settimeout(1.0)
    assert accepted.recv(1) == b""  # the other end sees the connection closed
    accepted.close()


def test_a_read_gets_what_came_then_says_the_other_end_went_away(listener: socket.socket) -> None:
    port = open_port(f"socket://127.0.0.1:{listener.getsockname()[1]}", timeout=1.0)
    accepted, _ = listener.accept()
    try:
        accepted.sendall(b"\x02ab")
        assert port.read(3) == b"\x02ab"
        port.timeout = 0.1
        assert port.read(1) == b""  # nothing within the timeout: what came, nothing more
        accepted.close()
        with pytest.raises(serial.SerialException, match=r"^socket disconnected$"):
            port.read(1)
    finally:
        port.close()
