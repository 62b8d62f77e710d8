"""The sign-in rate limiters: a sliding window in process, a fixed window in Redis (here a stand-in
client counting as Redis would), and the choice between them."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from host.api.rate_limit import InProcessRateLimiter, RedisRateLimiter, make_rate_limiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_in_process_window_slides() -> None:
    clock = Clock()
    limiter = InProcessRateLimiter(limit=3, window_seconds=60, clock=clock)
    assert [limiter.hit("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.hit("a") == pytest.approx(60.0)
    assert limiter.hit("b") == 0.0  # another client has its own count
    clock.now += 59
    assert limiter.hit("a") == pytest.approx(1.0)
    clock.now += 1.5  # the first three attempts have left the window
    assert limiter.hit("a") == 0.0


class FakeRedis:
    """INCR and EXPIRE through a pipeline, as the redis client offers them."""

    def __init__(self, fail: bool = False) -> None:
        self.counts: dict[str, int] = {}
        self.expiries: dict[str, int] = {}
        self.fail = fail
        self._queued: list[tuple[str, Any]] = []

    def pipeline(self) -> FakeRedis:
        self._queued = []
        return self

    def incr(self, name: str) -> None:
        self._queued.append(("incr", name))

    def expire(self, name: str, seconds: int) -> None:
        self._queued.append(("expire", (name, seconds)))

    def execute(self) -> list[Any]:
        if self.fail:
            raise ConnectionError("Redis is down")
        results: list[Any] = []
        for command, argument in self._queued:
            if command == "incr":
                self.counts[argument] = self.counts.get(argument, 0) + 1
                results.append(self.counts[argument])
            else:
                self.expiries[argument[0]] = argument[1]
                results.append(True)
        return results


def test_redis_window_counts_per_key_and_expires() -> None:
    clock = Clock()
    client = FakeRedis()
    limiter = RedisRateLimiter(client, limit=2, window_seconds=60, clock=clock)
    assert [limiter.hit("client:1.2.3.4") for _ in range(2)] == [0.0, 0.0]
    assert limiter.hit("client:1.2.3.4") == pytest.approx(20.0)  # 1000 s is 40 s into its window
    assert set(client.expiries.values()) == {61}
    clock.now = 1020.0  # the next window
    assert limiter.hit("client:1.2.3.4") == 0.0


def test_redis_down_lets_attempts_through(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RedisRateLimiter(FakeRedis(fail=True), limit=1, window_seconds=60, clock=Clock())
    assert [limiter.hit("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert "Redis unavailable" in caplog.text


def test_the_limiter_is_in_process_without_redis() -> None:
    assert isinstance(make_rate_limiter(None), InProcessRateLimiter)
    chosen = make_rate_limiter("redis://127.0.0.1:1/0")
    expected = RedisRateLimiter if importlib.util.find_spec("redis") else InProcessRateLimiter
    assert isinstance(chosen, expected)
