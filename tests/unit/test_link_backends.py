"""Every link backend (pty, socket, sim, inline) carries all bytes both ways and applies link
faults; an inline link passes bytes in the driver's thread when nothing on it needs time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from device.controller.ports import LinkError
from device.drivers.base import SerialDriver
from peripherals.emulator import Emulator
from peripherals.links.backends import UnknownBackend, open_endpoint
from peripherals.links.endpoint import LinkClosed, LinkInUse
from peripherals.links.registry import LIVE
from peripherals.links.runner import LinkRunner
from peripherals.links.sim_endpoint import SimEndpoint
from peripherals.links.socket_endpoint import SocketEndpoint


class Recorder(Emulator):
    """Echoes what it receives and keeps each piece, to see how bytes arrived."""

    NAME = "echo"

    def __init__(self) -> None:
        super().__init__()
        self.pieces: list[bytes] = []

    def receive(self, data: bytes) -> None:
        self.pieces.append(data)
        self.send(data)

    @property
    def received(self) -> bytes:
        return b"".join(self.pieces)


def read_exactly(driver: SerialDriver, count: int, seconds: float = 2.0) -> bytes:
    deadline = time.monotonic() + seconds
    out = b""
    while len(out) < count and time.monotonic() < deadline:
        out += driver.read_some(deadline)
    return out


def read_quiet(driver: SerialDriver, seconds: float = 0.15) -> bytes:
    """What arrives within `seconds` (for asserting that nothing does)."""
    deadline = time.monotonic() + seconds
    out = b""
    while time.monotonic() < deadline:
        out += driver.read_some(deadline)
    return out


def wait_for(condition: object, seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def link(link_backend: str) -> Iterator[tuple[LinkRunner, Recorder, SerialDriver]]:
    device = Recorder()
    runner = LinkRunner(device, open_endpoint(link_backend, "echo")).start()
    driver = SerialDriver(runner.url)
    # A socket link drops what the device sends before its runner has accepted the driver.
    deadline = time.monotonic() + 5
    while not getattr(runner.endpoint, "connected", True) and time.monotonic() < deadline:
        time.sleep(0.005)
    yield runner, device, driver
    driver.close()
    runner.stop()


Link = tuple[LinkRunner, Recorder, SerialDriver]


def test_urls_name_the_backend(link_backend: str, link: Link) -> None:
    runner, _, _ = link
    expected = {
        "pty": "/dev/",
        "socket": "socket://127.0.0.1:",
        "sim": "sim://echo",
        "inline": "sim://echo",
    }
    assert runner.url.startswith(expected[link_backend])


def test_all_256_byte_values_cross_both_ways(link: Link) -> None:
    _, device, driver = link
    payload = bytes(range(256))
    driver.write(payload)
    assert read_exactly(driver, 256) == payload
    assert device.received == payload
    device.send(payload[::-1])  # device-initiated, no echo involved
    assert read_exactly(driver, 256) == payload[::-1]


def test_a_stopped_device_end_is_a_clear_link_error(link_backend: str, link: Link) -> None:
    runner, _, driver = link
    runner.stop()
    with pytest.raises(LinkError, match=rf"^{runner.url}: read failed: .+") as caught:
        driver.read_some(time.monotonic() + 0.5)
    assert isinstance(caught.value, ConnectionError)
    if link_backend != "socket":  # TCP may take one write before it notices
        with pytest.raises(LinkError, match="write failed"):
            driver.write(b"x")


def test_endpoint_refuses_use_after_close(link_backend: str) -> None:
    endpoint = open_endpoint(link_backend, "echo")
    endpoint.close()
    endpoint.close()  # twice is harmless
    with pytest.raises(LinkClosed):
        endpoint.write(b"x")
    with pytest.raises(LinkClosed):
        endpoint.read(0.01)


def test_drop_loses_one_chunk_then_heals(link: Link) -> None:
    runner, device, driver = link
    runner.faults.inject("drop", mode="once")
    driver.write(b"lost")
    assert read_quiet(driver) == b""
    assert device.received == b""
    driver.write(b"kept")
    assert read_exactly(driver, 4) == b"kept"


def test_delay_holds_bytes_for_the_given_seconds(link: Link) -> None:
    runner, _, driver = link
    runner.faults.inject("delay", mode="once", seconds=0.25)
    started = time.monotonic()
    driver.write(b"late")
    assert read_exactly(driver, 4) == b"late"
    assert time.monotonic() - started >= 0.25


def test_corrupt_flips_the_chosen_byte(link: Link) -> None:
    runner, device, driver = link
    runner.faults.inject("corrupt", mode="once", index=2)
    driver.write(b"\x10\x20\x30\x40")
    assert read_exactly(driver, 4) == b"\x10\x20\xcf\x40"
    assert device.received == b"\x10\x20\xcf\x40"


def test_split_delivers_a_frame_in_two_pieces(link: Link) -> None:
    runner, device, driver = link
    runner.faults.inject("split", mode="once", at=2)
    driver.write(b"abcdef")
    assert read_exactly(driver, 6) == b"abcdef"
    assert device.pieces == [b"ab", b"cdef"]


def test_split_towards_the_driver_arrives_in_two_reads(link: Link) -> None:
    runner, device, driver = link
    runner.faults.inject("split", mode="once", at=3, gap=0.3)
    sender = threading.Thread(target=device.send, args=(b"123456",))
    sender.start()  # send() returns only after both pieces are written
    first = read_exactly(driver, 3)
    started = time.monotonic()
    rest = read_exactly(driver, 3)
    sender.join(2)
    assert (first, rest) == (b"123", b"456")
    assert time.monotonic() - started >= 0.1  # the second piece came later


def test_disconnect_cuts_both_ways_until_reconnect(link: Link) -> None:
    runner, device, driver = link
    runner.faults.inject("disconnect")
    driver.write(b"x")
    device.send(b"y")
    assert read_quiet(driver) == b""
    assert device.received == b""
    runner.reconnect()
    driver.write(b"z")
    assert read_exactly(driver, 1) == b"z"


def test_driver_may_close_and_reopen_its_port(link: Link) -> None:
    runner, _, driver = link
    driver.close()
    with SerialDriver(runner.url) as again:
        again.write(b"again")
        assert read_exactly(again, 5) == b"again"


def test_line_timing_paces_bytes_at_the_baud_rate() -> None:
    device = Recorder()
    runner = LinkRunner(device, open_endpoint("sim", "timed"), baud=115200, line_timing=True)
    assert runner.seconds_for(11520) == pytest.approx(1.0)
    with runner, SerialDriver(runner.url) as driver:
        payload = bytes(range(256)) * 6  # 1536 bytes: 0.133 s each way at 115200 baud
        started = time.monotonic()
        driver.write(payload)
        assert read_exactly(driver, len(payload)) == payload
        elapsed = time.monotonic() - started
    assert elapsed >= 2 * runner.seconds_for(len(payload)) * 0.9
    assert len(device.pieces) > 1  # the device saw bytes arrive a few at a time


def test_line_timing_is_off_by_default() -> None:
    device = Recorder()
    with (
        LinkRunner(device, open_endpoint("sim", "untimed"), baud=300) as runner,
        SerialDriver(runner.url) as driver,
    ):
        started = time.monotonic()
        driver.write(bytes(300))
        assert len(read_exactly(driver, 300)) == 300
        assert time.monotonic() - started < 0.5  # 300 baud would take 20 s


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(UnknownBackend, match="valid: pty, socket, sim, inline"):
        open_endpoint("usb", "echo")


def test_sim_names_are_unique_and_checked() -> None:
    first = open_endpoint("sim", "twin")
    second = open_endpoint("sim", "twin")
    try:
        assert (first.url, second.url) == ("sim://twin", "sim://twin-2")
        with pytest.raises(LinkInUse):
            SimEndpoint("twin")
        with pytest.raises(ValueError, match="sim link name"):
            SimEndpoint("bad name")
    finally:
        first.close()
        second.close()


def test_sim_port_of_no_device_is_a_clear_error() -> None:
    with pytest.raises(LinkError, match=r"sim://nobody: no emulated device serves that name"):
        SerialDriver("sim://nobody")


def test_sim_port_is_exclusive_like_a_serial_port() -> None:
    with (
        LinkRunner(Recorder(), SimEndpoint("exclusive")) as runner,
        SerialDriver(runner.url),
        pytest.raises(LinkError, match="already open by another driver"),
    ):
        SerialDriver(runner.url)


def test_socket_newest_connection_takes_the_link() -> None:
    device = Recorder()
    with LinkRunner(device, SocketEndpoint()) as runner:
        old = SerialDriver(runner.url)
        old.write(b"1")
        assert read_exactly(old, 1) == b"1"
        with SerialDriver(runner.url) as new:
            new.write(b"2")
            assert read_exactly(new, 1) == b"2"
        with pytest.raises(LinkError):
            read_exactly(old, 1, 0.5)
        old.close()


def test_socket_write_without_a_driver_is_link_closed() -> None:
    endpoint = SocketEndpoint()
    try:
        with pytest.raises(LinkClosed, match="no driver connected"):
            endpoint.write(b"x")
    finally:
        endpoint.close()


def test_the_registry_sees_open_links_and_forgets_closed_ones() -> None:
    endpoint = open_endpoint("sim", "counted")
    runner = LinkRunner(Recorder(), endpoint).start()
    kinds = {(e.kind, e.name) for e in LIVE.entries()}
    assert ("endpoint", "sim://counted") in kinds
    assert ("runner", "echo on sim://counted") in kinds
    runner.stop()
    assert all(e.resource not in (runner, endpoint) for e in LIVE.entries())
    assert wait_for(lambda: not runner.alive)


def test_a_sim_port_closed_again_takes_no_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    # io.IOBase.__del__ closes a collected port again, and the garbage collector may run that
    # while the same thread holds the registry's lock, which is not re-entrant. A lock of its
    # own for this test: a deadlock then stops one thread, not every later test.
    with LinkRunner(Recorder(), SimEndpoint("closed-twice")) as runner:
        driver = SerialDriver(runner.url)
        driver.close()
        monkeypatch.setattr(LIVE, "_lock", threading.Lock())

        def close_again_under_the_lock() -> None:
            with LIVE._lock:
                driver.port.close()

        closer = threading.Thread(target=close_again_under_the_lock, daemon=True)
        closer.start()
        closer.join(2.0)
        monkeypatch.undo()
        assert not closer.is_alive()


class TickCounter(Recorder):
    """Counts the link thread's passes over its timers; one fault makes it time something."""

    FAULTS = frozenset({"tamper"})

    def __init__(self) -> None:
        super().__init__()
        self.ticks = 0
        self.awaiting_ack = False  # as a reader after sending by itself, until the driver ACKs

    def tick(self, now: float) -> None:
        self.ticks += 1

    def waiting_on_link(self) -> bool:
        return self.awaiting_ack


@pytest.fixture
def quiet_link(link_backend: str) -> Iterator[tuple[LinkRunner, TickCounter, SerialDriver]]:
    device = TickCounter()
    runner = LinkRunner(device, open_endpoint(link_backend, "quiet")).start()
    driver = SerialDriver(runner.url)
    driver.write(b"hello")
    assert read_exactly(driver, 5) == b"hello"  # a whole exchange: nothing left to time
    yield runner, device, driver
    driver.close()
    runner.stop()


def test_a_quiet_link_sleeps_until_a_byte_comes(
    quiet_link: tuple[LinkRunner, TickCounter, SerialDriver],
) -> None:
    _, device, driver = quiet_link
    before = device.ticks
    time.sleep(0.5)
    assert device.ticks - before <= 1  # not woken every poll period (10 ms, formerly 0.1 s)
    started = time.monotonic()
    driver.write(b"x")
    assert read_exactly(driver, 1, seconds=0.5) == b"x"
    assert time.monotonic() - started < 0.2  # a byte wakes it at once, not after its sleep


def test_a_fault_armed_on_a_quiet_link_wakes_it_and_stop_ends_it_at_once(
    quiet_link: tuple[LinkRunner, TickCounter, SerialDriver],
) -> None:
    runner, device, _ = quiet_link
    before = device.ticks
    device.faults.inject("tamper")
    # Woken at once, then ticked often while the fault is armed.
    assert wait_for(lambda: device.ticks - before >= 3, seconds=0.3)
    device.faults.clear()
    time.sleep(LinkRunner.POLL_SECONDS * 3)
    before = device.ticks
    time.sleep(0.4)
    assert device.ticks - before <= 1  # asleep again: the wake was used up, not left set
    started = time.monotonic()
    runner.request_stop()
    assert wait_for(lambda: not runner.alive, seconds=0.3)
    assert time.monotonic() - started < 0.3


def test_a_device_speaking_by_itself_wakes_its_quiet_link(
    quiet_link: tuple[LinkRunner, TickCounter, SerialDriver],
) -> None:
    # A card pushed in or a key pressed: the device sends from another thread, and its reply
    # may await an ACK, so the link thread must tick again at once rather than after its sleep.
    _, device, driver = quiet_link
    before = device.ticks
    device.awaiting_ack = True
    device.send(b"unasked")
    assert read_exactly(driver, 7) == b"unasked"
    assert wait_for(lambda: device.ticks - before >= 3, seconds=0.2)


@pytest.mark.parametrize("link_backend", ["inline"])
def test_an_inline_link_answers_inside_the_drivers_write(
    quiet_link: tuple[LinkRunner, TickCounter, SerialDriver],
) -> None:
    _, device, driver = quiet_link
    before = device.ticks
    driver.write(b"x")
    assert driver.port.in_waiting == 1  # the echo is there when the write returns
    time.sleep(0.2)
    # One pass, the driver's: the link thread made none for it.
    assert device.ticks - before == 1
    assert read_exactly(driver, 1) == b"x"


@pytest.mark.parametrize("link_backend", ["inline"])
def test_an_inline_link_wakes_its_thread_when_a_reply_awaits_its_ack(
    quiet_link: tuple[LinkRunner, TickCounter, SerialDriver],
) -> None:
    _, device, driver = quiet_link
    before = device.ticks
    device.awaiting_ack = True  # the echo below then waits for an ACK, which time acts on
    driver.write(b"x")
    assert wait_for(lambda: device.ticks - before >= 3, seconds=0.3)


@pytest.mark.parametrize("link_backend", ["inline"])
def test_an_inline_link_leaves_a_fault_to_its_thread(link: Link) -> None:
    runner, device, driver = link
    runner.faults.inject("delay", mode="once", seconds=0.3)
    driver.write(b"late")
    # The link thread sleeps out the delay: the driver's write did not wait for it.
    assert device.received == b"" and driver.port.in_waiting == 0
    assert read_exactly(driver, 4) == b"late"
