"""Made-up candle history for tests: steady uptrends and flat series, stored with real EMAs.

A symbol qualifies for the momentum scan (STRATEGY.md "Entry") when its last closed
signal candle closes above EMA9 > EMA21 > EMA50 and above EMA200, so it needs at
least 200 candles of the signal timeframe (15m: 25 bars a session, so 9 sessions or
more). A typical setup for a scan at `now` on session `today`:

    sessions = trading_sessions(calendar, today, 10)
    candles = closed_by(uptrend_candles("INFY", timeframe=Timeframe.M15, sessions=sessions,
                                        start_price=1000.0, step_pct=0.05,
                                        calendar=calendar), now, calendar)
    store_history(ohlcv, candles)
    ltp = session_close(candles, sessions[-2], calendar) * 1.02   # day change +2%
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

from Webapp.market.bar_store import store_bars
from Webapp.market.bars import Bars
from Webapp.market.calendar import MarketCalendar
from Webapp.market.candle import Candle, Timeframe
from Webapp.market.ohlcv import OHLCVStore


def trading_sessions(calendar: MarketCalendar, end: date, n: int) -> list[date]:
    """The `n` trading days ending at `end` (included when it trades), oldest first."""
    days: list[date] = []
    day = end
    while len(days) < n:
        if calendar.is_trading_day(day):
            days.append(day)
        day -= timedelta(days=1)
    return days[::-1]


def uptrend_candles(
    symbol: str,
    *,
    timeframe: Timeframe,
    sessions: Sequence[date],
    start_price: float,
    step_pct: float,
    calendar: MarketCalendar,
) -> list[Candle]:
    """Every bar of every session, each closing `step_pct` above the last (opening at it).

    A steady rise keeps close > EMA9 > EMA21 > EMA50 and close > EMA200 once the EMAs
    are seeded. The candles carry no EMAs: store_history computes them.
    """
    candles: list[Candle] = []
    price = start_price
    for ts in _bar_starts(timeframe, sessions, calendar):
        close = price * (1 + step_pct / 100)
        candles.append(Candle(symbol, timeframe, ts, price, close, price, close, 1000))
        price = close
    return candles


def flat_candles(
    symbol: str,
    *,
    timeframe: Timeframe,
    sessions: Sequence[date],
    price: float,
    calendar: MarketCalendar,
) -> list[Candle]:
    """Every bar of every session closing at `price` (trading 0.1% around it): every EMA
    equals the close, so the trend test fails on "close <= EMA9"."""
    high, low = price * 1.001, price * 0.999
    return [
        Candle(symbol, timeframe, ts, price, high, low, price, 1000)
        for ts in _bar_starts(timeframe, sessions, calendar)
    ]


def closed_by(candles: Sequence[Candle], now: datetime, calendar: MarketCalendar) -> list[Candle]:
    """The candles that have closed at or before `now` (what a store could hold then)."""
    return [c for c in candles if calendar.bar_end(c.ts, c.timeframe) <= now]


def session_close(candles: Sequence[Candle], session: date, calendar: MarketCalendar) -> float:
    """The close of the last of `candles` in `session`: that session's closing price."""
    return [c for c in candles if calendar.session_date(c.ts) == session][-1].close


def store_history(ohlcv: OHLCVStore, candles: Sequence[Candle]) -> int:
    """Store `candles` (any symbols and timeframes) with EMAs computed the way a CSV import
    computes them (bar_store.store_bars), continuing what is stored; returns rows written.

    Any EMAs on the given candles are ignored.
    """
    series: dict[tuple[str, Timeframe], list[Candle]] = {}
    for candle in candles:
        series.setdefault((candle.symbol, candle.timeframe), []).append(candle)
    written = 0
    for (symbol, timeframe), group in series.items():
        group.sort(key=lambda c: c.ts)
        bars = Bars.of(group)
        written += store_bars(ohlcv, symbol, timeframe, bars)[0]
    return written


def _bar_starts(
    timeframe: Timeframe, sessions: Sequence[date], calendar: MarketCalendar
) -> list[datetime]:
    return [ts for day in sessions for ts in calendar.expected_bars(day, timeframe)]
