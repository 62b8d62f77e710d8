"""WallParts times chosen methods by part: each outermost call once, and puts them back after."""

from __future__ import annotations

import time

from scripts.bench.wall_parts import WallParts


class Device:
    def exchange(self, seconds: float) -> str:
        time.sleep(seconds)
        return "reply"

    def status(self) -> str:
        return self.exchange(0.02)  # a timed call inside another


class Journal:
    def record(self) -> None:
        time.sleep(0.01)


def test_each_outermost_call_counts_once_for_its_part() -> None:
    device, journal = Device(), Journal()
    with WallParts(
        [(Device, "exchange", "device"), (Device, "status", "device"), (Journal, "record", "disk")]
    ) as parts:
        assert device.exchange(0.03) == "reply"
        assert device.status() == "reply"
        journal.record()
    assert parts.calls == {"device": 2, "disk": 1}
    assert 0.05 <= parts.seconds["device"] < 0.5  # 0.03 + 0.02, not 0.03 + 0.02 + 0.02
    assert 0.01 <= parts.seconds["disk"] < 0.5


def test_the_methods_are_themselves_again_after_the_block() -> None:
    exchange = Device.__dict__["exchange"]
    with WallParts([(Device, "exchange", "device")]) as parts:
        assert Device.__dict__["exchange"] is not exchange
    assert Device.__dict__["exchange"] is exchange
    Device().exchange(0)
    assert parts.calls == {"device": 0}
