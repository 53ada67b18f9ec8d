"""The engine's clock: wall time for live and paper, a simulated clock that a backtest moves."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from Webapp.market.calendar import MarketCalendar


def _require_aware(ts: datetime) -> datetime:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"clock time must be timezone-aware, got naive {ts!r}")
    return ts.astimezone(UTC)


class Timer:
    """A call scheduled with `Clock.call_at`; `cancel()` stops it if it has not fired yet."""

    def __init__(self, when: datetime, fn: Callable[[], object]) -> None:
        self.when = when
        self.fn = fn
        self._cancelled = threading.Event()
        self._on_cancel: Callable[[], None] | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()
        if self._on_cancel is not None:
            self._on_cancel()


class Clock(ABC):
    """What the engine, the gateway and the paper broker ask the time of.

    `now` is aware UTC. `monotonic` is for measuring intervals (rate limits, timeouts)
    and never goes back. `wait(seconds, stop)` returns True as soon as `stop` is set
    and False once the time has passed; on the simulated clock "waiting" moves time on.
    A `PaperBroker` takes `clock.now` as its clock callable.
    """

    @abstractmethod
    def now(self) -> datetime: ...

    @abstractmethod
    def monotonic(self) -> float: ...

    @abstractmethod
    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool: ...

    @abstractmethod
    def call_at(self, when: datetime, fn: Callable[[], object]) -> Timer:
        """Call `fn()` once the clock reaches `when` (a past `when` is due at once)."""

    def call_later(self, seconds: float, fn: Callable[[], object]) -> Timer:
        return self.call_at(self.now() + timedelta(seconds=seconds), fn)


class WallClock(Clock):
    """The machine's time. Timers run `fn` on their own short-lived thread, so `fn` must
    only hand off (put an event on the engine queue), like a feed callback."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        return (stop or threading.Event()).wait(max(0.0, seconds))

    def call_at(self, when: datetime, fn: Callable[[], object]) -> Timer:
        timer = Timer(_require_aware(when), fn)
        delay = max(0.0, (timer.when - self.now()).total_seconds())
        thread = threading.Timer(delay, fn)
        thread.daemon = True  # a pending scan timer must not keep the process alive
        timer._on_cancel = thread.cancel
        thread.start()
        return timer


class SimulatedClock(Clock):
    """Time that moves only when told: `advance`, `set`, or `wait`; never backwards.

    Timers fire on the thread that moves the clock, in time order (ties in the order they
    were scheduled), each with `now()` equal to its own time, so a backtest drives the
    scan timer deterministically. A timer scheduled by a timer for a time inside the same
    move fires in that move too; one scheduled for a past or the present time fires on
    the next move (`advance(timedelta(0))` included), at the current time. An exception
    raised by a timer propagates to the caller of the move, the clock left at that
    timer's time.
    """

    def __init__(self, start: datetime, *, monotonic_start: float = 0.0) -> None:
        self._start = _require_aware(start)
        self._now = self._start
        self._monotonic_start = monotonic_start
        # One re-entrant lock: a firing timer may schedule another on the same thread.
        self._lock = threading.RLock()
        self._timers: list[tuple[datetime, int, Timer]] = []
        self._sequence = itertools.count()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._monotonic_start + (self._now - self._start).total_seconds()

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        if stop is not None and stop.is_set():
            return True
        self.advance(timedelta(seconds=max(0.0, seconds)))
        return stop is not None and stop.is_set()

    def call_at(self, when: datetime, fn: Callable[[], object]) -> Timer:
        timer = Timer(_require_aware(when), fn)
        with self._lock:
            heapq.heappush(self._timers, (timer.when, next(self._sequence), timer))
        return timer

    @property
    def pending_timers(self) -> int:
        with self._lock:
            return sum(1 for _, _, timer in self._timers if not timer.cancelled)

    def next_timer_at(self) -> datetime | None:
        """When the earliest live timer is due, so a backtest can jump straight to it."""
        with self._lock:
            live = [when for when, _, timer in self._timers if not timer.cancelled]
            return min(live, default=None)

    def advance(self, step: timedelta) -> datetime:
        """Move forward by `step` (≥ 0), firing every timer due on the way; returns the new now."""
        if step < timedelta(0):
            raise ValueError(f"the clock never goes backwards: advance({step!r})")
        with self._lock:
            return self._move_to(self._now + step)

    def set(self, when: datetime) -> datetime:
        """Move forward to `when`, firing due timers; raises ValueError if `when` is earlier."""
        when = _require_aware(when)
        with self._lock:
            if when < self._now:
                raise ValueError(
                    f"the clock never goes backwards: set({when.isoformat()}) "
                    f"before now {self._now.isoformat()}"
                )
            return self._move_to(when)

    def _move_to(self, target: datetime) -> datetime:
        while self._timers and self._timers[0][0] <= target:
            when, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._now = max(self._now, when)
            timer.fn()
        # max: a timer that moved the clock itself past `target` must not be undone.
        self._now = max(self._now, target)
        return self._now


# --- the calendar, asked at the clock's time -------------------------------------------------


def session_date(clock: Clock, calendar: MarketCalendar) -> date:
    """Today's IST date by `clock` (the date the calendar's sessions are keyed by)."""
    return calendar.session_date(clock.now())


def is_trading_time(clock: Clock, calendar: MarketCalendar) -> bool:
    """True when `clock` is inside a regular session of `calendar` (open ≤ now < close)."""
    return calendar.in_session(clock.now())


def next_session_open(clock: Clock, calendar: MarketCalendar) -> datetime:
    """The next session open strictly after `clock`'s now, in UTC."""
    return calendar.next_session_open(clock.now())


class FeedClock(Clock):
    """A replay's market time as the engine's clock (FEED=replay in paper mode).

    `now` is the replay's simulated market time, never going back, and `start` before its
    first tick; `monotonic` and `wait` are the machine's. The engine keeps its own timers
    (it asks `now` on every loop), so `call_at` is not offered here.
    """

    def __init__(self, market_time: Callable[[], datetime | None], start: datetime) -> None:
        self._market_time = market_time
        self._last = _require_aware(start)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        at = self._market_time()
        with self._lock:
            if at is not None and at > self._last:
                self._last = at.astimezone(UTC)
            return self._last

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        return (stop or threading.Event()).wait(max(0.0, seconds))

    def call_at(self, when: datetime, fn: Callable[[], object]) -> Timer:
        raise NotImplementedError("FeedClock has no timers: the engine polls now() instead")
