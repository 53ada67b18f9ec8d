"""A paper replay opens ladders with the shipped parameters: at the default replay speed, without
REPLAY_FROM, and on 5-minute candles alone (the 15m signal candles rolled up from them)."""

from __future__ import annotations

import contextlib
import queue
from datetime import date

from tests.conftest import with_settings
from tests.e2e.replay_session import DayShape, ladder_day, store_market
from tests.trading_history import trading_sessions, uptrend_candles
from Webapp.config.settings import Settings
from Webapp.execution.runtime import Runtime
from Webapp.execution.trading_view import TRADING_TOPIC
from Webapp.market.calendar import IST, MarketCalendar
from Webapp.market.candle import Candle, Timeframe

DAY = date(2025, 3, 11)


def test_a_5m_replay_at_the_default_speed_opens_a_ladder_with_the_shipped_params(
    settings, tmp_path
):
    """A 5m bar is played as its four path prices, 75 market seconds apart. The scan's
    freshness (stale_after_s, 10 s of market time) must still see a replayed symbol as
    ticking: 09:35-09:45 of a day that qualifies all along must open a ladder."""
    candles, _ = ladder_day(
        "INFY",
        day=DAY,
        start_price=1200.0,
        shape=DayShape(gap_pct=1.2, step_pct=0.15, bars=6, first_played=4),
        calendar=MarketCalendar.nse(),
    )
    market_url = f"sqlite:///{tmp_path / 'market.db'}"
    store_market(market_url, candles)
    runtime = Runtime.build(
        with_settings(
            settings,
            feed="replay",
            market_database_url=market_url,
            replay_from=DAY,
            replay_to=DAY,
            replay_timeframe="5m",
            replay_speed=Settings.model_fields["replay_speed"].default,
        )
    )
    runtime.start()
    try:
        assert runtime.feed.wait_done(timeout=60)
        view = runtime.engine.view()
    finally:
        runtime.stop()
    signal = next((s for s in view.signals if s.symbol == "INFY"), None)
    assert [ladder.symbol for ladder in view.ladders] == ["INFY"], signal


def replayed_ladders(settings, tmp_path, candles, **replay) -> tuple[list, object]:
    """Run the runtime on a replay of `candles` to its end: (ladders' symbols, INFY's signal)."""
    market_url = f"sqlite:///{tmp_path / 'market.db'}"
    store_market(market_url, candles)
    runtime = Runtime.build(
        with_settings(
            settings,
            feed="replay",
            market_database_url=market_url,
            replay_timeframe="5m",
            **replay,
        )
    )
    views: queue.Queue = queue.Queue()
    runtime.bus.subscribe(TRADING_TOPIC, lambda _topic, view: views.put(view))
    runtime.start()
    try:
        assert runtime.feed.wait_done(timeout=60)
        view = runtime.engine.view()
        # The engine may still be on the last ticks: wait a little for a ladder to show.
        with contextlib.suppress(queue.Empty):
            while not view.ladders:
                view = views.get(timeout=5)
    finally:
        runtime.stop()
    signal = next((s for s in view.signals if s.symbol == "INFY"), None)
    return [ladder.symbol for ladder in view.ladders], signal


def test_a_replay_without_replay_from_trades_on_the_replayed_days_own_clock(settings, tmp_path):
    """REPLAY_FROM unset: everything stored is replayed, and the engine's clock is the
    replayed market time from the first tick on, not today's date."""
    candles, _ = ladder_day(
        "INFY",
        day=DAY,
        start_price=1200.0,
        shape=DayShape(gap_pct=1.2, step_pct=0.15, bars=6, first_played=4),
        calendar=MarketCalendar.nse(),
    )
    ladders, signal = replayed_ladders(
        settings, tmp_path, candles, replay_speed=Settings.model_fields["replay_speed"].default
    )
    assert ladders == ["INFY"], signal
    assert signal.at.astimezone(IST).date() == DAY


def five_minute_day(symbol: str, calendar: MarketCalendar, gap_pct: float, bars: int):
    """Ten sessions of a steady 5m uptrend before DAY (250 15m candles once rolled up:
    enough for EMA200), then DAY opening `gap_pct` higher and rising: 5m candles only."""
    before = trading_sessions(calendar, DAY, 11)[:-1]
    history = uptrend_candles(
        symbol,
        timeframe=Timeframe.M5,
        sessions=before,
        start_price=1200.0,
        step_pct=0.02,
        calendar=calendar,
    )
    price = history[-1].close * (1 + gap_pct / 100)
    day = []
    for ts in calendar.expected_bars(DAY, Timeframe.M5)[:bars]:
        close = round(price * 1.0015, 2)
        day.append(Candle(symbol, Timeframe.M5, ts, price, close, price, close, 1000))
        price = close
    return history + day


def test_a_replay_of_5m_candles_alone_opens_a_ladder_on_their_15m_roll_up(settings, tmp_path):
    """Only 5m candles stored, signal_timeframe 15m (the shipped default): the scan's 15m
    candles are rolled up from the 5m ones, so the first 15m candle of the day (closed at
    09:30) qualifies in the entry window."""
    candles = five_minute_day("INFY", MarketCalendar.nse(), gap_pct=1.2, bars=9)
    ladders, signal = replayed_ladders(
        settings, tmp_path, candles, replay_from=DAY, replay_to=DAY, replay_speed=300
    )
    assert ladders == ["INFY"], signal
