"""Kite historical fetch via the official client against kitesim: windows, rate, resume, errors."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from kiteconnect import exceptions as kite_errors

from tests.helpers import FakeClock
from tests.kitesim.historical import HistoricalSim
from Webapp.market.calendar import IST, MarketCalendar
from Webapp.market.candle import EMA_PERIODS, Timeframe
from Webapp.market.history import (
    HistoryFetchError,
    RateLimiter,
    chunk_ranges,
    fetch_history,
)
from Webapp.market.indicators import ema_series
from Webapp.market.instruments import InstrumentMap, UnknownInstrument

NOW = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def sim(clock):
    with HistoricalSim(clock=clock) as sim:
        yield sim


@pytest.fixture
def store(market_store):
    return market_store


@pytest.fixture
def instruments(sim):
    return InstrumentMap.from_kite(sim.client().instruments("NSE"))


def fetch(sim, store, instruments, clock, symbols, tf, start, end, **kwargs):
    kwargs.setdefault("now", lambda: NOW)
    limiter = RateLimiter(clock=clock, sleep=clock.sleep)
    return fetch_history(
        sim.client(), store, instruments, symbols, tf, start, end, limiter=limiter, **kwargs
    )


def expected_bars(tf, start, end):
    calendar = MarketCalendar.nse()
    return [b for d in calendar.trading_days(start, end) for b in calendar.expected_bars(d, tf)]


def windows(sim):
    return [(r.from_, r.to) for r in sim.historical_requests()]


def day_window(first: date, last: date):
    """A window as the client sends it: naive IST, first day 00:00:00 to last day 23:59:59."""
    return (
        datetime(first.year, first.month, first.day),
        datetime(last.year, last.month, last.day, 23, 59, 59),
    )


# --- windows -----------------------------------------------------------------------------------

CHUNKS = [
    # timeframe, start, end, expected windows (first, last day)
    (Timeframe.M1, date(2024, 1, 1), date(2024, 4, 30),
     [(date(2024, 1, 1), date(2024, 2, 29)), (date(2024, 3, 1), date(2024, 4, 29)),
      (date(2024, 4, 30), date(2024, 4, 30))]),
    (Timeframe.M5, date(2024, 1, 1), date(2024, 8, 31),
     [(date(2024, 1, 1), date(2024, 4, 9)), (date(2024, 4, 10), date(2024, 7, 18)),
      (date(2024, 7, 19), date(2024, 8, 31))]),
    (Timeframe.M15, date(2024, 1, 1), date(2024, 12, 31),
     [(date(2024, 1, 1), date(2024, 7, 18)), (date(2024, 7, 19), date(2024, 12, 31))]),
    (Timeframe.H1, date(2023, 1, 1), date(2024, 12, 31),
     [(date(2023, 1, 1), date(2024, 2, 4)), (date(2024, 2, 5), date(2024, 12, 31))]),
    (Timeframe.D1, date(2020, 1, 1), date(2025, 12, 31),
     [(date(2020, 1, 1), date(2025, 6, 22)), (date(2025, 6, 23), date(2025, 12, 31))]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("tf", "start", "end", "expected"), CHUNKS, ids=[c[0].value for c in CHUNKS]
)
def test_requests_are_cut_into_kites_window_per_interval(
    sim, store, instruments, clock, tf, start, end, expected
):
    assert chunk_ranges(start, end, tf) == expected
    report = fetch(sim, store, instruments, clock, ["INFY"], tf, start, end)
    assert windows(sim) == [day_window(a, b) for a, b in expected]
    interval = {"1m": "minute", "5m": "5minute", "15m": "15minute", "60m": "60minute"}
    assert {r.interval for r in sim.historical_requests()} == {interval.get(tf, "day")}
    assert {r.token for r in sim.historical_requests()} == {instruments.token("INFY")}
    bars = expected_bars(tf, start, end)
    assert report.rows == len(bars)
    assert [c.ts for c in store.candles("INFY", tf)] == bars
    assert store.coverage("INFY", tf)[0].gaps == 0


def test_kitesim_refuses_a_window_longer_than_kites_limit(sim):
    with pytest.raises(kite_errors.InputException, match="60 days"):
        sim.client().historical_data(1, datetime(2024, 1, 1), datetime(2024, 3, 2), "minute")


# --- rate ---------------------------------------------------------------------------------------


def test_no_more_than_three_requests_in_any_second(sim, store, instruments, clock):
    fetch(sim, store, instruments, clock, ["INFY", "TCS"], Timeframe.D1, date(2000, 1, 1),
          date(2026, 1, 1))  # fmt: skip
    stamps = [r.at for r in sim.historical_requests()]
    assert len(stamps) == 10  # 5 windows of 2000 days per symbol
    assert all(later - earlier >= 1.0 for earlier, later in zip(stamps, stamps[3:], strict=False))
    assert clock.sleeps and stamps[-1] - stamps[0] >= 3.0


def test_the_rate_limiter_spaces_calls_and_is_shared_across_threads(clock):
    limiter = RateLimiter(3, 1.0, clock=clock, sleep=clock.sleep)
    taken: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(5):
            slot = limiter.acquire()
            with lock:
                taken.append(slot)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    taken.sort()
    assert len(taken) == 20
    assert all(later - earlier >= 1.0 for earlier, later in zip(taken, taken[3:], strict=False))
    assert taken[-1] - taken[0] == pytest.approx(6.0)  # 20 calls: 7 one-second slots


# --- resume -------------------------------------------------------------------------------------


def test_a_rerun_skips_windows_that_are_already_stored(sim, store, instruments, clock):
    start, end = date(2024, 1, 1), date(2024, 8, 31)
    fetch(
        sim, store, instruments, clock, ["INFY"], Timeframe.M5, date(2024, 4, 10), date(2024, 7, 18)
    )  # fmt: skip  (exactly the middle window)
    sim.clear_requests()
    report = fetch(sim, store, instruments, clock, ["INFY"], Timeframe.M5, start, end)
    assert windows(sim) == [
        day_window(date(2024, 1, 1), date(2024, 4, 9)),
        day_window(date(2024, 7, 19), date(2024, 8, 31)),
    ]
    assert (report.skipped, report.requests) == (1, 2)
    sim.clear_requests()
    again = fetch(sim, store, instruments, clock, ["INFY"], Timeframe.M5, start, end)
    assert (sim.historical_requests(), again.skipped, again.rows) == ([], 3, 0)
    closes = [c.close for c in store.candles("INFY", Timeframe.M5)]
    assert_emas_are_batch(store, "INFY", Timeframe.M5, closes)


def assert_emas_are_batch(store, symbol, tf, closes):
    stored = store.candles(symbol, tf)
    assert [c.close for c in stored] == closes
    for period in EMA_PERIODS:
        assert [getattr(c, f"ema_{period}") for c in stored] == ema_series(closes, period)


def test_a_failure_mid_fetch_keeps_earlier_windows_and_a_rerun_completes(
    sim, store, instruments, clock
):
    start, end = date(2024, 1, 1), date(2024, 12, 31)  # 4 windows of 100 days
    sim.fail_request(3, "GeneralException", "Something went wrong")
    progress = []
    with pytest.raises(HistoryFetchError) as failed:
        fetch(sim, store, instruments, clock, ["INFY"], Timeframe.M5, start, end,
              progress=lambda done, total: progress.append((done, total)))  # fmt: skip
    message = str(failed.value)
    assert "INFY 5m 2024-07-19 to 2024-10-26" in message
    assert "GeneralException: Something went wrong (HTTP 500)" in message
    assert isinstance(failed.value.cause, kite_errors.GeneralException)
    assert progress == [(1, 4), (2, 4)]
    kept = failed.value.report.symbols[0]
    assert kept.rows == len(expected_bars(Timeframe.M5, start, date(2024, 7, 18)))
    assert store.first_last("INFY", Timeframe.M5)[1].astimezone(IST).date() == date(2024, 7, 18)

    sim.clear_requests()
    report = fetch(sim, store, instruments, clock, ["INFY"], Timeframe.M5, start, end)
    assert windows(sim) == [
        day_window(date(2024, 7, 19), date(2024, 10, 26)),
        day_window(date(2024, 10, 27), date(2024, 12, 31)),
    ]
    assert report.skipped == 2
    stored = store.candles("INFY", Timeframe.M5)
    assert [c.ts for c in stored] == expected_bars(Timeframe.M5, start, end)
    assert_emas_are_batch(store, "INFY", Timeframe.M5, [c.close for c in stored])


def test_an_expired_token_is_reported_clearly_and_not_retried(sim, store, instruments, clock):
    sim.expire_token()
    with pytest.raises(HistoryFetchError) as failed:
        fetch(sim, store, instruments, clock, ["RELIANCE"], Timeframe.D1, date(2024, 1, 1),
              date(2024, 3, 31))  # fmt: skip
    message = str(failed.value)
    assert message.startswith("RELIANCE 1d 2024-01-01 to 2024-03-31: Kite refused the login")
    assert "TokenException" in message and "HTTP 403" in message and "log in again" in message
    assert sim.access_token not in message and "kitesim_access_token" not in message
    assert len(sim.historical_requests()) == 1
    assert store.coverage() == []


def test_too_many_requests_and_network_errors_are_retried_a_bounded_number_of_times(
    sim, store, instruments, clock
):
    sim.too_many_requests(1)
    report = fetch(sim, store, instruments, clock, ["INFY"], Timeframe.D1, date(2024, 1, 1),
                   date(2024, 1, 31))  # fmt: skip
    assert [r.status for r in sim.historical_requests()] == [429, 200]
    assert report.requests == 2
    assert report.rows == len(expected_bars(Timeframe.D1, date(2024, 1, 1), date(2024, 1, 31)))
    assert 1.0 in clock.sleeps

    sim.clear_requests()
    sim.fail_next("NetworkException", times=3)
    with pytest.raises(HistoryFetchError, match="NetworkException") as failed:
        fetch(sim, store, instruments, clock, ["TCS"], Timeframe.D1, date(2024, 1, 1),
              date(2024, 1, 31))  # fmt: skip
    assert [r.status for r in sim.historical_requests()] == [503, 503, 503]
    assert "TCS 1d 2024-01-01 to 2024-01-31" in str(failed.value)


def test_a_candle_still_forming_is_not_stored(sim, store, instruments, clock):
    midday = datetime(2024, 1, 2, 12, 0, tzinfo=IST)
    report = fetch(sim, store, instruments, clock, ["INFY"], Timeframe.M5, date(2024, 1, 2),
                   date(2024, 1, 2), now=lambda: midday)  # fmt: skip
    stored = store.candles("INFY", Timeframe.M5)
    assert report.rows == len(stored) == 33  # 09:15 ... 11:55, all closed by 12:00
    assert stored[-1].ts.astimezone(IST).strftime("%H:%M") == "11:55"


def test_an_unknown_symbol_fails_before_any_request(sim, store, instruments, clock):
    with pytest.raises(UnknownInstrument, match="NSE:NOSUCH"):
        fetch(sim, store, instruments, clock, ["INFY", "NOSUCH"], Timeframe.D1, date(2024, 1, 1),
              date(2024, 1, 31))  # fmt: skip
    assert sim.historical_requests() == []


def test_progress_counts_windows_over_all_symbols(sim, store, instruments, clock):
    seen = []
    fetch(sim, store, instruments, clock, ["INFY", "TCS"], Timeframe.M15, date(2024, 1, 1),
          date(2024, 12, 31), progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_the_kite_rest_fixture_serves_the_instrument_dump(kite_rest):
    rows = kite_rest.client().instruments()
    assert {"RELIANCE", "INFY", "M&M"} <= {row["tradingsymbol"] for row in rows}
    token = InstrumentMap.from_kite(rows).token("INFY")
    week = (datetime(2024, 1, 1), datetime(2024, 1, 5, 23, 59, 59))
    candles = kite_rest.client().historical_data(token, *week, "day")
    assert [c["date"].date() for c in candles] == [date(2024, 1, d) for d in (1, 2, 3, 4, 5)]
    assert all(c["low"] <= min(c["open"], c["close"]) and c["high"] >= c["open"] for c in candles)
    again = kite_rest.client().historical_data(token, *week, "day")
    assert candles == again, "candles are deterministic"
    assert candles[0]["date"].utcoffset() == timedelta(hours=5, minutes=30)
