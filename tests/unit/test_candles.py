"""CandleAgg: ticks to 1m candles per IST session minute, roll-ups to 5m/15m/1d, EMAs, edges."""

from __future__ import annotations

import logging
import math
import random
import threading
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest

from Webapp.market.calendar import IST, MarketCalendar
from Webapp.market.candle import EMA_PERIODS, Candle, Timeframe
from Webapp.market.candles import DEFAULT_TIMEFRAMES, CandleAgg
from Webapp.market.indicators import EmaSet, ema_series
from Webapp.market.ltp_store import LTPStore, Quote

NSE = MarketCalendar.nse()
FRIDAY = date(2026, 6, 19)
M1, M5, M15, D1 = Timeframe.M1, Timeframe.M5, Timeframe.M15, Timeframe.D1


def at(h: int, m: int, s: int = 0, us: int = 0, day: date = FRIDAY) -> datetime:
    """An IST wall time of `day`, as the UTC datetime feeds deliver."""
    return datetime(day.year, day.month, day.day, h, m, s, us, tzinfo=IST).astimezone(UTC)


class Sink:
    def __init__(self) -> None:
        self.batches: list[list[Candle]] = []

    def __call__(self, candles: list[Candle]) -> None:
        self.batches.append(list(candles))

    @property
    def candles(self) -> list[Candle]:
        return [c for batch in self.batches for c in batch]

    def of(self, timeframe: Timeframe, symbol: str | None = None) -> list[Candle]:
        return [
            c
            for c in self.candles
            if c.timeframe is timeframe and (symbol is None or c.symbol == symbol)
        ]


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def agg(sink) -> CandleAgg:
    return CandleAgg(sink, NSE)


def ohlcv(candle: Candle) -> tuple:
    return (candle.open, candle.high, candle.low, candle.close, candle.volume)


def assert_rollups_match_their_minutes(candles: list[Candle]) -> None:
    """Every 5m/15m/1d candle equals the fold of the 1m candles inside it, and vice versa."""
    higher = [c for c in candles if c.timeframe is not M1]
    parts: dict[tuple, list[Candle]] = defaultdict(list)
    for timeframe in {c.timeframe for c in higher}:
        for minute in candles:
            if minute.timeframe is M1:
                key = (minute.symbol, timeframe, NSE.bar_start(minute.ts, timeframe))
                parts[key].append(minute)
    assert sorted(parts, key=str) == sorted(
        ((c.symbol, c.timeframe, c.ts) for c in higher), key=str
    )
    for candle in higher:
        inside = sorted(parts[(candle.symbol, candle.timeframe, candle.ts)], key=lambda p: p.ts)
        assert ohlcv(candle) == (
            inside[0].open,
            max(p.high for p in inside),
            min(p.low for p in inside),
            inside[-1].close,
            sum(p.volume for p in inside),
        ), candle


def assert_each_candle_once(candles: list[Candle]) -> None:
    keys = [(c.symbol, c.timeframe, c.ts) for c in candles]
    assert len(keys) == len(set(keys))


# --- one minute ---------------------------------------------------------------------


def test_ticks_of_one_minute_make_one_candle_emitted_when_the_next_minute_starts(agg, sink):
    agg.on_tick("INFY", 1500.0, 1_000, at(9, 15, 0))
    agg.on_tick("INFY", 1501.0, 1_500, at(9, 15, 10))
    agg.on_tick("INFY", 1499.5, 1_800, at(9, 15, 20))
    agg.on_tick("INFY", 1500.5, 2_000, at(9, 15, 59, 999_999))

    assert sink.batches == []
    forming = agg.current("INFY", M1)
    assert forming.ts == at(9, 15) and ohlcv(forming) == (1500.0, 1501.0, 1499.5, 1500.5, 2_000)

    agg.on_tick("INFY", 1502.0, 2_100, at(9, 16, 0))

    [minute] = sink.of(M1)
    assert minute == Candle("INFY", M1, at(9, 15), 1500.0, 1501.0, 1499.5, 1500.5, 2_000)
    assert minute.ts.tzinfo is UTC
    assert agg.current("INFY", M1).ts == at(9, 16)


def test_symbols_are_kept_apart(agg, sink):
    agg.on_tick("INFY", 1500.0, 10, at(9, 15, 1))
    agg.on_tick("TCS", 3000.0, 20, at(9, 15, 2))
    agg.on_tick("INFY", 1510.0, 30, at(9, 15, 3))

    agg.close_due(at(9, 16))

    assert {c.symbol: ohlcv(c) for c in sink.of(M1)} == {
        "INFY": (1500.0, 1510.0, 1500.0, 1510.0, 30),
        "TCS": (3000.0, 3000.0, 3000.0, 3000.0, 20),
    }


# --- the session edges ----------------------------------------------------------------


def test_ticks_before_the_open_and_at_the_close_are_ignored_and_counted(agg, sink):
    agg.on_tick("SBIN", 800.0, 100, at(9, 14, 59))
    agg.on_tick("SBIN", 801.0, 200, at(9, 15, 0))
    agg.on_tick("SBIN", 802.0, 300, at(15, 29, 59))
    agg.on_tick("SBIN", 803.0, 400, at(15, 30, 0))
    agg.on_tick("SBIN", 804.0, 500, at(20, 0, 0))

    assert agg.stats["outside_session"] == 3
    assert agg.current("SBIN", M1).ts == at(15, 29)
    assert ohlcv(agg.current("SBIN", M1)) == (802.0, 802.0, 802.0, 802.0, 100)
    assert [c.ts for c in sink.of(M1)] == [at(9, 15)]


def test_ticks_on_holidays_and_weekends_are_ignored(agg, sink):
    agg.on_tick("SBIN", 800.0, 100, at(11, 0, day=date(2026, 5, 28)))  # Bakri Id
    agg.on_tick("SBIN", 800.0, 100, at(11, 0, day=date(2026, 6, 20)))  # Saturday

    assert agg.stats["outside_session"] == 2
    assert agg.current("SBIN", M1) is None


def test_the_first_bars_of_the_session_start_at_0915(agg, sink):
    agg.on_tick("ITC", 400.0, 5_000, at(9, 15, 0))

    assert agg.current("ITC", M1).ts == at(9, 15)
    assert agg.current("ITC", M5).ts == at(9, 15)
    assert agg.current("ITC", M15).ts == at(9, 15)
    assert agg.current("ITC", D1).ts == datetime(2026, 6, 19, tzinfo=IST)


def test_the_last_bars_close_at_1530_without_a_tick(agg, sink):
    agg.on_tick("ITC", 400.0, 5_000, at(15, 29, 30))

    assert agg.close_due(at(15, 29, 59, 999_999)) == []
    closed = agg.close_due(at(15, 30))

    assert [(c.timeframe, c.ts) for c in closed] == [
        (M1, at(15, 29)),
        (M5, at(15, 25)),
        (M15, at(15, 15)),
        (D1, datetime(2026, 6, 19, tzinfo=IST)),
    ]
    assert sink.candles == closed
    assert agg.close_due(at(15, 31)) == []
    assert agg.flush() == []
    assert len(sink.candles) == 4


# --- gaps and closing on time ---------------------------------------------------------


def test_minutes_without_ticks_make_no_candles(agg, sink):
    agg.on_tick("LT", 3600.0, 100, at(9, 15, 5))
    agg.on_tick("LT", 3610.0, 300, at(9, 21, 30))

    assert [c.ts for c in sink.of(M1)] == [at(9, 15)]
    assert [c.ts for c in sink.of(M5)] == [at(9, 15)]
    assert ohlcv(sink.of(M5)[0]) == (3600.0, 3600.0, 3600.0, 3600.0, 100)
    agg.close_due(at(9, 30))
    assert [c.ts for c in sink.of(M1)] == [at(9, 15), at(9, 21)]
    assert [c.ts for c in sink.of(M5)] == [at(9, 15), at(9, 20)]
    assert sink.of(M1)[1].volume == 200


def test_close_due_closes_a_candle_exactly_at_its_end(agg, sink):
    agg.on_tick("LT", 3600.0, 100, at(9, 21, 10))

    assert agg.close_due(at(9, 21, 59, 999_999)) == []
    closed = agg.close_due(at(9, 22))

    assert [(c.timeframe, c.ts) for c in closed] == [(M1, at(9, 21))]
    assert agg.current("LT", M1) is None
    assert agg.current("LT", M5).ts == at(9, 20)  # the 5m bar is still open
    assert [(c.timeframe, c.ts) for c in agg.close_due(at(9, 25))] == [(M5, at(9, 20))]
    assert [(c.timeframe, c.ts) for c in agg.close_due(at(9, 30))] == [(M15, at(9, 15))]


def test_close_due_needs_an_aware_time(agg):
    with pytest.raises(ValueError, match="naive"):
        agg.close_due(datetime(2026, 6, 19, 9, 30))


# --- out of order, duplicates, never reopening ------------------------------------------


def test_a_tick_of_an_already_closed_minute_is_dropped_and_never_reopens_it(agg, sink):
    agg.on_tick("HDFCBANK", 950.0, 100, at(9, 15, 10))
    agg.close_due(at(9, 16))
    agg.on_tick("HDFCBANK", 990.0, 200, at(9, 15, 50))  # late: its minute has closed

    assert agg.stats["late"] == 1
    assert agg.current("HDFCBANK", M1) is None
    agg.flush()
    assert [ohlcv(c) for c in sink.of(M1)] == [(950.0, 950.0, 950.0, 950.0, 100)]
    assert_each_candle_once(sink.candles)


def test_a_tick_older_than_the_forming_minute_is_dropped_even_for_a_minute_with_no_candle(
    agg, sink
):
    agg.on_tick("HDFCBANK", 950.0, 100, at(9, 15, 10))
    agg.on_tick("HDFCBANK", 951.0, 200, at(9, 17, 10))
    agg.on_tick("HDFCBANK", 900.0, 150, at(9, 16, 30))  # belongs to 09:16, already skipped

    assert agg.stats["late"] == 1
    agg.flush()
    assert [c.ts for c in sink.of(M1)] == [at(9, 15), at(9, 17)]
    assert min(c.low for c in sink.candles) == 950.0


def test_an_older_tick_inside_the_forming_minute_widens_high_low_but_not_close(agg, sink):
    agg.on_tick("TCS", 3000.0, 100, at(9, 15, 10))
    agg.on_tick("TCS", 3002.0, 300, at(9, 15, 30))
    agg.on_tick("TCS", 2990.0, 200, at(9, 15, 20))  # arrives late, traded before 3002
    agg.on_tick("TCS", 3010.0, 250, at(9, 15, 25))

    assert agg.stats["out_of_order"] == 2
    assert ohlcv(agg.current("TCS", M1)) == (3000.0, 3010.0, 2990.0, 3002.0, 300)


def test_an_older_tick_than_the_first_one_of_the_minute_becomes_its_open(agg):
    agg.on_tick("TCS", 3000.0, 100, at(9, 15, 10))
    agg.on_tick("TCS", 2995.0, 50, at(9, 15, 5))  # traded first, arrived second
    agg.on_tick("TCS", 2996.0, 60, at(9, 15, 5))  # same time, later arrival: not the open

    assert ohlcv(agg.current("TCS", M1)) == (2995.0, 3000.0, 2995.0, 3000.0, 100)


def test_ticks_with_the_same_time_take_the_later_arrival_as_close(agg):
    agg.on_tick("TCS", 3000.0, 100, at(9, 20, 10))
    agg.on_tick("TCS", 3001.0, 110, at(9, 20, 10))

    assert agg.current("TCS", M1).close == 3001.0
    assert agg.stats["duplicates"] == 0


def test_an_exact_duplicate_is_ignored(agg, sink):
    agg.on_tick("TCS", 3000.0, 100, at(9, 15, 10))
    agg.on_tick("TCS", 3001.0, 110, at(9, 15, 11))
    agg.on_tick("TCS", 3001.0, 110, at(9, 15, 11))

    assert agg.stats["duplicates"] == 1
    assert ohlcv(agg.current("TCS", M1)) == (3000.0, 3001.0, 3000.0, 3001.0, 110)


def test_the_same_ticks_give_the_same_candles():
    ticks = session_ticks(random.Random(4), ["A", "B"], [FRIDAY])
    shuffled = list(ticks)
    rng = random.Random(1)
    for index in range(0, len(shuffled) - 1, 7):  # some local disorder
        if rng.random() < 0.5:
            shuffled[index], shuffled[index + 1] = shuffled[index + 1], shuffled[index]
    outputs = []
    for _ in range(2):
        sink = Sink()
        agg = CandleAgg(sink, NSE)
        for tick in shuffled:
            agg.on_tick(*tick)
        agg.flush()
        outputs.append((sink.candles, agg.stats))
    assert outputs[0] == outputs[1]
    assert_rollups_match_their_minutes(outputs[0][0])
    assert_each_candle_once(outputs[0][0])


# --- volume -----------------------------------------------------------------------------


def test_candle_volume_is_the_rise_of_cumulative_volume_during_it(agg, sink):
    agg.on_tick("RELIANCE", 1300.0, 10_000, at(9, 15, 0))  # first minute: from 0
    agg.on_tick("RELIANCE", 1301.0, 12_500, at(9, 15, 40))
    agg.on_tick("RELIANCE", 1302.0, 13_000, at(9, 16, 5))
    agg.on_tick("RELIANCE", 1303.0, 16_000, at(9, 16, 50))
    agg.on_tick("RELIANCE", 1304.0, 16_200, at(9, 18, 1))
    agg.close_due(at(9, 20))

    assert [c.volume for c in sink.of(M1)] == [12_500, 3_500, 200]
    assert [c.volume for c in sink.of(M5)] == [16_200]


def test_a_falling_cumulative_volume_is_a_stale_tick(agg, sink):
    agg.on_tick("RELIANCE", 1300.0, 10_000, at(9, 15, 0))
    agg.on_tick("RELIANCE", 1301.0, 12_000, at(9, 15, 30))
    agg.on_tick("RELIANCE", 1290.0, 11_000, at(9, 15, 40))  # later time, older volume
    agg.on_tick("RELIANCE", 1295.0, 11_500, at(9, 16, 10))  # would open 09:16: dropped

    assert ohlcv(agg.current("RELIANCE", M1)) == (1300.0, 1301.0, 1290.0, 1301.0, 12_000)
    assert agg.stats["stale_volume"] == 2
    assert sink.batches == []


def test_ticks_without_volume_set_prices_but_never_volume(agg, sink):
    agg.on_tick("WIPRO", 250.0, 0, at(9, 15, 0))
    agg.on_tick("WIPRO", 251.0, 0, at(9, 15, 20))
    agg.on_tick("WIPRO", 249.0, 0, at(9, 16, 20))
    agg.close_due(at(9, 17))

    assert [ohlcv(c) for c in sink.of(M1)] == [
        (250.0, 251.0, 250.0, 251.0, 0),
        (249.0, 249.0, 249.0, 249.0, 0),
    ]


def test_joining_mid_session_does_not_dump_the_days_volume_into_one_candle(agg, sink):
    agg.on_tick("ITC", 400.0, 3_000_000, at(11, 0, 5))
    agg.on_tick("ITC", 400.5, 3_000_700, at(11, 0, 45))
    agg.close_due(at(11, 1))

    assert sink.of(M1)[0].volume == 700


def test_volume_restarts_with_each_session(agg, sink):
    thursday = date(2026, 6, 18)
    agg.on_tick("ITC", 400.0, 9_000_000, at(15, 29, 0, day=thursday))
    agg.on_tick("ITC", 401.0, 500, at(9, 15, 2))  # Friday's first trade

    assert [(c.timeframe, c.ts.astimezone(IST).date()) for c in sink.candles] == [
        (M1, thursday),
        (M5, thursday),
        (M15, thursday),
        (D1, thursday),
    ]
    agg.close_due(at(9, 16))
    assert sink.of(M1)[-1].ts == at(9, 15) and sink.of(M1)[-1].volume == 500


def test_day_rollover_over_a_holiday(agg, sink):
    wednesday, friday = date(2026, 5, 27), date(2026, 5, 29)
    agg.on_tick("NTPC", 340.0, 100, at(14, 0, 0, day=wednesday))
    agg.on_tick("NTPC", 341.0, 200, at(12, 0, 0, day=date(2026, 5, 28)))  # Bakri Id: ignored
    agg.on_tick("NTPC", 342.0, 300, at(9, 15, 0, day=friday))
    agg.flush()

    days = [c.ts for c in sink.of(D1)]
    assert days == [
        datetime(2026, 5, 27, tzinfo=IST),
        datetime(2026, 5, 29, tzinfo=IST),
    ]
    assert [ohlcv(c) for c in sink.of(D1)] == [
        (340.0, 340.0, 340.0, 340.0, 0),  # joined at 14:00: only the rise after counts
        (342.0, 342.0, 342.0, 342.0, 300),
    ]


# --- roll-ups and EMAs --------------------------------------------------------------------


def session_ticks(
    rng: random.Random, symbols: list[str], days: list[date], per_minute: int = 3
) -> list[tuple[str, float, int, datetime]]:
    """A seeded random walk: up to `per_minute` ticks per symbol per minute, time-ordered."""
    ticks = []
    price = {symbol: 100.0 + 50 * index for index, symbol in enumerate(symbols)}
    for day in days:
        open_, _ = NSE.session_bounds(day)
        volume = dict.fromkeys(symbols, 0)
        for minute in range(375):
            for symbol in symbols:
                if rng.random() < 0.08:
                    continue  # a quiet minute: no candle
                seconds = sorted(rng.uniform(0, 60) for _ in range(rng.randint(1, per_minute)))
                for second in seconds:
                    step = rng.gauss(0, 0.002) * price[symbol]
                    price[symbol] = max(1.0, round((price[symbol] + step) / 0.05) * 0.05)
                    volume[symbol] += rng.randint(1, 500)
                    ts = open_ + timedelta(minutes=minute, seconds=second)
                    ticks.append((symbol, price[symbol], volume[symbol], ts))
    ticks.sort(key=lambda tick: tick[3])
    return ticks


def test_higher_timeframes_agree_exactly_with_their_one_minute_parts(agg, sink):
    days = NSE.trading_days(date(2026, 6, 17), date(2026, 6, 19))
    for tick in session_ticks(random.Random(42), ["A", "B", "C"], days):
        agg.on_tick(*tick)
    agg.close_due(at(15, 30))

    assert_rollups_match_their_minutes(sink.candles)
    assert_each_candle_once(sink.candles)
    assert len(sink.of(D1)) == 9
    expected = {
        (timeframe, bar)
        for day in days
        for timeframe in DEFAULT_TIMEFRAMES
        for bar in NSE.expected_bars(day, timeframe)
    }
    assert {(c.timeframe, c.ts) for c in sink.candles} <= expected


def test_closed_candles_carry_emas_equal_to_the_batch_computation(agg, sink):
    days = NSE.trading_days(date(2026, 6, 15), date(2026, 6, 19))
    for tick in session_ticks(random.Random(7), ["A", "B"], days, per_minute=2):
        agg.on_tick(*tick)
    agg.close_due(at(15, 30))

    for timeframe in DEFAULT_TIMEFRAMES:
        for symbol in ("A", "B"):
            candles = sink.of(timeframe, symbol)
            closes = [c.close for c in candles]
            for index, period in enumerate(EMA_PERIODS):
                stored = [(c.ema_9, c.ema_21, c.ema_50, c.ema_200)[index] for c in candles]
                assert stored == ema_series(closes, period), (timeframe, symbol, period)
    assert len(sink.of(M5, "A")) >= 350  # enough for EMA200 on 5m
    assert sink.of(M5, "A")[-1].ema_200 is not None


def test_ema_seed_continues_the_stored_history(sink):
    history = [100.0 + math.sin(i / 5) for i in range(230)]
    seeded = {("INFY", M1): EmaSet.from_history(history)}
    agg = CandleAgg(sink, NSE, timeframes=(M1,), ema_seed=lambda s, tf: seeded.get((s, tf)))
    agg.on_tick("INFY", 101.5, 10, at(9, 15, 1))
    agg.on_tick("INFY", 101.0, 20, at(9, 16, 1))
    agg.on_tick("TCS", 200.0, 20, at(9, 16, 2))  # no history: starts empty
    agg.close_due(at(9, 17))

    expected = EmaSet.from_history(history)
    first, second = expected.update(101.5), expected.update(101.0)
    infy = sink.of(M1, "INFY")
    assert [(c.ema_9, c.ema_21, c.ema_50, c.ema_200) for c in infy] == [first, second]
    assert sink.of(M1, "TCS")[0].ema_9 is None


def test_a_failing_ema_seed_leaves_that_symbols_emas_empty(sink, caplog):
    def broken(symbol, timeframe):
        raise RuntimeError("store down")

    agg = CandleAgg(sink, NSE, timeframes=(M1,), ema_seed=broken)
    with caplog.at_level(logging.ERROR, logger="Webapp.market.candles"):
        for minute in range(12):
            agg.on_tick("INFY", 100.0 + minute, minute, at(9, 15 + minute, 1))
        agg.close_due(at(9, 30))

    assert len(sink.of(M1)) == 12
    assert all(c.ema_9 is None for c in sink.of(M1))
    assert sum("EMA seed failed" in r.getMessage() for r in caplog.records) == 1


# --- timeframes, current, flush ---------------------------------------------------------


def test_timeframes_are_configurable_and_1m_need_not_be_emitted(sink):
    agg = CandleAgg(sink, NSE, timeframes=(M5, M5, Timeframe.H1))
    for minute in (13, 14, 15, 16, 22, 29):
        agg.on_tick("X", float(minute), minute, at(15, minute, 0))
    agg.close_due(at(15, 30))

    assert agg.timeframes == (M5, Timeframe.H1)
    assert [(c.timeframe, c.ts, c.open, c.close) for c in sink.candles] == [
        (M5, at(15, 10), 13.0, 14.0),
        (Timeframe.H1, at(14, 15), 13.0, 14.0),
        (M5, at(15, 15), 15.0, 16.0),
        (M5, at(15, 20), 22.0, 22.0),
        (M5, at(15, 25), 29.0, 29.0),
        (Timeframe.H1, at(15, 15), 15.0, 29.0),  # the last hour bar lasts 15 minutes
    ]
    with pytest.raises(ValueError):
        agg.current("X", M1)
    with pytest.raises(ValueError):
        CandleAgg(sink, NSE, timeframes=())


def test_current_higher_timeframe_includes_the_forming_minute(agg):
    agg.on_tick("AXISBANK", 1000.0, 100, at(9, 15, 5))
    agg.on_tick("AXISBANK", 1005.0, 300, at(9, 16, 5))
    agg.on_tick("AXISBANK", 998.0, 450, at(9, 17, 5))

    five = agg.current("AXISBANK", M5)
    assert five.ts == at(9, 15)
    assert ohlcv(five) == (1000.0, 1005.0, 998.0, 998.0, 450)
    assert five.ema_9 is None
    assert agg.current("UNKNOWN", M5) is None


def test_flush_closes_everything_and_later_ticks_never_reemit(agg, sink):
    agg.on_tick("MARUTI", 12_000.0, 10, at(9, 16, 5))
    flushed = agg.flush()

    assert [(c.timeframe, c.ts) for c in flushed] == [
        (M1, at(9, 16)),
        (M5, at(9, 15)),
        (M15, at(9, 15)),
        (D1, datetime(2026, 6, 19, tzinfo=IST)),
    ]
    agg.on_tick("MARUTI", 12_010.0, 20, at(9, 16, 30))  # same minute: late
    agg.on_tick("MARUTI", 12_020.0, 30, at(9, 17, 5))  # new minute, flushed 5m/15m/1d bars
    agg.flush()

    assert agg.stats["late"] == 1
    assert [(c.timeframe, c.ts) for c in sink.candles[4:]] == [(M1, at(9, 17))]
    assert agg.stats["parts_after_close"] == 3
    assert_each_candle_once(sink.candles)


# --- the feed side --------------------------------------------------------------------------


def test_subscribed_to_the_ltp_store_it_uses_exchange_time_else_receive_time(sink):
    store, agg = LTPStore(), CandleAgg(sink, NSE)
    store.subscribe(agg.on_quote)

    store.update("INFY", 1500.0, 100, at(9, 15, 10), received_at=at(9, 15, 11))
    store.update("INFY", 1501.0, 200, None, received_at=at(9, 15, 30))
    store.update("INFY", 1502.0, 300, at(9, 15, 59), received_at=at(9, 16, 1))

    forming = agg.current("INFY", M1)
    assert forming.ts == at(9, 15)
    assert ohlcv(forming) == (1500.0, 1502.0, 1500.0, 1502.0, 300)


def test_naive_timestamps_and_bad_prices_are_dropped_and_counted(agg, caplog):
    with caplog.at_level(logging.ERROR, logger="Webapp.market.candles"):
        agg.on_tick("INFY", 1500.0, 100, datetime(2026, 6, 19, 9, 30))
        agg.on_tick("INFY", 1500.0, 100, datetime(2026, 6, 19, 9, 31))
    for price in (0.0, -1.0, math.nan, math.inf):
        agg.on_tick("INFY", price, 100, at(9, 30))

    assert agg.stats["naive_time"] == 2
    assert agg.stats["bad_price"] == 4
    assert agg.current("INFY", M1) is None
    assert sum("naive" in r.getMessage() for r in caplog.records) == 1


def test_a_failing_sink_is_logged_and_aggregation_goes_on(caplog):
    calls = []

    def sink(candles):
        calls.append(candles)
        raise RuntimeError("disk full")

    agg = CandleAgg(sink, NSE, timeframes=(M1,))
    with caplog.at_level(logging.ERROR, logger="Webapp.market.candles"):
        agg.on_tick("INFY", 1500.0, 100, at(9, 15, 10))
        agg.on_tick("INFY", 1501.0, 200, at(9, 16, 10))
        agg.on_tick("INFY", 1502.0, 300, at(9, 17, 10))

    assert [c[0].ts for c in calls] == [at(9, 15), at(9, 16)]
    assert any("candle sink failed" in r.getMessage() for r in caplog.records)


def test_a_timer_thread_closing_candles_while_ticks_arrive_emits_each_candle_once(sink):
    agg = CandleAgg(sink, NSE)
    ticks = session_ticks(random.Random(3), ["A", "B", "C", "D"], [FRIDAY])
    latest = [ticks[0][3]]
    done = threading.Event()

    def timer() -> None:
        while not done.is_set():
            agg.close_due(latest[0])

    thread = threading.Thread(target=timer, daemon=True)
    thread.start()
    for tick in ticks:
        agg.on_tick(*tick)
        latest[0] = tick[3]
    done.set()
    thread.join(10)
    agg.close_due(at(15, 30))

    assert not thread.is_alive()
    assert_each_candle_once(sink.candles)
    assert_rollups_match_their_minutes(sink.candles)
    assert len(sink.of(D1)) == 4


def test_on_quote_and_on_tick_build_the_same_candles():
    # on_quote inlines on_tick's hot path for speed: both must apply the same rules.
    ticks = session_ticks(random.Random(8), ["A", "B"], [FRIDAY], per_minute=4)
    rng = random.Random(2)
    disordered = []
    for tick in ticks:
        disordered.append(tick)
        roll = rng.random()
        if roll < 0.05:
            disordered.append(tick)  # exact duplicate
        elif roll < 0.10:
            symbol, price, volume, ts = tick
            disordered.append((symbol, price - 0.5, volume - 1, ts - timedelta(seconds=2)))
        elif roll < 0.12:
            symbol, price, volume, ts = tick
            disordered.append((symbol, price + 0.5, 0, ts))
        elif roll < 0.15:
            symbol, price, volume, ts = tick
            disordered.append((symbol, price + 0.25, volume - 1, ts + timedelta(seconds=1)))
    results = []
    for via_quote in (False, True):
        sink = Sink()
        agg = CandleAgg(sink, NSE)
        for symbol, price, volume, ts in disordered:
            if via_quote:
                agg.on_quote(Quote(symbol, price, volume, ts, ts + timedelta(seconds=1)))
            else:
                agg.on_tick(symbol, price, volume, ts)
        agg.flush()
        results.append((sink.candles, agg.stats))

    assert results[0] == results[1]
    stats = results[0][1]
    assert stats["duplicates"] and stats["out_of_order"] and stats["stale_volume"]
