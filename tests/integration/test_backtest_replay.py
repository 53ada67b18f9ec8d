"""The paper replay runner on made-up candles: the roll-up to 15m, whole ladders, determinism."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tests.trading_history import trading_sessions, uptrend_candles
from tests.trading_rig import DEFAULTS
from Webapp.backtest.history import roll_up, store_signal_history
from Webapp.backtest.paper_replay import PaperReplay, fingerprint, scratch_app_db
from Webapp.market.calendar import IST, MarketCalendar
from Webapp.market.candle import Candle, Timeframe
from Webapp.states import LegState

CALENDAR = MarketCalendar.nse()
DAY = date(2026, 11, 23)  # a Monday
M5 = Timeframe.M5


def five_min(hour: int, minute: int, o: float, h: float, low: float, c: float, v: int) -> Candle:
    ts = datetime(2026, 11, 23, hour, minute, tzinfo=UTC)
    return Candle("INFY", M5, ts, o, h, low, c, v)


def test_roll_up_takes_first_open_highest_high_lowest_low_last_close_summed_volume():
    candles = [
        five_min(3, 45, 100.0, 101.0, 99.5, 100.5, 10),  # 09:15 IST
        five_min(3, 50, 100.5, 102.0, 100.0, 101.5, 20),
        five_min(3, 55, 101.5, 101.8, 98.0, 99.0, 30),
        five_min(4, 0, 99.0, 99.5, 98.5, 99.2, 5),  # 09:30 IST: the next 15m bar
    ]
    first, second = roll_up(candles, Timeframe.M15, CALENDAR)
    assert (first.ts, first.timeframe) == (candles[0].ts, Timeframe.M15)
    assert (first.open, first.high, first.low, first.close, first.volume) == (
        100.0,
        102.0,
        98.0,
        99.0,
        60,
    )
    assert (second.ts, second.open, second.close, second.volume) == (candles[3].ts, 99.0, 99.2, 5)


def test_roll_up_refuses_candles_as_long_as_the_target():
    candle = Candle("INFY", Timeframe.M15, datetime(2026, 11, 23, 3, 45, tzinfo=UTC), 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="cannot be rolled up"):
        roll_up([candle], Timeframe.M15, CALENDAR)


@pytest.fixture
def uptrend(tmp_path, market_store):
    """10 sessions of a steady 5m uptrend in INFY, its 15m history stored with EMAs."""
    sessions = trading_sessions(CALENDAR, DAY, 10)
    candles = uptrend_candles(
        "INFY",
        timeframe=M5,
        sessions=sessions,
        start_price=1000.0,
        step_pct=0.05,
        calendar=CALENDAR,
    )
    store_signal_history(market_store, {"INFY": candles}, Timeframe.M15, CALENDAR)
    return candles


def replay(tmp_path, market_store, candles, name: str) -> PaperReplay:
    run = PaperReplay(
        scratch_app_db(tmp_path / f"{name}.db"),
        DEFAULTS,
        market_store,
        symbols=["INFY"],
        start=candles[0].ts,
        run_id=name,
        calendar=CALENDAR,
    )
    run.play(candles)
    return run


def test_a_steady_uptrend_builds_a_whole_ladder_and_p1_takes_its_target(
    tmp_path, market_store, uptrend
):
    run = replay(tmp_path, market_store, uptrend, "uptrend")
    legs = run.legs()
    assert [(g.symbol, g.position_number, g.status, g.exit_reason) for g in legs] == [
        ("INFY", 1, LegState.CLOSED, "target"),  # +3.8% a session reaches P1's +5%
        ("INFY", 2, LegState.OPEN, None),  # the runners ride on
        ("INFY", 3, LegState.OPEN, None),
    ]
    p1 = legs[0]
    assert p1.exit_price >= p1.entry_price * 1.05 * (1 - DEFAULTS.gtt.limit_buffer_pct / 100)
    # Only once EMA200 is seeded on 15m candles (200 bars: 8 sessions) may the scan fire.
    assert CALENDAR.session_date(p1.entry_time) >= trading_sessions(CALENDAR, DAY, 10)[8]
    ist = p1.entry_time.astimezone(IST).time()
    assert DEFAULTS.entry_window.start <= ist < DEFAULTS.entry_window.end
    assert p1.qty == int(DEFAULTS.capital_per_position // p1.entry_price)
    assert run.ticks == 4 * len(uptrend)  # the price path: four prices a candle


def test_two_replays_of_the_same_candles_trade_alike(tmp_path, market_store, uptrend):
    first = replay(tmp_path, market_store, uptrend, "first").legs()
    second = replay(tmp_path, market_store, uptrend, "second").legs()
    assert first and fingerprint(first) == fingerprint(second)
