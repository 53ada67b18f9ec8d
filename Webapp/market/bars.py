"""Parsed candles as columns (Bars) and the checks every imported or fetched bar must pass.

Shared by the CSV import and the Kite historical fetch: prices (finite, positive, in
OHLC order, whole non-negative volume), times (on the timeframe's grid, inside the
session, unique) and the timeframe read from the spacing of the times.
"""

from __future__ import annotations

import gc
import itertools
import math
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from itertools import islice, repeat
from operator import floordiv, lt, mod
from weakref import WeakKeyDictionary

from Webapp.market.calendar import MarketCalendar
from Webapp.market.candle import Candle, Timeframe

IST_DELTA = timedelta(hours=5, minutes=30)
_SESSION_OPEN_MIN = 9 * 60 + 15  # 09:15 IST, minutes after midnight
_SESSION_MINUTES = 375  # 09:15 to 15:30
_INF = math.inf
_UNKNOWN = -2
# Per calendar, the day ordinals known to be (trading days, closed days).
_DAY_KINDS: WeakKeyDictionary[MarketCalendar, tuple[set[int], set[int]]] = WeakKeyDictionary()
_IST_MINUTES: dict[datetime, int] = {}
_IST_MINUTES_MAX = 100_000


@dataclass
class Bars:
    """Parsed candles as parallel lists; `lines` are where each came from (file lines)."""

    ts: list[datetime] = field(default_factory=list)
    open: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    close: list[float] = field(default_factory=list)
    volume: list[int] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, candles: Sequence[Candle]) -> Bars:
        """Candles as columns, in the given order (`lines` numbers them from 1)."""
        return cls(
            ts=[c.ts for c in candles],
            open=[c.open for c in candles],
            high=[c.high for c in candles],
            low=[c.low for c in candles],
            close=[c.close for c in candles],
            volume=[c.volume for c in candles],
            lines=list(range(1, len(candles) + 1)),
        )

    def __len__(self) -> int:
        return len(self.ts)

    def sort(self) -> None:
        """Order by time (stable), keeping the columns together."""
        order = sorted(range(len(self.ts)), key=self.ts.__getitem__)
        for name in ("ts", "open", "high", "low", "close", "volume", "lines"):
            column = getattr(self, name)
            setattr(self, name, [column[i] for i in order])


def check_prices(o: float, h: float, low: float, c: float, v: float) -> list[str]:
    """What is wrong with one bar's numbers: finite positive prices, the OHLC order, volume."""
    problems = [
        f"{label} {_num(value)} is not a finite number"
        if not math.isfinite(value)
        else f"{label} {_num(value)} must be above 0"
        for label, value in (("open", o), ("high", h), ("low", low), ("close", c))
        if not (0.0 < value < _INF)
    ]
    if not problems:
        if h < o:
            problems.append(f"high {_num(h)} is below open {_num(o)}")
        if h < c:
            problems.append(f"high {_num(h)} is below close {_num(c)}")
        if low > o:
            problems.append(f"low {_num(low)} is above open {_num(o)}")
        if low > c:
            problems.append(f"low {_num(low)} is above close {_num(c)}")
    if not math.isfinite(v) or v != int(v):
        problems.append(f"volume {_num(v)} is not a whole number")
    elif v < 0:
        problems.append(f"volume {int(v)} is negative")
    return problems


def check_times(
    bars: Bars, timeframe: Timeframe, calendar: MarketCalendar, notes: list[str] | None = None
) -> list[tuple[int, str]]:
    """Sort `bars` by time and check each: on the timeframe's grid, in session, unique.

    Daily bars are moved to 00:00 IST of their IST date (a daily bar stamped 15:30 IST
    or 00:00 UTC is that date's candle). Intraday bars start on the grid from 09:15 IST
    and, on a trading day, inside 09:15–15:30 IST. Days the calendar lists as closed
    may hold special sessions (Muhurat trading, a Saturday budget session): their bars
    are kept if on the grid, and a note says how many. Returns (line, problem) pairs.
    """
    closed_days = _closed_days_if_all_good(bars.ts, timeframe, calendar)
    errors: list[tuple[int, str]] = []
    if closed_days is None:
        closed_days = _check_each_time(bars, timeframe, calendar, errors)
    if closed_days and notes is not None:
        listed = ", ".join(d.isoformat() for d in sorted(closed_days)[:5])
        more = "…" if len(closed_days) > 5 else ""
        notes.append(
            f"kept bars on {len(closed_days)} day(s) the NSE calendar lists as closed "
            f"(special sessions such as Muhurat trading): {listed}{more}"
        )
    return errors


def _closed_days_if_all_good(
    ts: list[datetime], timeframe: Timeframe, calendar: MarketCalendar
) -> set[date] | None:
    """The common case, a column at a time: if every time is already in order, unique, on
    the grid and (intraday) inside the session, the closed days they fall on; else None
    (`_check_each_time` then finds, fixes or names each problem)."""
    minutes = _ist_minutes(ts)
    of_day = map(mod, minutes, repeat(1440))  # a time off the whole minute gives 1439
    if timeframe is Timeframe.D1:
        if any(of_day):  # not all at 00:00 IST
            return None
    elif not _session_starts(timeframe.minutes or 0).issuperset(of_day):
        return None
    if not all(map(lt, minutes, islice(minutes, 1, None))):  # whole minutes: as the times
        return None
    return _closed_days(set(map(floordiv, minutes, repeat(1440))), calendar)


def _closed_days(ordinals: set[int], calendar: MarketCalendar) -> set[date]:
    """The days (as ordinals) the calendar lists as closed; each day is asked once per
    calendar and process (the files of one period share their days)."""
    trading, closed = _DAY_KINDS.setdefault(calendar, (set(), set()))
    for ordinal in ordinals - trading - closed:
        (trading if calendar.is_trading_day(date.fromordinal(ordinal)) else closed).add(ordinal)
    return set(map(date.fromordinal, ordinals & closed))


def _ist_minutes(ts: list[datetime]) -> list[int]:
    """Each time as whole minutes of IST wall clock since 0001-01-01 (-1 when not on a
    whole minute), through a cache: the files of one period share their times."""
    cache = _IST_MINUTES
    if len(cache) > _IST_MINUTES_MAX:
        cache.clear()
    minutes = list(map(cache.get, ts, repeat(_UNKNOWN)))
    if _UNKNOWN in minutes:
        for i, minute in enumerate(minutes):
            if minute == _UNKNOWN:
                t = ts[i]
                local = t + IST_DELTA
                if local.second or local.microsecond:
                    minute = -1
                else:
                    minute = local.toordinal() * 1440 + local.hour * 60 + local.minute
                minutes[i] = cache[t] = minute
    return minutes


@cache
def _session_starts(step: int) -> frozenset[int]:
    """Minutes of the IST day at which a `step`-minute bar may start on a trading day."""
    return frozenset(range(_SESSION_OPEN_MIN, _SESSION_OPEN_MIN + _SESSION_MINUTES, step))


def _check_each_time(
    bars: Bars, timeframe: Timeframe, calendar: MarketCalendar, errors: list[tuple[int, str]]
) -> set[date]:
    """Bar by bar: sort, move daily bars to 00:00 IST, and name every problem."""
    ts = bars.ts
    if any(ts[i] > ts[i + 1] for i in range(len(ts) - 1)):
        bars.sort()
        ts = bars.ts
    lines = bars.lines
    daily = timeframe is Timeframe.D1
    step = timeframe.minutes or 0
    ist_delta = IST_DELTA
    is_trading_day = calendar.is_trading_day
    closed_days: set[date] = set()
    prev_day: date | None = None
    day_open = True
    prev: datetime | None = None
    for i, t in enumerate(ts):
        local = t + ist_delta  # wall-clock IST, still tagged UTC
        if daily and (local.hour or local.minute or local.second or local.microsecond):
            day = local.date()
            t = datetime(day.year, day.month, day.day, tzinfo=UTC) - ist_delta
            ts[i] = t
            local = t + ist_delta
        day = local.date()
        if day != prev_day:
            prev_day, day_open = day, is_trading_day(day)
        if not day_open:
            closed_days.add(day)
        if not daily:
            minute = local.hour * 60 + local.minute - _SESSION_OPEN_MIN
            if local.second or local.microsecond or minute % step:
                errors.append(
                    (
                        lines[i],
                        f"{timeframe} bar at {ist(t)} is not on the {step}-minute grid "
                        "from 09:15 IST",
                    )
                )
            elif day_open and not 0 <= minute < _SESSION_MINUTES:
                errors.append((lines[i], f"bar at {ist(t)} is outside the 09:15–15:30 IST session"))
        if t == prev:
            errors.append((lines[i], f"duplicate time {ist(t)} (also on line {lines[i - 1]})"))
        prev = t
    return closed_days


def detect_timeframe(ts: Sequence[datetime]) -> Timeframe | None:
    """The timeframe from the most common gap between consecutive times (None if unclear)."""
    ordered = ts if all(ts[i] < ts[i + 1] for i in range(min(len(ts), 201) - 1)) else sorted(ts)
    gaps = Counter(
        int((ordered[i + 1] - ordered[i]).total_seconds())
        for i in range(min(len(ordered), 201) - 1)
        if ordered[i + 1] != ordered[i]
    )
    if not gaps:
        if len(ordered) >= 1:
            local = ordered[0] + IST_DELTA
            if (local.hour, local.minute, local.second) == (0, 0, 0):
                return Timeframe.D1
        return None
    gap = gaps.most_common(1)[0][0]
    if gap == 86400:
        return Timeframe.D1
    for timeframe in Timeframe:
        if timeframe.minutes is not None and gap == timeframe.minutes * 60:
            return timeframe
    return None


def undetected_timeframe(ts: list[datetime]) -> str:
    """Why detect_timeframe found nothing, for the error list."""
    if len(ts) < 2:
        return "cannot tell the timeframe from a single intraday row; give the timeframe"
    ordered = sorted(ts[:201])
    gaps = Counter(b - a for a, b in itertools.pairwise(ordered) if b != a)
    common = f"{gaps.most_common(1)[0][0]}" if gaps else "none"
    return (
        f"cannot tell the timeframe from the spacing of the times (most common gap: {common}, "
        f"not one of {', '.join(tf.value for tf in Timeframe)}); give the timeframe"
    )


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while a batch is built.

    An import allocates a hundred thousand small objects that all live on; the
    collector would walk them again and again (it halves the import rate) and
    would find nothing, as candles hold no cycles. Nested and concurrent pauses
    are counted: the last one out restores the collector as it was.
    """
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


def forget_minutes() -> None:
    """Empty the caches of times and days checked (see csv_rows.forget_times)."""
    _IST_MINUTES.clear()
    _DAY_KINDS.clear()


def ist(t: datetime) -> str:
    """A time as traders read it in messages: `2026-05-20 09:15 IST`."""
    return (t + IST_DELTA).strftime("%Y-%m-%d %H:%M IST")


def _num(value: float) -> str:
    return str(int(value)) if isinstance(value, int) else repr(float(value))
