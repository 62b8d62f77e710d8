"""A thread that joins an emulator to an endpoint, applying link faults on the way both ways.

Link faults: drop, delay, corrupt a byte, split a frame, disconnect (until cleared or reconnect).
Optional line timing paces bytes at the configured baud rate, 10 bits per byte (start, 8, stop).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from peripherals.emulator import Emulator
from peripherals.fault_catalogue import LINK, fault_names
from peripherals.faults import FaultSet
from peripherals.links.endpoint import Endpoint, LinkClosed
from peripherals.links.registry import LIVE, THREAD_PREFIX
from peripherals.links.sim_endpoint import SimEndpoint

log = logging.getLogger(__name__)

LINK_FAULTS = fault_names(LINK)  # and their parameters: peripherals/fault_catalogue.py
BITS_PER_BYTE = 10
SPLIT_GAP_SECONDS = 0.05


class LinkRunner:
    """Moves bytes between one emulator and one endpoint in a daemon thread.

    On an inline link (in-process) a driver's write also runs a pass in the driver's own
    thread when no link fault is armed and no line timing is on: the command reaches the device
    and its ACK and reply wait at the driver when the write returns, with no hand-over between
    threads (see `pass_in_caller`). Faults and pacing stay with the link thread, which sleeps
    while it applies them; what the device's own code does, it does inside the driver's write.
    """

    POLL_SECONDS = 0.01  # while the device has something to time
    # With nothing to time the thread sleeps until a byte comes or it is woken (a fault armed,
    # the device speaking by itself, stop): hundreds of idle ATMs in one fleet would otherwise
    # spend whole cores waking link threads. The bound only limits what a wake nobody gave
    # would cost.
    IDLE_POLL_SECONDS = 5.0

    def __init__(
        self,
        emulator: Emulator,
        endpoint: Endpoint,
        *,
        baud: int = 9600,
        line_timing: bool = False,
    ) -> None:
        if baud <= 0:
            raise ValueError(f"baud rate {baud!r}: expected a whole number greater than 0")
        self.emulator = emulator
        self.endpoint = endpoint
        self.baud = baud
        self.line_timing = line_timing
        self.faults = FaultSet(f"{emulator.NAME}.link", LINK_FAULTS)
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self._pump_lock = threading.Lock()
        # Bytes across the link each way, for a caller comparing them with the driver's counts.
        self.bytes_to_driver = 0
        self.bytes_from_driver = 0
        self._holders = 0  # passes carrying bytes that a fault or line timing may hold back
        self._holders_lock = threading.Lock()
        self._caller: int | None = None  # the thread in a pass_in_caller, while it runs one
        self._thread = threading.Thread(
            target=self._run, name=f"{THREAD_PREFIX}link-{emulator.NAME}", daemon=True
        )

    def seconds_for(self, count: int) -> float:
        """How long `count` bytes take on the line at the configured baud rate."""
        return count * BITS_PER_BYTE / self.baud

    def _paced(self, data: bytes) -> list[bytes]:
        """`data` in pieces of about 10 ms of line time, each after its line time has passed."""
        if not self.line_timing:
            return [data]
        step = max(1, self.baud // (BITS_PER_BYTE * 100))
        return [data[i : i + step] for i in range(0, len(data), step)]

    def _wait_line(self, piece: bytes) -> None:
        if self.line_timing:
            time.sleep(self.seconds_for(len(piece)))

    @property
    def url(self) -> str:
        return self.endpoint.url

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> LinkRunner:
        LIVE.add("runner", f"{self.emulator.NAME} on {self.url}", self, self._thread)
        self.emulator.attach(self._to_driver)
        for faults in (self.faults, self.emulator.faults):
            faults.watch(self.endpoint.interrupt)
        if isinstance(self.endpoint, SimEndpoint) and self.endpoint.inline:
            self.endpoint.after_driver_write(self.pass_in_caller)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Tell the link thread to end at once (`stop` then waits for it)."""
        self._stop.set()
        self.endpoint.interrupt()

    def stop(self) -> None:
        self.request_stop()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        for faults in (self.faults, self.emulator.faults):
            faults.unwatch(self.endpoint.interrupt)
        self.emulator.detach()
        self.endpoint.close()
        LIVE.remove(self)

    def reconnect(self) -> None:
        """End a `disconnect` fault: bytes cross the link again."""
        self.faults.clear("disconnect")

    def __enter__(self) -> LinkRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _apply(self, data: bytes) -> tuple[list[bytes], float]:
        """What of `data` crosses the link now, as the pieces written (empty if lost), and the
        seconds between pieces."""
        if self.faults.is_armed("disconnect"):
            return [], 0.0
        if self.faults.take("drop") is not None:
            return [], 0.0
        delay = self.faults.take("delay")
        if delay is not None:
            time.sleep(float(delay.params.get("seconds", 0.3)))
        corrupt = self.faults.take("corrupt")
        if corrupt is not None and data:
            index = min(int(corrupt.params.get("index", len(data) // 2)), len(data) - 1)
            data = data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]
        split = self.faults.take("split")
        if split is not None and len(data) > 1:
            at = min(max(int(split.params.get("at", len(data) // 2)), 1), len(data) - 1)
            return [data[:at], data[at:]], float(split.params.get("gap", SPLIT_GAP_SECONDS))
        return [data], 0.0

    @property
    def holding(self) -> bool:
        """Whether bytes are crossing with a link fault armed or line timing on, so may be held
        back. Set before a fault is taken and cleared once its bytes are delivered: whoever
        reads `faults.active()` and then `holding` sees one or the other while a fault acts."""
        return self._holders > 0

    def _cross(self, data: bytes, deliver: Callable[[bytes], bool]) -> None:
        """Carry `data` over the link, faults applied, to `deliver` piece by piece (it returns
        False to stop)."""
        if not self.line_timing and not self.faults.active():
            deliver(data)  # nothing to apply: the bytes cross as they are
            return
        with self._holders_lock:
            self._holders += 1
        try:
            pieces, gap = self._apply(data)
            for i, piece in enumerate(pieces):
                if i:
                    time.sleep(gap)  # a split frame arrives in two reads
                for chunk in self._paced(piece):
                    self._wait_line(chunk)
                    if not deliver(chunk):
                        return
        finally:
            with self._holders_lock:
                self._holders -= 1

    def _timing(self) -> bool:
        """Whether the device or the link has something that time acts on."""
        return (
            self.emulator.holds_partial_frame()
            or self.emulator.timer_running()
            or self.emulator.waiting_on_link()
            or self.line_timing
            or bool(self.faults.active())
            or bool(self.emulator.faults.active())
        )

    def _poll_seconds(self) -> float:
        """How long the thread may wait for a byte before the device's timers need a tick."""
        return self.POLL_SECONDS if self._timing() else self.IDLE_POLL_SECONDS

    def handled(self, sent_by_driver: int) -> bool:
        """Whether a `pump` now would find nothing to do: the `sent_by_driver` bytes the driver
        has written all reached the emulator in passes that have ended, and nothing on the
        device or the link waits for time."""
        if self._timing() or not self._pump_lock.acquire(blocking=False):
            return False
        try:
            return sent_by_driver == self.bytes_from_driver
        finally:
            self._pump_lock.release()

    def _to_driver(self, data: bytes) -> None:
        def write(chunk: bytes) -> bool:
            try:
                self.endpoint.write(chunk)
            except LinkClosed as err:
                log.warning("%s: %d bytes not sent: %s", self.url, len(chunk), err)
                return False
            self.bytes_to_driver += len(chunk)
            return True

        with self._write_lock:
            self._cross(data, write)
        if threading.get_ident() not in (self._thread.ident, self._caller):
            # The device spoke by itself (a card pushed in, a key pressed): a reply may now
            # await its ACK, so the sleeping link thread must look at its timers again.
            self.endpoint.interrupt()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.endpoint.wait(self._poll_seconds())
                self.pump()
            except LinkClosed:
                if self._stop.is_set():
                    return
                log.warning("%s: link closed", self.url)
                return

    def count_from(self, waiting_at_driver: int) -> None:
        """Start counting the bytes of each way again, for a driver that has just opened its
        end with `waiting_at_driver` bytes already there."""
        with self._pump_lock, self._write_lock:
            self.bytes_to_driver = waiting_at_driver
            self.bytes_from_driver = 0

    def _to_emulator(self, chunk: bytes) -> bool:
        with self.emulator.lock:
            try:
                self.emulator.receive(chunk)
            except Exception:  # a device bug must not kill the link thread
                log.exception("%s: emulator failed on input", self.emulator.NAME)
        return True

    def pump(self) -> bool:
        """One pass of the link, in the calling thread: what the driver sent reaches the
        emulator, and the emulator's timers run at its clock's time. True if a byte crossed
        either way. The link thread makes the same passes; one lock keeps passes apart, so a
        caller that pumps knows that every byte sent before has been handled."""
        with self._pump_lock:
            return self._pass()

    def pass_in_caller(self) -> bool:
        """A pass in the calling thread (a driver's, which has just written), unless a link
        fault or line timing may hold bytes back (the link thread applies those) or the link
        thread is in a pass; False when no pass ran (the link thread must then look). The link
        thread is woken only if the device or the link has something to time after the pass,
        such as a reply awaiting its ACK."""
        if self.line_timing or self.faults.active():
            return False
        if not self._pump_lock.acquire(blocking=False):
            return False
        self._caller = threading.get_ident()
        try:
            self._pass()
        finally:
            self._caller = None
            self._pump_lock.release()
        if self._timing():
            self.endpoint.interrupt()
        return True

    def _pass(self) -> bool:
        """`pump`'s pass; the caller holds the pump lock."""
        sent = self.bytes_to_driver
        data = self.endpoint.read(0.0)
        self.bytes_from_driver += len(data)
        if data:
            # On a link, each chunk the driver sends is a command: an `on_command` fault
            # counts them, and would never fire if nothing did.
            self.faults.command_seen()
            self._cross(data, self._to_emulator)
        with self.emulator.lock:
            try:
                self.emulator.tick(self.emulator.clock())
            except Exception:
                log.exception("%s: emulator timer failed", self.emulator.NAME)
        return bool(data) or self.bytes_to_driver != sent
