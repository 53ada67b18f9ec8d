"""The runtime per FEED (Kite against kitesim, replay of stored candles) and the candle recorder."""

from __future__ import annotations

import queue
import sqlite3
from datetime import UTC, date, datetime, timedelta

import pytest

from tests.conftest import REPO_ROOT, migrated_market_store, with_settings
from Webapp.execution.runtime import Runtime, StartupError
from Webapp.execution.trading_view import TRADING_TOPIC
from Webapp.market.calendar import IST, MarketCalendar
from Webapp.market.candle import Candle, Timeframe
from Webapp.market.candle_recorder import CandleRecorder
from Webapp.market.indicators import ema_series
from Webapp.market.instruments import InstrumentMap
from Webapp.market.ltp_store import LTPStore
from Webapp.web.dashboard import price_rows

INSTRUMENTS = REPO_ROOT / "tests" / "data" / "instruments_nse_sample.csv"


@pytest.fixture
def market_url(tmp_path):
    return f"sqlite:///{tmp_path / 'market.db'}"


@pytest.fixture
def market(market_url):
    with migrated_market_store(market_url) as store:
        yield store


def quotes_until(store: LTPStore, wanted: dict[str, float], timeout: float = 10) -> None:
    """Wait (on the store's own notifications) until every wanted symbol shows its price."""
    seen: queue.Queue = queue.Queue()
    unsubscribe = store.subscribe(seen.put)
    try:
        while any((q := store.get(s)) is None or q.ltp != p for s, p in wanted.items()):
            seen.get(timeout=timeout)
    finally:
        unsubscribe()


def test_kite_feed_runtime_streams_kitesim_prices_into_the_store(settings, kitesim, market_url):
    kite_settings = with_settings(
        settings,
        **{
            "feed": "kite",
            "kite_api_key": kitesim.api_key,
            "kite_access_token": kitesim.access_token,
            "kite_ws_root": kitesim.ticker_url,
            "kite_instruments_path": INSTRUMENTS,
            "market_database_url": market_url,
        },
    )
    runtime = Runtime.build(kite_settings)
    tokens = InstrumentMap.from_csv(INSTRUMENTS)
    runtime.start()
    try:
        kitesim.ticker.wait_until(
            lambda: len(kitesim.ticker.subscriptions()) == 50, what="50 subscriptions"
        )
        prices = {"INFY": 1512.35, "TCS": 3050.5, "M&M": 3401.0}
        kitesim.ticker.set_prices({tokens.token(s): p for s, p in prices.items()})
        quotes_until(runtime.store, prices)
        health = runtime.health()
        assert health["feed"]["ok"] and health["feed"]["name"] == "kite"
        assert health["candles"] == {"ok": True, "written": 0, "detail": ""}
    finally:
        runtime.stop()


def test_kite_feed_without_credentials_is_refused_with_a_clear_message(settings):
    with pytest.raises(StartupError, match="KITE_API_KEY and KITE_ACCESS_TOKEN"):
        Runtime.build(with_settings(settings, **{"feed": "kite"}))


def test_kite_feed_names_universe_symbols_missing_from_the_instrument_list(settings, tmp_path):
    partial = tmp_path / "instruments.csv"
    lines = INSTRUMENTS.read_text().splitlines()
    partial.write_text("\n".join(line for line in lines if ",INFY," not in line) + "\n")
    with pytest.raises(StartupError, match="INFY"):
        Runtime.build(
            with_settings(
                settings,
                **{
                    "feed": "kite",
                    "kite_api_key": "k",
                    "kite_access_token": "t",
                    "kite_instruments_path": partial,
                },
            )
        )


def test_unreachable_market_database_is_a_startup_error_without_the_url(settings, kitesim):
    with pytest.raises(StartupError) as caught:
        Runtime.build(
            with_settings(
                settings,
                **{
                    "feed": "kite",
                    "kite_api_key": kitesim.api_key,
                    "kite_access_token": kitesim.access_token,
                    "kite_instruments_path": INSTRUMENTS,
                    "market_database_url": "postgresql+psycopg://ladder:s3cret@127.0.0.1:1/x",
                },
            )
        )
    assert "market database unusable" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def five_minute_candles(symbol: str, day: date, closes: list[float]) -> list[Candle]:
    start = datetime.combine(day, datetime.min.time(), tzinfo=IST) + timedelta(hours=9, minutes=15)
    candles, previous = [], closes[0]
    for i, close in enumerate(closes):
        ts = (start + timedelta(minutes=5 * i)).astimezone(UTC)
        high, low = max(previous, close) + 1, min(previous, close) - 1
        candles.append(Candle(symbol, Timeframe.M5, ts, previous, high, low, close, 1000 + i))
        previous = close
    return candles


def test_replay_runtime_plays_stored_candles_and_shows_change_from_the_previous_close(
    settings, market, market_url
):
    day = date(2026, 6, 1)
    market.bulk_load(five_minute_candles("INFY", day, [1500.0, 1510.0, 1505.0, 1520.0]))
    previous_day = datetime.combine(date(2026, 5, 29), datetime.min.time(), tzinfo=IST)
    market.bulk_load(
        [Candle("INFY", Timeframe.D1, previous_day.astimezone(UTC), 1480, 1502, 1470, 1490.0, 9)]
    )
    runtime = Runtime.build(
        with_settings(
            settings,
            **{
                "feed": "replay",
                "market_database_url": market_url,
                "replay_from": day,
                "replay_to": day,
                "replay_speed": 0,
            },
        )
    )
    assert runtime.reference_prices() == {"INFY": 1490.0}
    runtime.start()
    try:
        assert runtime.feed.wait_done(timeout=10)
        assert runtime.store.get("INFY").ltp == 1520.0
        assert "candles" not in runtime.health()  # replayed prices are never stored again
    finally:
        runtime.stop()


FRIDAY, MONDAY = date(2026, 5, 29), date(2026, 6, 1)


@pytest.fixture
def intraday_only(market):
    """INFY's 5m candles on Friday (closing at 1490) and Monday (at 1520); no daily ones."""
    market.bulk_load(five_minute_candles("INFY", FRIDAY, [1480.0, 1490.0]))
    market.bulk_load(five_minute_candles("INFY", MONDAY, [1500.0, 1520.0]))
    return market


def replay_runtime(settings, market_url, **changes) -> Runtime:
    return Runtime.build(
        with_settings(
            settings, feed="replay", market_database_url=market_url, replay_speed=0, **changes
        )
    )


def scanned_view(runtime: Runtime, timeout: float = 10.0):
    """The first trading view published with the scan's signals in it."""
    views: queue.Queue = queue.Queue()
    unsubscribe = runtime.bus.subscribe(TRADING_TOPIC, lambda _topic, view: views.put(view))
    try:
        view = runtime.engine.view()
        while not view.signals:
            view = views.get(timeout=timeout)
        return view
    finally:
        unsubscribe()


def test_replay_of_intraday_candles_only_shows_the_change_from_the_last_intraday_close(
    settings, intraday_only, market_url
):
    runtime = replay_runtime(settings, market_url, replay_from=MONDAY, replay_to=MONDAY)
    runtime.start()
    try:
        assert runtime.feed.wait_done(timeout=10)
        (row,) = price_rows(runtime)
    finally:
        runtime.stop()
    assert (row["symbol"], row["ltp"]) == ("INFY", "1520.00")
    assert row["change_pct"] == f"{(1520.0 / 1490.0 - 1) * 100:+.2f}"


def test_a_replay_without_replay_from_plays_everything_stored_in_its_own_market_time(
    settings, intraday_only, market_url
):
    runtime = replay_runtime(settings, market_url)  # REPLAY_FROM and REPLAY_TO unset
    runtime.start()
    try:
        assert runtime.feed.wait_done(timeout=10)
        (row,) = price_rows(runtime)
        view = scanned_view(runtime)
    finally:
        runtime.stop()
    assert runtime.feed.candle_count == 4  # both sessions
    # The scan ran at the replay's last tick (Monday 09:20 bar), not on the machine's date.
    (signal,) = [s for s in view.signals if s.symbol == "INFY"]
    assert signal.at.astimezone(IST).date() == MONDAY, signal
    assert signal.at >= five_minute_candles("INFY", MONDAY, [0.0, 0.0])[1].ts
    assert row["change_pct"] == f"{(1520.0 / 1490.0 - 1) * 100:+.2f}"


def test_replay_without_stored_candles_says_how_to_get_some(settings, market_url):
    with pytest.raises(StartupError, match="flask data import"):
        Runtime.build(
            with_settings(settings, **{"feed": "replay", "market_database_url": market_url})
        )


def in_session(day: date, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=IST).astimezone(UTC)


def test_recorder_stores_closed_candles_continuing_the_stored_emas(market):
    day = date(2026, 6, 1)
    history = five_minute_candles("INFY", date(2026, 5, 29), [1400.0 + i for i in range(60)])
    # 1m history with EMAs as the importer stores them.
    m1 = [
        Candle("INFY", Timeframe.M1, c.ts, c.open, c.high, c.low, c.close, c.volume)
        for c in history
    ]
    closes = [c.close for c in m1]
    emas = {p: ema_series(closes, p) for p in (9, 21, 50, 200)}
    m1 = [
        Candle(
            c.symbol,
            c.timeframe,
            c.ts,
            c.open,
            c.high,
            c.low,
            c.close,
            c.volume,
            emas[9][i],
            emas[21][i],
            emas[50][i],
            emas[200][i],
        )
        for i, c in enumerate(m1)
    ]
    market.bulk_load(m1)
    ltp = LTPStore()
    recorder = CandleRecorder(
        ltp, MarketCalendar.nse(), ohlcv=market, symbols=["INFY"], timeframes=[Timeframe.M1]
    )
    recorder.start()
    try:
        ltp.update("INFY", 1500.0, 10, exchange_time=in_session(day, 9, 15, 5))
        ltp.update("INFY", 1502.0, 20, exchange_time=in_session(day, 9, 15, 40))
        ltp.update("INFY", 1499.0, 30, exchange_time=in_session(day, 9, 16, 1))
        assert recorder.tick(in_session(day, 9, 16, 3)) == 1
    finally:
        recorder.stop()
    (stored,) = market.candles("INFY", Timeframe.M1, start=in_session(day, 9, 15))
    assert (stored.open, stored.high, stored.low, stored.close) == (1500.0, 1502.0, 1500.0, 1502.0)
    all_closes = closes + [1502.0]
    assert stored.ema_9 == ema_series(all_closes, 9)[-1]
    assert stored.ema_50 == ema_series(all_closes, 50)[-1]
    assert stored.ema_200 is None  # 61 closes: not seeded yet


def test_recorder_keeps_candles_it_could_not_write_and_writes_them_later(market, tmp_path):
    day = date(2026, 6, 1)
    ltp = LTPStore()
    recorder = CandleRecorder(ltp, MarketCalendar.nse(), ohlcv=market, timeframes=[Timeframe.M1])
    recorder.start()
    db = sqlite3.connect(tmp_path / "market.db")
    try:
        ltp.update("TCS", 3000.0, 5, exchange_time=in_session(day, 10, 0, 1))
        ltp.update("TCS", 3001.0, 9, exchange_time=in_session(day, 10, 1, 1))
        db.execute("ALTER TABLE ohlcv RENAME TO ohlcv_away")  # the table vanishes: a real failure
        db.commit()
        assert recorder.tick(in_session(day, 10, 1, 5)) == 0
        assert recorder.last_error
        db.execute("ALTER TABLE ohlcv_away RENAME TO ohlcv")
        db.commit()
        assert recorder.tick(in_session(day, 10, 1, 6)) == 1
        assert recorder.last_error == ""
    finally:
        recorder.stop()
        db.close()
    assert [c.close for c in market.candles("TCS", Timeframe.M1)] == [3000.0]
