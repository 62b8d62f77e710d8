"""A driver's ACK and reply deadlines on a scenario's virtual clock: a wait in which nothing can
arrive costs no real time, so a device that stays silent times out in an instant.

Nothing can arrive once a pass of the link (`LinkRunner.pump`) has left no byte on its way either
way and the device has no unacknowledged reply of its own to send again: the clock then jumps to
the deadline (in steps while a device timer runs, so that timer fires in its turn). While a link
fault is armed or holds bytes back, the deadline follows real time instead, as the fault does.
"""

from __future__ import annotations

import time

from device.clock import VirtualClock
from device.drivers.polled_serial import PolledSerial
from peripherals.links.runner import LinkRunner

REAL_SLICE_SECONDS = 0.002  # how long a driver waits for bytes before asking whether any can come
DEVICE_TIMER_STEP_SECONDS = 0.05  # virtual time per step while a device timer runs


class VirtualDeadlines:
    """The `Deadlines` of one driver whose port is `port`, on the link run by `runner`."""

    def __init__(self, clock: VirtualClock, runner: LinkRunner, port: PolledSerial) -> None:
        self.clock = clock
        self.runner = runner
        self.port = port
        self._real_mark: tuple[float, float] | None = None  # (deadline, real time) last seen

    def now(self) -> float:
        return self.clock.monotonic()

    def wait_slice(self, remaining: float) -> float:
        return min(remaining, REAL_SLICE_SECONDS)

    def nothing_arrived(self, deadline: float) -> None:
        runner, emulator = self.runner, self.runner.emulator
        if runner.faults.active() or runner.holding:  # in this order: see LinkRunner.holding
            self._follow_real_time(deadline)
            return
        self._real_mark = None
        runner.pump()  # whatever the driver sent has been handled once this returns
        if self._bytes_on_their_way() or emulator.waiting_on_link():
            return  # they come in real time
        step = deadline - self.clock.monotonic()
        if emulator.timer_running():
            step = min(step, DEVICE_TIMER_STEP_SECONDS)
        if step > 0:
            self.clock.advance(step)

    def _bytes_on_their_way(self) -> bool:
        port, runner = self.port, self.runner
        return bool(
            port.in_waiting
            or runner.bytes_to_driver != port.received
            or port.sent != runner.bytes_from_driver
        )

    def _follow_real_time(self, deadline: float) -> None:
        """Move the clock on by the real time since the last slice, never past `deadline`."""
        real_now = time.monotonic()
        if self._real_mark is not None and self._real_mark[0] == deadline:
            step = min(real_now - self._real_mark[1], deadline - self.clock.monotonic())
            if step > 0:
                self.clock.advance(step)
        self._real_mark = (deadline, real_now)
