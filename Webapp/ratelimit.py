"""Request rate limits shared by every thread: one sliding window, and Kite's composite limits.

Kite counts requests per API key, not per caller: the order gateway, the polling
thread and a history fetch all spend the same allowance. `KiteRateLimits` holds
that allowance (10 requests a second overall, 3 a second for historical candles,
1 a second for quotes, 200 order placements a minute) and is handed to every
caller of one API key.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Protocol

# Kite Connect's published limits, per API key.
KITE_OVERALL_PER_SECOND = 10
KITE_HISTORICAL_PER_SECOND = 3
KITE_QUOTE_PER_SECOND = 1
KITE_ORDERS_PER_MINUTE = 200

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class Limiter(Protocol):
    """What a rate-limited caller needs: take a slot, and the sleep to wait with."""

    sleep: Sleep

    def acquire(self) -> float: ...


class RateLimiter:
    """At most `rate` calls in any `per`-second window, shared by every thread that holds it.

    `clock` (monotonic seconds) and `sleep` are injectable so tests need not wait.
    A caller that must wait holds the lock while sleeping: waiting callers queue up
    in order instead of racing for the next free slot.
    """

    def __init__(
        self,
        rate: int = KITE_HISTORICAL_PER_SECOND,
        per: float = 1.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if rate < 1 or per <= 0:
            raise ValueError(f"a rate limit needs rate >= 1 and per > 0, got {rate}/{per}s")
        self.rate = rate
        self.per = per
        self.clock = clock
        self.sleep = sleep
        self._recent: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for a free slot and take it; returns the clock time of the slot."""
        with self._lock:
            while True:
                now = self.clock()
                wait = self._wait_s(now)
                if wait <= 0:
                    self._recent.append(now)
                    return now
                self.sleep(wait)

    def _wait_s(self, now: float) -> float:
        """Seconds until a slot is free at `now` (0 when one is); forgets expired slots."""
        recent = self._recent
        while recent and recent[0] <= now - self.per:
            recent.popleft()
        if len(recent) < self.rate:
            return 0.0
        return recent[0] + self.per - now


class KiteRateLimits:
    """Kite's limits for one API key: an overall window plus a window per kind of request.

    `acquire(kind)` takes a slot in the overall window and in each of the kind's
    windows at the same instant, so neither is ever exceeded. Unlike RateLimiter,
    a waiting caller does not hold the lock while it sleeps: a quote waiting for
    its 1/s slot never delays an order that the overall window would let through.

    Kinds: "historical", "quote", "order" (placements); anything else counts
    against the overall window only.
    """

    def __init__(
        self,
        *,
        overall_per_s: int = KITE_OVERALL_PER_SECOND,
        historical_per_s: int = KITE_HISTORICAL_PER_SECOND,
        quote_per_s: int = KITE_QUOTE_PER_SECOND,
        orders_per_minute: int = KITE_ORDERS_PER_MINUTE,
        extra: Mapping[str, tuple[int, float]] | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self.overall = RateLimiter(overall_per_s, 1.0, clock, sleep)
        self._kinds: dict[str, RateLimiter] = {
            "historical": RateLimiter(historical_per_s, 1.0, clock, sleep),
            "quote": RateLimiter(quote_per_s, 1.0, clock, sleep),
            "order": RateLimiter(orders_per_minute, 60.0, clock, sleep),
        }
        for kind, (rate, per) in (extra or {}).items():
            self._kinds[kind] = RateLimiter(rate, per, clock, sleep)
        self._lock = threading.Lock()

    def acquire(self, kind: str | None = None) -> float:
        """Wait until both the overall and the `kind` window have room, take both; returns now."""
        windows = [self.overall]
        if kind is not None and kind in self._kinds:
            windows.append(self._kinds[kind])
        while True:
            with self._lock, _all_locked(windows):
                now = self.clock()
                wait = max(window._wait_s(now) for window in windows)
                if wait <= 0:
                    for window in windows:
                        window._recent.append(now)
                    return now
            self.sleep(wait)

    def limiter(self, kind: str) -> KindLimiter:
        """A `Limiter` view for one kind, e.g. `limits.limiter("historical")` for fetch_history."""
        return KindLimiter(self, kind)

    @property
    def historical(self) -> KindLimiter:
        return self.limiter("historical")


@contextmanager
def _all_locked(windows: list[RateLimiter]) -> Iterator[None]:
    with ExitStack() as stack:
        for window in windows:
            stack.enter_context(window._lock)
        yield


class KindLimiter:
    """One kind's view of a KiteRateLimits, with the `acquire()`/`sleep` of a plain limiter."""

    def __init__(self, limits: KiteRateLimits, kind: str) -> None:
        self.limits = limits
        self.kind = kind
        self.sleep = limits.sleep

    def acquire(self) -> float:
        return self.limits.acquire(self.kind)
