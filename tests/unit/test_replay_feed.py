"""ReplayFeed: candles become ticks along their price path, merged in time order and paced."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import finishes_within
from Webapp.market.calendar import IST
from Webapp.market.candle import Candle, Timeframe
from Webapp.market.feeds import FeedState
from Webapp.market.feeds.replay import ReplayFeed, candle_ticks, merged_ticks
from Webapp.market.ltp_store import LTPStore
from Webapp.market.price_path import price_path


def ist(day: int, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2026, 5, day, hh, mm, ss, tzinfo=IST).astimezone(UTC)


def candle(symbol, ts, o, h, low, c, volume=400, timeframe=Timeframe.M1) -> Candle:
    return Candle(symbol, timeframe, ts, o, h, low, c, volume)


class FakeClock:
    """A monotonic clock that only moves when the feed waits; records every wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wait(self, stop_event: threading.Event, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return stop_event.is_set()


def test_a_rising_candle_ticks_open_high_low_close_spread_over_its_minute():
    rising = candle("INFY", ist(20, 9, 15), 100.0, 105.0, 98.0, 103.0)

    ticks = candle_ticks(rising)

    assert [t.price for t in ticks] == [100.0, 105.0, 98.0, 103.0] == list(price_path(rising))
    # Spread evenly over the minute; the close stays 1 ms inside it.
    span = timedelta(seconds=59.999)
    assert [t.at for t in ticks] == [ist(20, 9, 15) + span * k / 3 for k in range(4)]


def test_a_falling_candle_ticks_open_low_high_close():
    falling = candle("INFY", ist(20, 9, 15), 103.0, 105.0, 98.0, 100.0)

    assert [t.price for t in candle_ticks(falling)] == [103.0, 98.0, 105.0, 100.0]


def test_a_daily_candle_is_played_inside_its_ist_session():
    day = Candle("TCS", Timeframe.D1, ist(20, 0, 0), 10.0, 12.0, 9.0, 11.0, 1000)

    ticks = candle_ticks(day)

    assert ticks[0].at == ist(20, 9, 15)
    assert ticks[-1].at < ist(20, 15, 30)
    assert [t.price for t in ticks] == [10.0, 12.0, 9.0, 11.0]


def test_volume_is_cumulative_per_session_and_restarts_the_next_day():
    candles = [
        candle("INFY", ist(20, 15, 28), 100, 101, 99, 100, volume=100),
        candle("INFY", ist(20, 15, 29), 100, 101, 99, 100, volume=50),
        candle("INFY", ist(21, 9, 15), 100, 101, 99, 100, volume=7),
    ]

    volumes = [t.volume for t in merged_ticks(candles)]

    assert volumes == [25, 50, 75, 100, 112, 125, 137, 150, 1, 3, 5, 7]


def test_symbols_are_merged_in_time_order_with_ties_broken_by_symbol():
    candles = [
        candle("TCS", ist(20, 9, 16), 20, 21, 19, 20),
        candle("INFY", ist(20, 9, 16), 10, 11, 9, 10),
        candle("TCS", ist(20, 9, 15), 20, 21, 19, 20),
        candle("ACC", ist(20, 9, 17), 30, 31, 29, 30),
        candle("INFY", ist(20, 9, 15), 10, 11, 9, 10),
    ]

    ticks = list(merged_ticks(candles))

    keys = [(t.at, t.symbol) for t in ticks]
    assert keys == sorted(keys)
    assert [t.symbol for t in ticks[:4]] == ["INFY", "TCS", "INFY", "TCS"]
    assert len(ticks) == 4 * len(candles)
    # The order never depends on the input order.
    assert list(merged_ticks(reversed(candles))) == ticks


def test_overlapping_candles_of_one_symbol_are_refused():
    with pytest.raises(ValueError, match="overlap"):
        ReplayFeed(
            LTPStore(),
            candles=[
                candle("INFY", ist(20, 9, 15), 10, 11, 9, 10, timeframe=Timeframe.M5),
                candle("INFY", ist(20, 9, 16), 10, 11, 9, 10),
            ],
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"candles": [], "source": (None, ["INFY"], Timeframe.M1, None, None)},
        {"candles": [], "speed": -1},
        {"candles": [], "speed": float("inf")},
    ],
    ids=["neither", "both", "negative-speed", "infinite-speed"],
)
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        ReplayFeed(LTPStore(), **kwargs)


def test_full_speed_replay_writes_every_tick_with_market_exchange_time():
    store = LTPStore()
    seen = []
    store.subscribe(lambda q: seen.append((q.symbol, q.ltp, q.volume, q.exchange_time)))
    candles = [
        candle("INFY", ist(20, 9, 15), 100, 105, 98, 103),
        candle("TCS", ist(20, 9, 15), 50, 51, 49, 50.5),
    ]
    done = threading.Event()
    feed = ReplayFeed(store, candles=candles, speed=None, on_done=done.set)

    feed.start()

    assert feed.wait_done(timeout=5)
    assert done.is_set()
    expected = [(t.symbol, t.price, t.volume, t.at) for t in merged_ticks(candles)]
    assert seen == expected
    last_infy = ist(20, 9, 15, 59) + timedelta(milliseconds=999)
    assert store.get("INFY").exchange_time == last_infy
    status = feed.status()
    assert status.state is FeedState.STOPPED
    assert status.ticks_total == 8
    assert "finished" in status.detail
    assert feed.market_time == last_infy


def test_speed_60_plays_one_market_minute_per_second_and_skips_the_night():
    clock = FakeClock()
    candles = [
        candle("INFY", ist(20, 15, 29), 100, 101, 99, 100),
        candle("INFY", ist(21, 9, 15), 100, 101, 99, 100),
    ]
    feed = ReplayFeed(LTPStore(), candles=candles, speed=60, clock=clock.monotonic, wait=clock.wait)

    feed.start()

    assert feed.wait_done(timeout=5)
    # About 20 market seconds between ticks = 1/3 s; the night between 15:30 and
    # 09:15 is covered by no candle and costs only the 1 ms left of the 15:29 candle.
    step = 59.999 / 3
    market_gaps = [step, step, step, 0.001, step, step, step]
    assert clock.waits == pytest.approx([gap / 60 for gap in market_gaps])
    assert clock.now == pytest.approx(1000.0 + 2.0)


def test_market_time_advances_with_the_clock_between_ticks():
    gate = threading.Event()
    waiting = threading.Event()
    clock = FakeClock()

    def wait(stop_event, seconds):
        clock.now += seconds / 2  # halfway to the next tick
        waiting.set()
        gate.wait(5)
        clock.now += seconds / 2
        return stop_event.is_set()

    feed = ReplayFeed(
        LTPStore(),
        candles=[candle("INFY", ist(20, 9, 15), 100, 101, 99, 100)],
        speed=60,
        clock=clock.monotonic,
        wait=wait,
    )
    assert feed.market_time is None
    feed.start()
    try:
        assert waiting.wait(5)
        assert feed.status().state is FeedState.RUNNING
        halfway = timedelta(seconds=59.999 / 3 / 2)
        assert feed.market_time == ist(20, 9, 15) + halfway
    finally:
        gate.set()
        feed.stop()
    assert feed.status().state is FeedState.STOPPED


def test_stop_is_prompt_even_at_slow_speed_and_the_replay_is_not_finished():
    store = LTPStore()
    first_tick = threading.Event()
    store.subscribe(lambda _q: first_tick.set())
    candles = [candle("INFY", ist(20, 9, 15), 100, 101, 99, 100)]
    feed = ReplayFeed(store, candles=candles, speed=1)  # 15 s of wall time between ticks

    feed.start()
    assert first_tick.wait(5)
    started = time.monotonic()
    assert finishes_within(feed.stop, timeout=2)

    assert time.monotonic() - started < 1.0
    assert feed.wait_done(timeout=1) is False
    status = feed.status()
    assert status.state is FeedState.STOPPED
    assert status.ticks_total == 1


def test_next_tick_steps_by_hand_and_returns_none_at_the_end():
    store = LTPStore()
    feed = ReplayFeed(store, candles=[candle("INFY", ist(20, 9, 15), 100, 105, 98, 103)])

    prices = []
    while (tick := feed.next_tick()) is not None:
        prices.append(tick.price)
        assert store.get("INFY").ltp == tick.price
        assert feed.market_time == tick.at

    assert prices == [100, 105, 98, 103]


def test_start_after_the_end_plays_again_from_the_first_candle():
    store = LTPStore()
    feed = ReplayFeed(store, candles=[candle("INFY", ist(20, 9, 15), 100, 105, 98, 103)], speed=0)
    feed.start()
    assert feed.wait_done(timeout=5)
    feed.start()
    assert feed.wait_done(timeout=5)
    assert feed.status().ticks_total == 8
    feed.stop()


def test_a_failing_store_marks_the_feed_error_and_ends_it():
    store = LTPStore()
    feed = ReplayFeed(
        store, candles=[candle("INFY", ist(20, 9, 15), 100, 105, 98, 103)], speed=None
    )
    feed.store = None  # the next write raises

    feed.start()

    assert feed.wait_done(timeout=5) is False
    assert feed.status().state is FeedState.ERROR


def test_source_reads_the_candles_from_the_ohlcv_store(tmp_path):
    from Webapp.market.ohlcv import OHLCVStore

    market = OHLCVStore(f"sqlite:///{tmp_path / 'market.db'}")
    market.migrate()
    stored = [
        candle("INFY", ist(20, 9, 15) + timedelta(minutes=i), 100 + i, 102 + i, 99 + i, 101 + i)
        for i in range(5)
    ] + [candle("TCS", ist(20, 9, 15), 50, 51, 49, 50)]
    market.bulk_load(stored)

    feed = ReplayFeed(
        LTPStore(),
        source=(market, ["INFY", "TCS"], Timeframe.M1, ist(20, 9, 16), ist(20, 9, 18)),
        speed=None,
    )

    assert feed.symbols == ["INFY"]  # TCS has no candle in the range
    assert [t.price for t in feed.ticks() if t.symbol == "INFY"][:4] == [101, 103, 100, 102]


def test_from_csv_replays_what_the_importer_reads(tmp_path):
    path = tmp_path / "INFY_5min.csv"
    path.write_text(
        "timestamp,open,high,low,close,volume\n"
        "2026-05-20 09:15:00+05:30,100,102,99,101,1000\n"
        "2026-05-20 09:20:00+05:30,101,101.5,98,98.5,800\n"
    )

    feed = ReplayFeed.from_csv(LTPStore(), [path], speed=None)

    assert feed.symbols == ["INFY"]
    assert [t.price for t in feed.ticks()] == [100, 102, 99, 101, 101, 98, 101.5, 98.5]
    assert [t.volume for t in feed.ticks()][3::4] == [1000, 1800]


def test_from_csv_refuses_a_bad_file_with_its_line_number(tmp_path):
    from Webapp.market.csv_import import CsvImportError

    path = tmp_path / "INFY_5min.csv"
    path.write_text(
        "timestamp,open,high,low,close,volume\n"
        "2026-05-20 09:15:00+05:30,100,102,99,101,1000\n"
        "2026-05-20 09:20:00+05:30,101,100,98,98.5,800\n"
    )

    with pytest.raises(CsvImportError) as refused:
        ReplayFeed.from_csv(LTPStore(), [path])

    assert any("INFY_5min.csv:3:" in error for error in refused.value.errors)


def test_real_5min_file_replays_in_time_order_with_session_volumes():
    from tests.conftest import SHARED_DATA

    paths = [SHARED_DATA / "nse-5min-2026" / f"{s}_5min.csv" for s in ("INFY", "TCS")]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"real NSE data not found under {SHARED_DATA}")

    feed = ReplayFeed.from_csv(LTPStore(), paths, speed=None)
    ticks = list(feed.ticks())

    assert feed.candle_count == 2 * 1650
    assert len(ticks) == 4 * 2 * 1650
    keys = [(t.at, t.symbol) for t in ticks]
    assert keys == sorted(keys)
    # Every tick lies in an IST session: 09:15 to 15:30.
    assert all("09:15" <= t.at.astimezone(IST).strftime("%H:%M") < "15:30" for t in ticks)
