"""roll_up: finer candles into longer bars on the session grid, never past the decision time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from tests.trading_history import trading_sessions, uptrend_candles
from Webapp.market.calendar import IST, MarketCalendar
from Webapp.market.candle import Candle, Timeframe
from Webapp.market.rollup import nests, roll_up

CALENDAR = MarketCalendar.nse()
M5, M15 = Timeframe.M5, Timeframe.M15
DAY = date(2026, 11, 23)  # a Monday


def five_min(hh: int, mm: int, o: float, h: float, low: float, c: float, v: int) -> Candle:
    ts = datetime.combine(DAY, datetime.min.time(), IST).replace(hour=hh, minute=mm)
    return Candle("INFY", M5, ts.astimezone(UTC), o, h, low, c, v)


def ist(day: date, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=IST).astimezone(UTC)


def test_roll_up_takes_first_open_highest_high_lowest_low_last_close_summed_volume():
    candles = [
        five_min(9, 15, 100.0, 101.0, 99.5, 100.5, 10),
        five_min(9, 20, 100.5, 102.0, 100.0, 101.5, 20),
        five_min(9, 25, 101.5, 101.8, 98.0, 99.0, 30),
        five_min(9, 30, 99.0, 99.5, 98.5, 99.2, 5),  # the next 15m bar
    ]
    first, second = roll_up(candles, M15)
    assert (first.ts, first.timeframe) == (candles[0].ts, M15)
    assert (first.open, first.high, first.low, first.close, first.volume) == (
        100.0,
        102.0,
        98.0,
        99.0,
        60,
    )
    assert (second.ts, second.open, second.close, second.volume) == (candles[3].ts, 99.0, 99.2, 5)


def test_roll_up_refuses_candles_that_do_not_fit_whole_in_the_bar():
    fifteen = Candle("INFY", M15, ist(DAY, 9, 15), 1, 1, 1, 1, 1)
    ten = Candle("INFY", Timeframe.M10, ist(DAY, 9, 15), 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="cannot be rolled up"):
        roll_up([fifteen], M15)
    with pytest.raises(ValueError, match="cannot be rolled up"):
        roll_up([ten], M15)  # 09:25-09:35 would straddle two 15m bars
    with pytest.raises(ValueError, match="daily"):
        roll_up([five_min(9, 15, 1, 1, 1, 1, 1)], Timeframe.D1)
    assert nests(M5, M15) and nests(Timeframe.M30, Timeframe.H1) and not nests(M15, M5)


def test_roll_up_never_uses_a_candle_ending_after_the_decision_time():
    sessions = trading_sessions(CALENDAR, DAY, 2)
    five = uptrend_candles(
        "INFY", timeframe=M5, sessions=sessions, start_price=1000.0, step_pct=0.05,
        calendar=CALENDAR,
    )  # fmt: skip
    for now in (
        ist(DAY, 10, 0),  # three whole 15m bars of the day
        ist(DAY, 10, 4, 59),  # the 10:00 5m candle is still forming
        ist(DAY, 10, 10),  # two of the 10:00 bar's three 5m candles have closed: not enough
        ist(DAY, 9, 15),  # nothing of the day yet
    ):
        rolled = roll_up(five, M15, closed_by=now)
        used = [c for c in five if c.ts < rolled[-1].ts + M15.length]
        assert rolled[-1].ts + M15.length <= now, now
        assert rolled[-1].close == used[-1].close
        assert all(c.ts + M5.length <= now for c in used), now
        assert rolled == roll_up([c for c in five if c.ts + M5.length <= now], M15)[: len(rolled)]
    assert roll_up(five, M15, closed_by=ist(DAY, 10, 10))[-1].ts == ist(DAY, 9, 45)


def test_the_last_bar_is_cut_at_the_close_and_pre_open_candles_belong_to_no_bar():
    pre_open = five_min(9, 5, 99.0, 99.0, 99.0, 99.0, 1)
    last = five_min(15, 25, 100.0, 101.0, 99.0, 100.5, 7)
    (bar,) = roll_up([pre_open, last], Timeframe.H1, closed_by=ist(DAY, 15, 30))
    assert (bar.ts, bar.open, bar.volume) == (ist(DAY, 15, 15), 100.0, 7)


def test_a_day_missing_from_the_holiday_list_or_listed_closed_still_rolls_up():
    # 2026-11-24 is in the NSE list (Guru Nanak Jayanti); a stored candle proves it traded.
    holiday = date(2026, 11, 24)
    candles = [
        Candle("INFY", M5, ist(holiday, 9, 15) + timedelta(minutes=5 * i), 100, 101, 99, 100, 1)
        for i in range(3)
    ]
    (bar,) = roll_up(candles, M15)
    assert (bar.ts, bar.volume) == (ist(holiday, 9, 15), 3)
