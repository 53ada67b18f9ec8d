"""Rows in and out of the OHLCV store: batch checks, each backend's row tuples, rows read back."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from itertools import islice, repeat
from operator import attrgetter, floordiv, is_, lt, ne, sub
from types import MemberDescriptorType
from typing import Any

from Webapp.market.candle import Candle, CandleColumns, Timeframe
from Webapp.market.ohlcv_copy import COLUMNS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_tzinfo = attrgetter("tzinfo")
_microsecond = attrgetter("microsecond")

Span = tuple[datetime, datetime]


class InvalidCandles(ValueError):
    """The store refused a batch; nothing of it was stored."""


# --- batches ------------------------------------------------------------------------------------


def batch_spans(candles: Sequence[Candle]) -> dict[tuple[str, Timeframe], Span]:
    """Check a batch; return each series' (first, last) start.

    Refuses a naive or fractional-second `ts`, an unknown timeframe, and a key
    given twice: a duplicate has no defined winner (the backends would differ).
    """
    if not isinstance(candles, Sequence):
        # The writers read the batch twice: a generator would be empty the second time.
        raise TypeError(f"pass candles as a list or tuple, not {type(candles).__name__}")
    spans: dict[tuple[str, Any], list[datetime]] = {}
    symbol = timeframe = prev = None
    span: list[datetime] = []
    reordered = False
    for c in candles:
        ts = c.ts
        if ts.tzinfo is None or ts.microsecond:
            raise InvalidCandles(f"ts must be aware and on a whole second: {c!r}")
        if c.symbol != symbol or c.timeframe != timeframe:
            symbol, timeframe, prev = c.symbol, c.timeframe, None
            span = spans.get((symbol, timeframe))
            if span is None:
                span = spans[(symbol, timeframe)] = [ts, ts]
            else:
                reordered = True
        if prev is not None and ts <= prev:
            reordered = True
        prev = ts
        if ts > span[1]:
            span[1] = ts
        elif ts < span[0]:
            span[0] = ts
    if reordered:
        _refuse_duplicates(candles)
    result = {}
    for (symbol, tf), (first, last) in spans.items():
        try:
            result[(symbol, Timeframe(tf))] = (first, last)
        except ValueError:
            raise InvalidCandles(f"unknown timeframe {tf!r} for {symbol}") from None
    return result


def timeframe_texts(spans: dict[tuple[str, Timeframe], Span]) -> dict[Timeframe, str]:
    """{timeframe: its stored text}; a candle's timeframe given as "5m" finds it too."""
    return {tf: tf.value for _, tf in spans}


def _refuse_duplicates(candles: Sequence[Candle]) -> None:
    seen: set[tuple] = set()
    for c in candles:
        key = (c.symbol, c.timeframe, c.ts)  # Timeframe.M5 and "5m" hash alike
        if key in seen:
            raise InvalidCandles(
                f"{c.symbol} {c.timeframe} {c.ts.isoformat()} is in the batch twice"
            )
        seen.add(key)


def candle_pg_rows(candles: Sequence[Candle], timeframes: dict) -> Iterator[tuple]:
    for c in candles:
        yield (
            c.symbol, timeframes[c.timeframe], c.ts, c.open, c.high, c.low, c.close,
            c.volume, c.ema_9, c.ema_21, c.ema_50, c.ema_200,
        )  # fmt: skip


def candle_sqlite_rows(candles: Sequence[Candle], timeframes: dict) -> Iterator[tuple]:
    for c in candles:
        e9, e21, e50, e200 = c.ema_9, c.ema_21, c.ema_50, c.ema_200
        # SQLite would store a NaN EMA as NULL; PostgreSQL refuses it, so refuse it here.
        # (NaN is the only value unequal to itself; None == None.)
        if e9 != e9 or e21 != e21 or e50 != e50 or e200 != e200:
            raise InvalidCandles(f"NaN EMA in {c!r}")
        yield (
            c.symbol, timeframes[c.timeframe], int(c.ts.timestamp()), c.open, c.high, c.low,
            c.close, c.volume, e9, e21, e50, e200,
        )  # fmt: skip


def column_span(columns: CandleColumns) -> Span | None:
    """Check a batch of columns as `spans` checks candles; its (first, last) start.

    Times must be aware, on a whole second and strictly increasing (a time given
    twice has no defined winner); columns must be as long as `ts`.
    """
    ts = columns.ts
    if any(len(column) != len(ts) for column in columns.values()):
        raise InvalidCandles(f"{columns.symbol}: columns of different lengths")
    if not ts:
        return None
    try:
        Timeframe(columns.timeframe)
    except ValueError:
        raise InvalidCandles(
            f"unknown timeframe {columns.timeframe!r} for {columns.symbol}"
        ) from None
    if not all(map(is_, map(_tzinfo, ts), repeat(UTC))) and any(
        t.tzinfo is None or t.utcoffset() is None for t in ts
    ):
        raise InvalidCandles(f"{columns.symbol}: ts must be aware datetimes")
    if any(map(_microsecond, ts)):
        raise InvalidCandles(f"{columns.symbol}: ts must be on a whole second")
    if not all(map(lt, ts, islice(ts, 1, None))):
        raise InvalidCandles(f"{columns.symbol}: ts must increase strictly (a time given twice?)")
    return ts[0], ts[-1]


def pg_rows(columns: CandleColumns) -> Iterator[tuple]:
    """PostgreSQL row tuples (table order) of a checked batch."""
    n = len(columns.ts)
    timeframe = Timeframe(columns.timeframe).value
    return zip(repeat(columns.symbol, n), repeat(timeframe, n), *columns.values(), strict=True)


def sqlite_rows(columns: CandleColumns) -> Iterator[tuple]:
    """SQLite row tuples of a checked batch: ts as epoch seconds, a NaN EMA refused."""
    for ema in columns.values()[6:]:
        # SQLite would store a NaN EMA as NULL; PostgreSQL refuses it, so refuse it here.
        if any(map(ne, ema, ema)):  # NaN is the only value unequal to itself
            raise InvalidCandles(f"{columns.symbol}: NaN EMA in the batch")
    n = len(columns.ts)
    seconds = map(floordiv, map(sub, columns.ts, repeat(_EPOCH)), repeat(_SECOND))
    return zip(
        repeat(columns.symbol, n),
        repeat(Timeframe(columns.timeframe).value, n),
        seconds,
        *columns.values()[1:],
        strict=True,
    )


def columns_from_rows(symbol: str, tf: Timeframe, rows: list[tuple], to_datetime) -> CandleColumns:
    """Columns of one series from (ts, open, ..., ema_200) rows, as OHLCVStore reads Candles."""
    if not rows:
        return CandleColumns(symbol, tf, *([] for _ in range(10)))
    ts, *values = map(list, zip(*rows, strict=True))
    if to_datetime is not None:
        ts = list(map(to_datetime, ts, repeat(UTC)))
    return CandleColumns(symbol, tf, ts, *values)


# --- building candles ----------------------------------------------------------------------------

# Candle is a frozen dataclass whose __init__ only stores its twelve fields, one
# object.__setattr__ call each. Setting its slots directly builds equal objects in
# about half the time, which is most of a year's read; should Candle ever grow a
# field or a __post_init__, reads fall back to calling it.
_SLOTS = tuple(Candle.__dict__.get(name) for name in COLUMNS)
_DIRECT = (
    tuple(f.name for f in fields(Candle)) == COLUMNS
    and not hasattr(Candle, "__post_init__")
    and all(isinstance(slot, MemberDescriptorType) for slot in _SLOTS)
)


def candles_from_rows(symbol: str, tf: Timeframe, rows: list[tuple], to_datetime) -> list[Candle]:
    """Candles of one series from (ts, open, ..., ema_200) rows; `to_datetime(ts, UTC)`
    turns a stored ts into a datetime (None: it already is one)."""
    if not _DIRECT:
        return [
            Candle(symbol, tf, ts if to_datetime is None else to_datetime(ts, UTC), *values)
            for ts, *values in rows
        ]
    new = object.__new__
    s_symbol, s_tf, s_ts, s_open, s_high, s_low, s_close, s_vol, s_e9, s_e21, s_e50, s_e200 = (
        slot.__set__ for slot in _SLOTS
    )
    out = []
    append = out.append
    for ts, o, h, lo, c, v, e9, e21, e50, e200 in rows:
        candle = new(Candle)
        s_symbol(candle, symbol)
        s_tf(candle, tf)
        s_ts(candle, ts if to_datetime is None else to_datetime(ts, UTC))
        s_open(candle, o)
        s_high(candle, h)
        s_low(candle, lo)
        s_close(candle, c)
        s_vol(candle, v)
        s_e9(candle, e9)
        s_e21(candle, e21)
        s_e50(candle, e50)
        s_e200(candle, e200)
        append(candle)
    return out
