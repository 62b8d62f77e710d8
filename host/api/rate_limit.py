"""Sign-in attempt limits: one small interface, kept in this process or in Redis (REDIS_URL) so
that several service processes share one count.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

SIGN_IN_ATTEMPTS = 20  # per client address and window
SIGN_IN_WINDOW_SECONDS = 60.0
_PRUNE_AT = 10_000  # keys kept before the empty ones are dropped


class RateLimiter(Protocol):
    def hit(self, key: str) -> float:
        """Count one attempt under `key`: 0 if it may go on, else the seconds to wait."""
        ...


class InProcessRateLimiter:
    """A sliding window of attempt times per key, in this process's memory."""

    def __init__(
        self,
        limit: int = SIGN_IN_ATTEMPTS,
        window_seconds: float = SIGN_IN_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window_seconds
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float:
        with self._lock:
            now = self.clock()
            times = self._hits.setdefault(key, deque())
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) >= self.limit:
                return max(times[0] + self.window - now, 0.001)
            times.append(now)
            if len(self._hits) > _PRUNE_AT:
                self._hits = {
                    k: v for k, v in self._hits.items() if v and v[-1] > now - self.window
                }
            return 0.0


class RedisRateLimiter:
    """A fixed window per key in Redis (INCR and EXPIRE), shared by every service process.

    If Redis does not answer the attempt is let through (the operator lockout still holds) and
    the outage is logged, rather than locking every operator out.
    """

    def __init__(
        self,
        client: Any,
        limit: int = SIGN_IN_ATTEMPTS,
        window_seconds: float = SIGN_IN_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
        prefix: str = "atm-sim:sign-in:",
    ) -> None:
        self.client = client
        self.limit = limit
        self.window = window_seconds
        self.clock = clock
        self.prefix = prefix

    def hit(self, key: str) -> float:
        now = self.clock()
        slot = int(now // self.window)
        name = f"{self.prefix}{key}:{slot}"
        try:
            pipe = self.client.pipeline()
            pipe.incr(name)
            pipe.expire(name, int(self.window) + 1)
            count = int(pipe.execute()[0])
        except Exception as err:  # any client error: Redis down, timeout, refused
            log.warning("sign-in rate limit: Redis unavailable (%s); attempt allowed", err)
            return 0.0
        if count > self.limit:
            return max((slot + 1) * self.window - now, 0.001)
        return 0.0


def make_rate_limiter(redis_url: str | None) -> RateLimiter:
    """Redis when a URL is given and the redis package is installed; else in-process."""
    if not redis_url:
        return InProcessRateLimiter()
    try:
        redis = importlib.import_module("redis")
    except ImportError:
        log.warning(
            "REDIS_URL is set but the redis package is not installed: sign-in limits "
            "are kept per process (pip install redis)"
        )
        return InProcessRateLimiter()
    return RedisRateLimiter(redis.Redis.from_url(redis_url, socket_timeout=1.0))
