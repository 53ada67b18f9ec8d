"""Ticks to 1-minute candles per IST session minute, rolled up to 5m, 15m and 1d, with EMAs.

Rules (each has a test in tests/unit/test_candles.py):

- Time: a tick's time is its exchange time, else its receive time. Ticks outside
  the regular session (open ≤ t < close on a trading day, so 09:14:59 and 15:30:00
  are out) are ignored and counted.
- 1m candles cover one IST session minute. A minute with no tick has no candle.
- Close = price of the latest-timestamped tick (ties: the later arrival); open =
  price of the earliest-timestamped one (ties: the first arrival); high/low = every
  accepted tick's price.
- Out of order: a tick older than the symbol's forming 1m candle (so of a candle
  already closed, or of a minute skipped since) is dropped and counted: a closed
  candle is never reopened. A tick inside the forming candle but older than its
  latest tick widens high/low (and sets open if it is the oldest yet), never close.
- Exact duplicates of the latest tick (same time, price and volume) are ignored.
- Volume: ticks carry the day's cumulative volume (Kite's volume_traded). A
  candle's volume is the rise of that figure from the end of the previous candle
  to the end of this one. It restarts with each session: from 0 when the symbol's
  first tick of the session falls in the session's first minute (so the 09:15
  candle holds all the day's figure held by then, the pre-open auction included),
  else from that tick's own figure (we joined late, and what traded earlier is not
  known minute by minute, so it is left out rather than dumped into one candle).
  A cumulative volume lower than one already seen in the session marks a stale
  packet: it may widen high/low inside the forming candle but sets neither close
  nor volume, and it never opens a new candle. A volume of 0 means the feed sent
  none (Kite's LTP mode): such ticks set prices, never volume.
- Higher timeframes are built from closed 1m candles only, so they agree exactly
  with their 1m parts; every bar closes at its end (cut at 15:30; a 1d bar ends at
  the session close) even when no tick arrives, via `close_due(now)`.
- Every candle goes to the sink once, when it closes, with its EMAs 9/21/50/200
  updated per (symbol, timeframe) on closes (Webapp.market.indicators).

Threads: `on_quote`/`on_tick` run on the feed thread and `close_due` on a timer;
one lock serialises them. The sink is called with that lock held, in closing
order, so it must be quick (a queue put) and must not call back into CandleAgg.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta

from Webapp.market.calendar import MarketCalendar
from Webapp.market.candle import EMA_PERIODS, Candle, Timeframe
from Webapp.market.indicators import EmaSet
from Webapp.market.ltp_store import Quote

_log = logging.getLogger(__name__)

DEFAULT_TIMEFRAMES = (Timeframe.M1, Timeframe.M5, Timeframe.M15, Timeframe.D1)

CandleSink = Callable[[list[Candle]], None]
EmaSeed = Callable[[str, Timeframe], "EmaSet | None"]

_INF = math.inf
_IST_OFFSET_S = 19_800  # 05:30
_DAY_S = 86_400
_EPOCH_DATE = date(1970, 1, 1)
_fromtimestamp = datetime.fromtimestamp


class _Bar:
    """A forming higher-timeframe candle, folded from closed 1m candles. Times are epoch s."""

    __slots__ = ("start", "end", "open", "high", "low", "close", "volume")

    def __init__(
        self, start: float, end: float, o: float, h: float, lo: float, c: float, v: int
    ) -> None:
        self.start = start
        self.end = end
        self.open = o
        self.high = h
        self.low = lo
        self.close = c
        self.volume = v


class _SymbolState:
    """Mutable per-symbol state; the forming 1m candle lives in its first fields.

    When no 1m candle is forming, start == end == the end of the last closed one,
    an empty interval, so the hot path's range check fails and ticks older than
    that end are recognised as late.
    """

    __slots__ = (
        "symbol",
        "start",
        "end",
        "open",
        "high",
        "low",
        "close",
        "first_t",
        "last_t",
        "volume",
        "base_volume",
        "day",
        "bars",
        "bar_closed_until",
        "emas",
    )

    def __init__(self, symbol: str, n_higher: int, n_timeframes: int) -> None:
        self.symbol = symbol
        self.start = -_INF
        self.end = -_INF
        self.open = self.high = self.low = self.close = 0.0
        self.first_t = _INF  # time of the tick that set open
        self.last_t = -_INF  # time of the tick that set close
        self.volume = 0  # highest cumulative volume seen this session
        self.base_volume = 0  # cumulative volume at the end of the previous 1m candle
        self.day = -1  # IST day number (days since 1970-01-01) of the session
        self.bars: list[_Bar | None] = [None] * n_higher
        self.bar_closed_until: list[float] = [-_INF] * n_higher
        # Per timeframe: None = not yet seeded, False = seeding failed (EMAs stay None).
        self.emas: list[EmaSet | bool | None] = [None] * n_timeframes


class CandleAgg:
    """Builds candles from ticks for every symbol it sees; see the module docstring."""

    def __init__(
        self,
        sink: CandleSink,
        calendar: MarketCalendar,
        timeframes: Iterable[Timeframe] = DEFAULT_TIMEFRAMES,
        ema_seed: EmaSeed | None = None,
    ) -> None:
        """`ema_seed(symbol, timeframe)` gives the EMAs after the last stored candle that
        precedes the first one this aggregator closes (EmaSet.restore), or None to start
        from nothing. It is called once per (symbol, timeframe), at its first close, on
        the feed thread: serve it from memory."""
        self._sink = sink
        self._calendar = calendar
        self._ema_seed = ema_seed
        chosen = list(dict.fromkeys(Timeframe(tf) for tf in timeframes))
        if not chosen:
            raise ValueError("at least one timeframe is needed")
        self.timeframes: tuple[Timeframe, ...] = tuple(chosen)
        self._emit_m1 = Timeframe.M1 in chosen
        self._higher: tuple[Timeframe, ...] = tuple(tf for tf in chosen if tf is not Timeframe.M1)
        # EMA slot per timeframe: 0 for 1m, 1 + index in _higher for the others.
        self._higher_seconds = tuple(
            None if tf is Timeframe.D1 else tf.minutes * 60  # type: ignore[operator]
            for tf in self._higher
        )
        self._lock = threading.Lock()
        self._states: dict[str, _SymbolState] = {}
        self._sessions: dict[int, tuple[float, float] | None] = {}
        self._next_due = _INF
        # Counters (read them through `stats`).
        self._outside_session = 0
        self._late = 0
        self._out_of_order = 0
        self._duplicates = 0
        self._stale_volume = 0
        self._naive_time = 0
        self._bad_price = 0
        self._parts_after_close = 0
        self._candles_closed = 0

    # --- ticks --------------------------------------------------------------

    def on_quote(self, quote: Quote) -> None:
        """LTPStore subscriber: one tick at the quote's exchange time, else its receive time.

        Its body repeats _tick's hot path inline, saving a call per tick on the feed
        thread; test_on_quote_and_on_tick_build_the_same_candles keeps them in step.
        """
        ts = quote.exchange_time
        if ts is None:
            ts = quote.received_at
        if ts.tzinfo is None:
            self._naive(quote.symbol, ts)
            return
        t = ts.timestamp()
        symbol = quote.symbol
        price = quote.ltp
        volume = quote.volume
        with self._lock:
            st = self._states.get(symbol)
            if st is not None and st.start <= t < st.end:
                if t >= st.last_t:
                    if volume >= st.volume:
                        if t == st.last_t and price == st.close and volume == st.volume:
                            self._duplicates += 1
                            return
                        st.close = price
                        st.last_t = t
                        st.volume = volume
                    elif volume == 0:
                        st.close = price
                        st.last_t = t
                    else:
                        self._stale_volume += 1
                else:
                    self._out_of_order += 1
                    if volume > st.volume:
                        st.volume = volume
                    if t < st.first_t:
                        st.open = price
                        st.first_t = t
                if price > st.high:
                    st.high = price
                elif price < st.low:
                    st.low = price
                return
            closed = self._new_minute(st, symbol, price, volume, t)
            if closed:
                self._emit(closed)

    def on_tick(self, symbol: str, price: float, cumulative_volume: int, ts: datetime) -> None:
        """One trade: `price`, the day's cumulative volume so far, tz-aware `ts`."""
        if ts.tzinfo is None:
            self._naive(symbol, ts)
            return
        if not 0.0 < price < _INF:
            with self._lock:
                self._bad_price += 1
            return
        self._tick(symbol, price, cumulative_volume, ts.timestamp())

    def _tick(self, symbol: str, price: float, volume: int, t: float) -> None:
        with self._lock:
            st = self._states.get(symbol)
            if st is not None and st.start <= t < st.end:
                # The hot path: a tick inside the forming 1m candle.
                if t >= st.last_t:
                    if volume >= st.volume:
                        if t == st.last_t and price == st.close and volume == st.volume:
                            self._duplicates += 1
                            return
                        st.close = price
                        st.last_t = t
                        st.volume = volume
                    elif volume == 0:  # no volume from the feed: time alone orders it
                        st.close = price
                        st.last_t = t
                    else:
                        self._stale_volume += 1
                else:
                    self._out_of_order += 1
                    if volume > st.volume:
                        st.volume = volume
                    if t < st.first_t:
                        st.open = price
                        st.first_t = t
                if price > st.high:
                    st.high = price
                elif price < st.low:
                    st.low = price
                return
            closed = self._new_minute(st, symbol, price, volume, t)
            if closed:
                self._emit(closed)

    def _new_minute(
        self, st: _SymbolState | None, symbol: str, price: float, volume: int, t: float
    ) -> list[Candle]:
        """A tick outside the symbol's forming candle (called with the lock held)."""
        day = int((t + _IST_OFFSET_S) // _DAY_S)
        session = self._session(day)
        if session is None or not session[0] <= t < session[1]:
            self._outside_session += 1
            return []
        if st is None:
            st = self._states[symbol] = _SymbolState(
                symbol, len(self._higher), 1 + len(self._higher)
            )
        elif t < st.start:
            self._late += 1
            return []
        elif day == st.day and 0 < volume < st.volume:
            self._stale_volume += 1
            return []
        closed: list[Candle] = []
        self._close_until(st, t, closed)
        open_t = session[0]
        start = open_t + ((t - open_t) // 60.0) * 60.0
        if day != st.day:
            st.day = day
            st.volume = 0
            # From 0 only when the session's first minute is ours: see the module docstring.
            st.base_volume = 0 if start == open_t else volume
        st.start = start
        st.end = start + 60.0
        st.open = st.high = st.low = st.close = price
        st.first_t = st.last_t = t
        if volume > st.volume:
            st.volume = volume
        if st.end < self._next_due:
            self._next_due = st.end
        return closed

    # --- closing --------------------------------------------------------------

    def close_due(self, now: datetime) -> list[Candle]:
        """Close every candle whose end ≤ `now`, ticks or not; returns them (also sent to the sink).

        Call it every second or so with the wall time minus a grace of a second or
        two, so that a tick delayed in transit still reaches its minute: once a
        candle is closed, later ticks for it are dropped as late.
        """
        if now.tzinfo is None:
            raise ValueError(f"now must be timezone-aware, got naive {now!r}")
        t = now.timestamp()
        with self._lock:
            if t < self._next_due:
                return []
            closed: list[Candle] = []
            next_due = _INF
            for st in self._states.values():
                self._close_until(st, t, closed)
                if st.start < st.end and st.end < next_due:
                    next_due = st.end
                for bar in st.bars:
                    if bar is not None and bar.end < next_due:
                        next_due = bar.end
            self._next_due = next_due
            if closed:
                self._emit(closed)
        return closed

    def flush(self) -> list[Candle]:
        """Close everything still forming (at shutdown); returns them (also sent to the sink).

        A candle flushed before its end is partial. Ticks that arrive later for its
        minute or bar are dropped like any late tick, so nothing is emitted twice.
        """
        with self._lock:
            closed: list[Candle] = []
            for st in self._states.values():
                self._close_until(st, _INF, closed)
            self._next_due = _INF
            if closed:
                self._emit(closed)
        return closed

    def _close_until(self, st: _SymbolState, t: float, out: list[Candle]) -> None:
        """Close the symbol's candles that end at or before `t`, 1m first."""
        if st.start < st.end and st.end <= t:
            self._close_minute(st, out)
        bars = st.bars
        for index, bar in enumerate(bars):
            if bar is not None and bar.end <= t:
                out.append(self._candle(st, 1 + index, self._higher[index], bar))
                bars[index] = None
                st.bar_closed_until[index] = bar.end

    def _close_minute(self, st: _SymbolState, out: list[Candle]) -> None:
        start, end = st.start, st.end
        volume = st.volume - st.base_volume
        st.base_volume = st.volume
        if self._emit_m1:
            minute = _Bar(start, end, st.open, st.high, st.low, st.close, volume)
            out.append(self._candle(st, 0, Timeframe.M1, minute))
        # Nothing forms until the next tick; ticks before `end` are now late.
        st.start = end
        bars = st.bars
        for index, bar in enumerate(bars):
            if bar is not None and start < bar.end:
                if st.high > bar.high:
                    bar.high = st.high
                if st.low < bar.low:
                    bar.low = st.low
                bar.close = st.close
                bar.volume += volume
                continue
            if bar is not None:  # ended before this minute yet never closed: close it first
                out.append(self._candle(st, 1 + index, self._higher[index], bar))
                st.bar_closed_until[index] = bar.end
                bars[index] = None
            bar_start, bar_end = self._bar_bounds(index, start)
            if bar_start < st.bar_closed_until[index]:
                # That bar was already emitted (flushed early): never emit it twice.
                self._parts_after_close += 1
                continue
            bars[index] = _Bar(bar_start, bar_end, st.open, st.high, st.low, st.close, volume)
            if bar_end < self._next_due:
                self._next_due = bar_end

    def _candle(self, st: _SymbolState, slot: int, timeframe: Timeframe, bar: _Bar) -> Candle:
        emas = st.emas[slot]
        if emas is None:
            emas = st.emas[slot] = self._seed(st.symbol, timeframe)
        if emas is False:
            values: tuple[float | None, ...] = (None, None, None, None)
        else:
            values = emas.update(bar.close)  # type: ignore[union-attr]
        self._candles_closed += 1
        return Candle(
            st.symbol,
            timeframe,
            _fromtimestamp(bar.start, UTC),
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            int(bar.volume),
            *values,
        )

    def _seed(self, symbol: str, timeframe: Timeframe) -> EmaSet | bool:
        if self._ema_seed is None:
            return EmaSet()
        try:
            seeded = self._ema_seed(symbol, timeframe)
        except Exception:
            # Fail safe: EMAs stay None for this (symbol, timeframe), so no signal uses them.
            _log.exception("EMA seed failed for %s %s; its EMAs stay empty", symbol, timeframe)
            return False
        if seeded is None:
            return EmaSet()
        if seeded.periods != EMA_PERIODS:
            _log.error(
                "EMA seed for %s %s has periods %s, not %s; its EMAs stay empty",
                symbol,
                timeframe,
                seeded.periods,
                EMA_PERIODS,
            )
            return False
        return seeded

    def _emit(self, closed: list[Candle]) -> None:
        try:
            self._sink(closed)
        except Exception:
            _log.exception("candle sink failed on %d candles", len(closed))

    # --- session and bar arithmetic (epoch seconds) -----------------------------

    def _session(self, day: int) -> tuple[float, float] | None:
        """(open, close) epoch seconds of IST day number `day`, None if it does not trade."""
        try:
            return self._sessions[day]
        except KeyError:
            pass
        d = _EPOCH_DATE + timedelta(days=day)
        bounds = None
        if self._calendar.is_trading_day(d):
            open_, close = self._calendar.session_bounds(d)
            bounds = (open_.timestamp(), close.timestamp())
        self._sessions[day] = bounds
        return bounds

    def _bar_bounds(self, index: int, minute_start: float) -> tuple[float, float]:
        """(start, end) epoch seconds of the higher-timeframe bar holding that minute."""
        day = int((minute_start + _IST_OFFSET_S) // _DAY_S)
        open_t, close_t = self._session(day)  # type: ignore[misc]
        seconds = self._higher_seconds[index]
        if seconds is None:  # 1d: starts at the IST midnight, ends at the session close
            return day * _DAY_S - _IST_OFFSET_S, close_t
        start = open_t + ((minute_start - open_t) // seconds) * seconds
        return start, min(start + seconds, close_t)

    # --- reading ------------------------------------------------------------------

    def current(self, symbol: str, timeframe: Timeframe) -> Candle | None:
        """The forming candle of `symbol` in `timeframe` (its EMAs None), or None."""
        timeframe = Timeframe(timeframe)
        if timeframe not in self.timeframes:
            raise ValueError(f"{timeframe} is not aggregated here ({self.timeframes})")
        with self._lock:
            st = self._states.get(symbol)
            if st is None:
                return None
            forming = st.start < st.end
            minute = (
                _Bar(st.start, st.end, st.open, st.high, st.low, st.close, 0) if forming else None
            )
            if minute is not None:
                minute.volume = st.volume - st.base_volume
            if timeframe is Timeframe.M1:
                bar = minute
            else:
                index = self._higher.index(timeframe)
                bar = self._merge(st, index, minute)
        if bar is None:
            return None
        return Candle(
            symbol,
            timeframe,
            _fromtimestamp(bar.start, UTC),
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            int(bar.volume),
        )

    def _merge(self, st: _SymbolState, index: int, minute: _Bar | None) -> _Bar | None:
        bar = st.bars[index]
        if bar is not None:
            bar = _Bar(bar.start, bar.end, bar.open, bar.high, bar.low, bar.close, bar.volume)
        if minute is None:
            return bar
        if bar is None:
            start, end = self._bar_bounds(index, minute.start)
            if start < st.bar_closed_until[index]:
                return None
            return _Bar(
                start, end, minute.open, minute.high, minute.low, minute.close, minute.volume
            )
        bar.high = max(bar.high, minute.high)
        bar.low = min(bar.low, minute.low)
        bar.close = minute.close
        bar.volume += minute.volume
        return bar

    @property
    def stats(self) -> dict[str, int]:
        """Counters of what the rules dropped or ignored, and of candles closed."""
        with self._lock:
            return {
                "symbols": len(self._states),
                "candles_closed": self._candles_closed,
                "outside_session": self._outside_session,
                "late": self._late,
                "out_of_order": self._out_of_order,
                "duplicates": self._duplicates,
                "stale_volume": self._stale_volume,
                "naive_time": self._naive_time,
                "bad_price": self._bad_price,
                "parts_after_close": self._parts_after_close,
            }

    def _naive(self, symbol: str, ts: datetime) -> None:
        with self._lock:
            self._naive_time += 1
            first = self._naive_time == 1
        if first:
            _log.error(
                "tick for %s has a naive timestamp %r: dropped (feeds must send UTC)", symbol, ts
            )
