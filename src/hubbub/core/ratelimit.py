"""Token buckets: a steady `rate` per second with room for a `burst`."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """Allows `burst` events at once, refilled at `rate` per second. `rate=None` never limits."""

    __slots__ = ("_burst", "_clock", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float | None, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(max(burst, 1))
        self._tokens = self._burst
        self._clock = clock
        self._stamp = clock()

    def take(self) -> bool:
        if self._rate is None:
            return True
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class KeyedBuckets:
    """One bucket per key (an IP address), forgetting keys whose bucket is full again."""

    def __init__(self, rate: float | None, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._last_sweep = clock()

    def take(self, key: str) -> bool:
        if self._rate is None:
            return True
        now = self._clock()
        if now - self._last_sweep > self._burst / self._rate:  # every bucket refilled since: drop them
            self._buckets.clear()
            self._last_sweep = now
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self._rate, self._burst, self._clock)
        return bucket.take()
