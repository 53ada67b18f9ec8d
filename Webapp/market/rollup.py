"""Finer candles rolled up to a longer timeframe: stored 5m candles as the 15m signal candles.

`roll_up` is the one roll-up of stored candles: a backtest's history uses it to store
its signal candles (backtest.history), and `RolledCandles` uses it to give the scan
its last closed signal candle when the store holds only finer candles (a replay of
imported 5-minute data). `CandleAgg` (market.candles) folds live minutes the same way,
tick by tick.

Bars follow the session grid of each candle's own date (09:15 IST on, the last one cut
at 15:30), whatever the holiday list says: a stored candle proves its day traded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from Webapp.market.calendar import SESSION_HOURS
from Webapp.market.candle import Candle, Timeframe
from Webapp.market.indicators import EmaSet
from Webapp.market.ohlcv import OHLCVStore


def roll_up(
    candles: Sequence[Candle], timeframe: Timeframe, *, closed_by: datetime | None = None
) -> list[Candle]:
    """`candles` (one symbol, one finer intraday timeframe, oldest first) as `timeframe` bars.

    Each bar of a session takes the open of its first candle, the highest high, the
    lowest low, the close of its last candle and the summed volume. A bar is made from
    whatever candles fall in it (a gap in the data gives a bar from fewer); a candle
    outside the session hours (a pre-open bar) belongs to no bar and is left out.

    With `closed_by`, only bars that have ended by then: a 15m bar is closed only once
    all three of its 5m candles are, so no candle ending after `closed_by` is used.
    No EMAs.
    """
    if timeframe is Timeframe.D1:
        raise ValueError("roll_up makes intraday bars; daily candles have their own source")
    groups: dict[datetime, list[Candle]] = {}
    for candle in candles:
        if not nests(candle.timeframe, timeframe):
            raise ValueError(
                f"{candle.symbol}: a {candle.timeframe} candle cannot be rolled up to {timeframe}"
            )
        if not SESSION_HOURS.in_session(candle.ts):
            continue
        start = SESSION_HOURS.bar_start(candle.ts, timeframe)
        if closed_by is None or SESSION_HOURS.bar_end(start, timeframe) <= closed_by:
            groups.setdefault(start, []).append(candle)
    return [
        Candle(
            group[0].symbol,
            timeframe,
            start,
            group[0].open,
            max(c.high for c in group),
            min(c.low for c in group),
            group[-1].close,
            sum(c.volume for c in group),
        )
        for start, group in sorted(groups.items())
    ]


def nests(finer: Timeframe, timeframe: Timeframe) -> bool:
    """True when `finer` intraday bars fit whole inside `timeframe`'s (5m in 15m, not 10m)."""
    if finer is Timeframe.D1 or timeframe is Timeframe.D1:
        return False
    return finer.minutes < timeframe.minutes and timeframe.minutes % finer.minutes == 0


@dataclass
class _Series:
    """One symbol's roll-up so far: its source, its EMAs, and the last bar it made."""

    source: Timeframe
    emas: EmaSet
    until: datetime | None = None  # the end of the last bar made: the next read starts here
    last: Candle | None = None


class RolledCandles:
    """Last closed `timeframe` candles rolled up from each symbol's finest stored candles.

    For a symbol whose store has no `timeframe` candles: the finest stored timeframe that
    nests in it is rolled up with `roll_up`, and the EMAs run over the rolled closes from
    the first stored candle on, exactly as an import of the rolled candles computes them.
    Each symbol's roll-up is kept and extended as time passes, so a scan reads only the
    candles that closed since the last one. Used by one thread (the engine's).
    """

    def __init__(self, store: OHLCVStore, timeframe: Timeframe) -> None:
        if timeframe is Timeframe.D1:
            raise ValueError("daily candles are not rolled up from intraday ones")
        self._store = store
        self._timeframe = timeframe
        self._sources = sorted(
            (tf for tf in Timeframe if nests(tf, timeframe)), key=lambda tf: tf.minutes or 0
        )
        self._series: dict[str, _Series] = {}

    def last_closed(self, raw, symbol: str, due: datetime) -> Candle | None:
        """The last `timeframe` candle that ended at or before `due`, with its EMAs; None
        when no finer candle is stored before `due`. `raw`: a driver connection to read on."""
        series = self._series.get(symbol)
        if series is None or (series.until is not None and due < series.until):
            series = self._start(raw, symbol, due)  # first ask, or time went back: rebuild
            if series is None:
                return None
        finer = self._store.read_candles(raw, symbol, series.source, series.until, due)
        for bar in roll_up(finer, self._timeframe, closed_by=due):
            ema_9, ema_21, ema_50, ema_200 = series.emas.update(bar.close)
            series.last = replace(bar, ema_9=ema_9, ema_21=ema_21, ema_50=ema_50, ema_200=ema_200)
            series.until = SESSION_HOURS.bar_end(bar.ts, self._timeframe)
        return series.last

    def _start(self, raw, symbol: str, due: datetime) -> _Series | None:
        for source in self._sources:  # finest first
            if self._store.read_before(raw, symbol, source, due, 1).ts:
                series = _Series(source, EmaSet())
                self._series[symbol] = series
                return series
        self._series.pop(symbol, None)
        return None
