"""A paper replay opens ladders with the shipped parameters at the default replay speed."""

from __future__ import annotations

from datetime import date

from tests.conftest import with_settings
from tests.e2e.replay_session import DayShape, ladder_day, store_market
from Webapp.config.settings import Settings
from Webapp.execution.runtime import Runtime
from Webapp.market.calendar import MarketCalendar

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
