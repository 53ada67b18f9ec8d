"""Store checked bars with EMAs that continue the stored series: one batch, or many overlapped.

The EMAs equal a batch computation over the symbol's whole stored series in the
timeframe:
- appended after stored candles: they continue from the last stored candle's EMAs
  (exact once all four are seeded, i.e. 200 candles; before that the few stored
  closes are replayed);
- overlapping or preceding stored candles: the imported bars replace stored ones at
  the same times, and every stored candle from the first imported time on gets
  recomputed EMAs in the same transaction (`restated`).

Only rows that are new or differ from what is stored are written, so re-importing a
file changes nothing and writes nothing. A writer appending to the same series while
this runs (the live candle aggregator) could store one candle on the old EMAs; import
history while the feed for that symbol is stopped, or re-import to repair.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from itertools import compress

from Webapp.market.bars import Bars
from Webapp.market.candle import EMA_PERIODS, CandleColumns, Timeframe
from Webapp.market.indicators import ema_series
from Webapp.market.ohlcv import InvalidCandles
from Webapp.market.ohlcv_loads import Loader, PgLoader

_LONGEST = max(EMA_PERIODS)

Stored = Callable[[int, int, InvalidCandles | None], None]  # (changed, restated, error)


def store_bars(store, symbol: str, timeframe: Timeframe, bars: Bars) -> tuple[int, int]:
    """Store checked, sorted `bars` with EMAs in one transaction.

    Returns (rows the store inserted or changed, stored candles after the first
    imported time that were rewritten with recomputed EMAs). Raises InvalidCandles
    when the store refuses the batch (nothing stored).
    """
    first = bars.ts[0]
    prior, tail = store.series_around(symbol, timeframe, first, _LONGEST)
    ts, opens, highs, lows, closes, volumes = _merge(bars, tail)
    emas = _emas(
        closes,
        prior.close,
        _last_emas(prior),
        lambda: store.series_around(symbol, timeframe, first, None)[0].close,
    )
    merged = CandleColumns(symbol, timeframe, ts, opens, highs, lows, closes, volumes, *emas)
    restated = len(ts) - len(bars)
    if not tail.ts:
        return store.bulk_load_columns(merged, fresh=True), restated
    write = _changed(merged, tail)
    return (store.bulk_load_columns(write) if write.ts else 0), restated


class BarWriter:
    """store_bars for many batches through a loader (see ohlcv_loads); call `finish` at
    the end. `stored` hears each outcome; batches of one series are stored in order.

    On PostgreSQL a batch is stored in two steps: after it is parsed, the query for
    what is stored around it is sent; two files later (or before a batch of the same
    series asks) it is decided and its COPY sent. The server answers and copies
    while Python parses. The bet is on the common cases, a new series or an identical
    re-import: the bars as the whole series from their first time on, EMAs continued
    from before them. The loader checks the bet against the stored rows and else
    calls store_bars.
    """

    def __init__(self, loader: Loader) -> None:
        self._loader = loader
        self._asked: deque[tuple[str, Timeframe, Bars, Stored]] = deque()

    def store(self, symbol: str, timeframe: Timeframe, bars: Bars, stored: Stored) -> None:
        load = self._loader
        if not isinstance(load, PgLoader):
            try:
                changed, restated = store_bars(load.store, symbol, timeframe, bars)
            except InvalidCandles as exc:
                stored(0, 0, exc)
            else:
                stored(changed, restated, None)
            return
        series = (symbol, timeframe)
        while any(asked[:2] == series for asked in self._asked):
            self._decide()  # an earlier batch of the series goes first
        load.settle(series)
        while len(self._asked) >= load.readers:
            self._decide()
        load.ask(series, bars.ts[0], _LONGEST)
        load.prepare_copy()
        self._asked.append((symbol, timeframe, bars, stored))

    def finish(self) -> None:
        """Decide the last batches (the loader's own finish waits for their COPYs)."""
        while self._asked:
            self._decide()

    def _decide(self) -> None:
        """Store the oldest batch that asked (see PgLoader.submit)."""
        symbol, timeframe, bars, stored = self._asked.popleft()
        load = self._loader
        assert isinstance(load, PgLoader)
        first = bars.ts[0]
        context = load.context()
        emas = _emas(
            bars.close,
            context.prior_closes,
            context.last_emas,
            lambda: load.closes_before((symbol, timeframe), first),
        )
        columns = CandleColumns(
            symbol, timeframe, bars.ts, bars.open, bars.high, bars.low, bars.close, bars.volume,
            *emas,
        )  # fmt: skip
        load.submit(
            columns,
            context.rows_from,
            stored,
            lambda: store_bars(load.store, symbol, timeframe, bars),
        )


def _merge(bars: Bars, tail: CandleColumns):
    """The imported bars plus stored candles at other times from `tail`, in time order."""
    if not tail.ts or tail.ts == bars.ts:
        return bars.ts, bars.open, bars.high, bars.low, bars.close, bars.volume
    rows = {row[0]: row for row in zip(*tail.values()[:6], strict=True)}
    for row in zip(bars.ts, bars.open, bars.high, bars.low, bars.close, bars.volume, strict=True):
        rows[row[0]] = row
    merged = [rows[t] for t in sorted(rows)]
    return tuple(list(column) for column in zip(*merged, strict=True))


def _emas(
    closes: list[float],
    prior_closes: list[float],
    last_emas: tuple[float, float, float, float] | None,
    every_close_before: Callable[[], list[float]],
) -> list[list[float | None]]:
    """EMA columns (one per period) for `closes`, continuing the stored series before them.

    From the last stored candle's EMAs when all four are there (EMAs continue exactly
    from a stored value); otherwise by replaying the stored closes from the series'
    first candle: `prior_closes` (the last 200 at most) are all of them when fewer
    than 200, else they are read.
    """
    if last_emas is not None:
        return [
            _continue_ema(closes, period, value)
            for period, value in zip(EMA_PERIODS, last_emas, strict=True)
        ]
    if len(prior_closes) >= _LONGEST:  # that many candles stored without EMAs: replay all
        prior_closes = every_close_before()
    history = prior_closes + closes
    skip = len(prior_closes)
    return [ema_series(history, period)[skip:] for period in EMA_PERIODS]


def _last_emas(prior: CandleColumns) -> tuple[float, float, float, float] | None:
    """The last stored candle's four EMAs, or None if there is none or one is missing."""
    if not prior.ts:
        return None
    values = (prior.ema_9[-1], prior.ema_21[-1], prior.ema_50[-1], prior.ema_200[-1])
    return None if None in values else values  # type: ignore[return-value]


def _continue_ema(closes: list[float], period: int, value: float) -> list[float | None]:
    """ema_series continued from a seeded `value`: the same float operations, in order."""
    alpha = 2.0 / (period + 1)
    out: list[float | None] = []
    append = out.append
    for close in closes:
        value += alpha * (close - value)
        append(value)
    return out


def _changed(merged: CandleColumns, tail: CandleColumns) -> CandleColumns:
    """The rows of `merged` that are not stored exactly so in `tail`."""
    columns = merged.values()
    if merged.ts == tail.ts:  # a re-import: compare whole columns first
        if all(new == old for new, old in zip(columns[1:], tail.values()[1:], strict=True)):
            keep = [False] * len(merged.ts)
        else:
            keep = [
                new != old
                for new, old in zip(
                    zip(*columns, strict=True), zip(*tail.values(), strict=True), strict=True
                )
            ]
    else:
        stored = {row[0]: row for row in zip(*tail.values(), strict=True)}
        keep = [stored.get(row[0]) != row for row in zip(*columns, strict=True)]
    return CandleColumns(
        merged.symbol,
        merged.timeframe,
        *(list(compress(column, keep)) for column in columns),
    )
