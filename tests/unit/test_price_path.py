"""price_path and path_ticks: the assumed order of prices inside a candle (STRATEGY.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from Webapp.market.calendar import IST, MarketCalendar
from Webapp.market.candle import Candle, Timeframe
from Webapp.market.candles import CandleAgg
from Webapp.market.price_path import PATH_END_EPSILON, PathTick, path_ticks, price_path

NSE = MarketCalendar.nse()
START = datetime(2026, 6, 19, 9, 15, tzinfo=IST).astimezone(UTC)


def candle(o, h, lo, c, timeframe=Timeframe.M1, ts=START, volume=1_000) -> Candle:
    return Candle("INFY", timeframe, ts, o, h, lo, c, volume)


def test_a_rising_candle_goes_open_high_low_close():
    assert price_path(candle(100.0, 105.0, 98.0, 103.0)) == (100.0, 105.0, 98.0, 103.0)


def test_a_flat_close_counts_as_rising():
    assert price_path(candle(100.0, 101.0, 99.0, 100.0)) == (100.0, 101.0, 99.0, 100.0)


def test_a_falling_candle_goes_open_low_high_close():
    assert price_path(candle(100.0, 105.0, 98.0, 99.0)) == (100.0, 98.0, 105.0, 99.0)


def test_path_ticks_follow_the_path_from_the_start_to_just_before_the_end():
    ticks = path_ticks(candle(100.0, 105.0, 98.0, 103.0, volume=1_000))

    assert [t.price for t in ticks] == [100.0, 105.0, 98.0, 103.0]
    assert ticks[0].ts == START
    assert ticks[-1].ts == START + timedelta(minutes=1) - PATH_END_EPSILON
    assert [t.ts for t in ticks] == sorted(t.ts for t in ticks)
    assert [t.volume for t in ticks] == [250, 500, 750, 1_000]
    assert isinstance(ticks[0], PathTick)


def test_steps_per_leg_interpolate_each_leg_and_round_to_the_tick():
    ticks = path_ticks(candle(100.0, 101.0, 99.0, 99.5), steps_per_leg=3, tick_size=0.05)

    # open, then low (falling candle), then high, then close
    assert [t.price for t in ticks] == [
        100.0,
        99.65,
        99.35,
        99.0,
        99.65,
        100.35,
        101.0,
        100.5,
        100.0,
        99.5,
    ]
    assert len({t.ts for t in ticks}) == 10


def test_steps_per_leg_below_one_is_refused():
    with pytest.raises(ValueError):
        path_ticks(candle(1.0, 1.0, 1.0, 1.0), steps_per_leg=0)


def test_a_daily_candle_needs_a_calendar_and_is_spread_over_its_session():
    day = candle(100.0, 110.0, 95.0, 105.0, Timeframe.D1, NSE.bar_start(START, Timeframe.D1))
    with pytest.raises(ValueError, match="calendar"):
        path_ticks(day)

    ticks = path_ticks(day, calendar=NSE)

    open_, close = NSE.session_bounds(date(2026, 6, 19))
    assert ticks[0].ts == open_ and ticks[-1].ts == close - PATH_END_EPSILON


def test_with_a_calendar_the_last_hour_bar_ends_at_1530():
    last_hour = datetime(2026, 6, 19, 15, 15, tzinfo=IST).astimezone(UTC)
    ticks = path_ticks(candle(1.0, 2.0, 0.5, 1.5, Timeframe.H1, last_hour), calendar=NSE)

    assert ticks[-1].ts == last_hour + timedelta(minutes=15) - PATH_END_EPSILON


def test_replaying_the_path_through_the_aggregator_rebuilds_the_candles():
    originals = [
        candle(100.0, 103.0, 99.0, 102.0, Timeframe.M5, START, 5_000),
        candle(102.0, 102.5, 97.5, 98.0, Timeframe.M5, START + timedelta(minutes=5), 7_001),
    ]
    rebuilt: list[Candle] = []
    agg = CandleAgg(rebuilt.extend, NSE, timeframes=(Timeframe.M5,))
    day_volume = 0
    for original in originals:
        for tick in path_ticks(original, steps_per_leg=4, calendar=NSE):
            agg.on_tick("INFY", tick.price, day_volume + tick.volume, tick.ts)
        day_volume += original.volume
    agg.flush()

    assert [(c.ts, c.open, c.high, c.low, c.close, c.volume) for c in rebuilt] == [
        (c.ts, c.open, c.high, c.low, c.close, c.volume) for c in originals
    ]
