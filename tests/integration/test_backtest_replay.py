"""The paper replay runner on made-up candles: whole ladders, determinism."""

from __future__ import annotations

from datetime import date

import pytest

from tests.conftest import migrated_market_store
from tests.trading_history import store_history, trading_sessions, uptrend_candles
from tests.trading_rig import DEFAULTS
from Webapp.backtest.history import store_signal_history
from Webapp.backtest.paper_replay import PaperReplay, fingerprint
from Webapp.market.calendar import IST, MarketCalendar
from Webapp.market.candle import Timeframe
from Webapp.states import LegState
from Webapp.storage.db import memory_session_factory

CALENDAR = MarketCalendar.nse()
DAY = date(2026, 11, 23)  # a Monday
M5 = Timeframe.M5


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
    store_signal_history(market_store, {"INFY": candles}, Timeframe.M15)
    return candles


def replay(tmp_path, market_store, candles, name: str) -> PaperReplay:
    run = PaperReplay(
        memory_session_factory(),
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


def test_5m_candles_alone_trade_exactly_as_with_their_15m_roll_up_stored(
    tmp_path, market_store, uptrend
):
    """No 15m candles stored (a replay of imported 5m data): the scan rolls the 5m candles
    up itself, closed by its time only, and trades as the backtest with stored 15m does,
    from the first session with enough 15m history for EMA200 (200 bars: 8 sessions)."""
    with migrated_market_store(f"sqlite:///{tmp_path / 'five.db'}") as five_only:
        store_history(five_only, uptrend)
        assert five_only.first_last("INFY", Timeframe.M15) is None
        rolled = replay(tmp_path, five_only, uptrend, "five-only").legs()
    stored = replay(tmp_path, market_store, uptrend, "stored").legs()

    assert rolled and fingerprint(rolled) == fingerprint(stored)
    first_session_with_emas = trading_sessions(CALENDAR, DAY, 10)[8]
    assert CALENDAR.session_date(rolled[0].entry_time) == first_session_with_emas
