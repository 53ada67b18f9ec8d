"""The scan's market inputs: the last closed signal candle, the previous close, the cache."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

import pytest

from tests.conftest import migrated_market_store
from tests.trading_history import (
    closed_by,
    flat_candles,
    session_close,
    store_history,
    trading_sessions,
    uptrend_candles,
)
from tests.unit.strategy_scenarios import DEFAULTS
from Webapp.backtest.history import store_signal_history
from Webapp.event_bus import EventBus
from Webapp.execution.signal_inputs import CandleInputs, SignalCandles, snapshots
from Webapp.market.calendar import IST, MarketCalendar
from Webapp.market.candle import Candle, Timeframe
from Webapp.market.candle_recorder import CANDLES_TOPIC
from Webapp.market.ltp_store import LTPStore, Quote
from Webapp.market.ohlcv import OHLCVStore
from Webapp.strategy.actions import Buy, SkipReason
from Webapp.strategy.limits import Book, leg_quantity
from Webapp.strategy.signals import scan

CALENDAR = MarketCalendar.nse()
M15 = Timeframe.M15
# Holi 2025 fell on Friday 14 March: Monday the 17th follows Thursday the 13th.
THURSDAY, MONDAY, TUESDAY = date(2025, 3, 13), date(2025, 3, 17), date(2025, 3, 18)


def ist(day: date, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=IST).astimezone(UTC)


def uptrend(symbol: str = "UP", end: date = MONDAY, sessions: int = 10) -> list[Candle]:
    days = trading_sessions(CALENDAR, end, sessions)
    return uptrend_candles(
        symbol, timeframe=M15, sessions=days, start_price=1000.0, step_pct=0.05, calendar=CALENDAR
    )


def stored_at(store: OHLCVStore, symbol: str, start: datetime) -> Candle:
    """The stored candle starting at `start` (EMAs as the store computed them)."""
    (candle,) = store.candles(symbol, M15, start=start, end=start + timedelta(seconds=1))
    return candle


def inputs_of(candle: Candle, prev_close: float | None) -> CandleInputs:
    return CandleInputs(
        candle.close, candle.ema_9, candle.ema_21, candle.ema_50, candle.ema_200,
        CALENDAR.bar_end(candle.ts, candle.timeframe), prev_close,
    )  # fmt: skip


class CountingStore(OHLCVStore):
    """The real store, counting the queries the signal inputs make through read_before."""

    reads = 0
    during_read = None  # called inside the next read: another thread's push, made in order

    def read_before(self, *args, **kwargs):
        self.reads += 1
        answer = super().read_before(*args, **kwargs)
        if self.during_read is not None:
            self.during_read, push = None, self.during_read
            push()
        return answer


@pytest.fixture
def counting_store(tmp_path):
    store = CountingStore(f"sqlite:///{tmp_path / 'm.db'}")
    store.migrate()
    yield store
    store.dispose()


# --- the last closed candle ------------------------------------------------------------------

# (now, start of the candle the scan must be given): a candle closing exactly at `now`
# counts, one closing a second later does not, and outside the session it is the last
# bar of the latest session.
LAST_CLOSED = [
    (ist(MONDAY, 10, 0), ist(MONDAY, 9, 45)),
    (ist(MONDAY, 9, 59, 59), ist(MONDAY, 9, 30)),
    (ist(MONDAY, 9, 30), ist(MONDAY, 9, 15)),
    (ist(MONDAY, 9, 29, 59), ist(THURSDAY, 15, 15)),
    (ist(MONDAY, 9, 15), ist(THURSDAY, 15, 15)),
    (ist(MONDAY, 8, 0), ist(THURSDAY, 15, 15)),
    (ist(date(2025, 3, 14), 12, 0), ist(THURSDAY, 15, 15)),  # the holiday
    (ist(date(2025, 3, 16), 12, 0), ist(THURSDAY, 15, 15)),  # Sunday
    (ist(MONDAY, 15, 29, 59), ist(MONDAY, 15, 0)),
    (ist(MONDAY, 15, 30), ist(MONDAY, 15, 15)),
    (ist(MONDAY, 20, 0), ist(MONDAY, 15, 15)),
]


def test_the_candle_given_is_the_last_one_closed_at_or_before_now(any_market_store):
    # The store holds all of Tuesday too: nothing after `now` may leak into the answer.
    store_history(any_market_store, uptrend(end=TUESDAY))
    candles = SignalCandles(any_market_store, CALENDAR, M15)

    for now, start in LAST_CLOSED:  # one instance for all: the cache must follow `now`
        expected = stored_at(any_market_store, "UP", start)
        got = candles.inputs(["UP"], now)["UP"]
        assert dataclasses.replace(got, prev_close=None) == inputs_of(expected, None), now
        assert got.candle_closed_at <= now


def test_the_candle_carries_the_emas_the_store_computed(any_market_store):
    store_history(any_market_store, uptrend())
    got = SignalCandles(any_market_store, CALENDAR, M15).inputs(["UP"], ist(MONDAY, 10, 0))["UP"]

    assert None not in (got.ema_9, got.ema_21, got.ema_50, got.ema_200)
    assert got.candle_close > got.ema_9 > got.ema_21 > got.ema_50
    assert got.candle_close > got.ema_200


def test_on_daily_candles_the_last_closed_is_the_last_finished_session(market_store):
    days = trading_sessions(CALENDAR, TUESDAY, 5)
    daily = uptrend_candles(
        "UP", timeframe=Timeframe.D1, sessions=days, start_price=100.0, step_pct=1.0,
        calendar=CALENDAR,
    )  # fmt: skip
    store_history(market_store, daily)
    candles = SignalCandles(market_store, CALENDAR, Timeframe.D1)
    thursday, monday = (c.close for c in daily if c.ts in (ist(THURSDAY, 0, 0), ist(MONDAY, 0, 0)))

    during = candles.inputs(["UP"], ist(MONDAY, 15, 29, 59))["UP"]
    after = candles.inputs(["UP"], ist(MONDAY, 15, 30))["UP"]

    assert (during.candle_close, during.candle_closed_at) == (thursday, ist(THURSDAY, 15, 30))
    assert (after.candle_close, after.candle_closed_at) == (monday, ist(MONDAY, 15, 30))
    assert during.prev_close == after.prev_close == thursday


def test_a_symbol_with_no_candles_gets_none_but_its_fallback_close(market_store):
    store_history(market_store, uptrend())
    candles = SignalCandles(market_store, CALENDAR, M15, fallback_prev_close={"NEW": 512.5})

    got = candles.inputs(["NEW", "OTHER"], ist(MONDAY, 10, 0))

    assert got == {"NEW": CandleInputs(prev_close=512.5), "OTHER": CandleInputs()}


def five_minute_uptrend(end: date = TUESDAY, sessions: int = 10) -> list[Candle]:
    days = trading_sessions(CALENDAR, end, sessions)
    return uptrend_candles(
        "UP", timeframe=Timeframe.M5, sessions=days, start_price=1000.0, step_pct=0.02,
        calendar=CALENDAR,
    )  # fmt: skip


def test_with_only_5m_candles_stored_the_signal_candle_is_their_15m_roll_up(
    any_market_store, tmp_path
):
    # The store holds 5m candles up to Tuesday's close: nothing after `now` may leak in.
    five = five_minute_uptrend()
    store_history(any_market_store, five)
    with migrated_market_store(
        f"sqlite:///{any_market_store.url.rsplit('/', 1)[0]}/r.db"
    ) as rolled:
        store_signal_history(rolled, {"UP": five}, M15)  # what a backtest stores
        expected = SignalCandles(rolled, CALENDAR, M15)
        candles = SignalCandles(any_market_store, CALENDAR, M15)

        for now, start in LAST_CLOSED:  # one instance for all: the roll-up must follow `now`
            got = candles.inputs(["UP"], now)["UP"]
            assert got == expected.inputs(["UP"], now)["UP"], now
            assert got.candle_closed_at == CALENDAR.bar_end(start, M15) <= now, now
            assert None not in (got.ema_9, got.ema_21, got.ema_50, got.ema_200), now


def test_a_15m_candle_rolled_up_from_5m_is_given_only_once_all_three_have_closed(market_store):
    five = five_minute_uptrend()
    store_history(market_store, five)
    candles = SignalCandles(market_store, CALENDAR, M15)
    by_start = {c.ts: c for c in five}

    for minute in range(45, 60):  # 09:45-10:00: the 09:45 candle is forming
        got = candles.inputs(["UP"], ist(MONDAY, 9, minute, 30))["UP"]
        assert got.candle_closed_at == ist(MONDAY, 9, 45)
        assert got.candle_close == by_start[ist(MONDAY, 9, 40)].close
    at_ten = candles.inputs(["UP"], ist(MONDAY, 10, 0))["UP"]
    assert at_ten.candle_close == by_start[ist(MONDAY, 9, 55)].close


# --- the previous session's close ------------------------------------------------------------


def test_prev_close_skips_the_weekend_and_the_holiday(any_market_store):
    history = uptrend(end=TUESDAY)
    store_history(any_market_store, history)
    candles = SignalCandles(any_market_store, CALENDAR, M15, fallback_prev_close={"UP": 1.0})

    monday = candles.inputs(["UP"], ist(MONDAY, 10, 0))["UP"]
    tuesday = candles.inputs(["UP"], ist(TUESDAY, 10, 0))["UP"]

    assert monday.prev_close == session_close(history, THURSDAY, CALENDAR)
    assert tuesday.prev_close == session_close(history, MONDAY, CALENDAR)
    assert monday.prev_close != tuesday.prev_close


def test_prev_close_prefers_the_stored_daily_candle(any_market_store):
    store_history(any_market_store, uptrend())
    day_start = ist(THURSDAY, 0, 0)
    daily = Candle("UP", Timeframe.D1, day_start, 1000.0, 1200.0, 990.0, 1111.1, 25_000)
    store_history(any_market_store, [daily])

    got = SignalCandles(any_market_store, CALENDAR, M15).inputs(["UP"], ist(MONDAY, 10, 0))

    assert got["UP"].prev_close == 1111.1


def test_prev_close_across_a_holiday_the_calendar_does_not_list(any_market_store):
    # The history skips Holi (Friday the 14th); a holiday list that misses it (old data)
    # must not make Monday look for a close of that Friday.
    history = uptrend(end=TUESDAY)
    store_history(any_market_store, history)
    unlisted = MarketCalendar(())

    got = SignalCandles(any_market_store, unlisted, M15).inputs(["UP"], ist(MONDAY, 10, 0))

    assert got["UP"].prev_close == session_close(history, THURSDAY, CALENDAR)


def test_prev_close_from_intraday_candles_finer_than_the_signal_timeframe(any_market_store):
    days = trading_sessions(CALENDAR, MONDAY, 3)
    five = uptrend_candles(
        "UP", timeframe=Timeframe.M5, sessions=days, start_price=1000.0, step_pct=0.05,
        calendar=CALENDAR,
    )  # fmt: skip
    store_history(any_market_store, five)

    got = SignalCandles(any_market_store, CALENDAR, M15).inputs(["UP"], ist(MONDAY, 10, 0))

    assert got["UP"].prev_close == session_close(five, THURSDAY, CALENDAR)


def test_prev_close_never_comes_from_the_session_itself(any_market_store):
    history = uptrend(end=TUESDAY)
    store_history(any_market_store, history)
    today = Candle("UP", Timeframe.D1, ist(MONDAY, 0, 0), 2000.0, 2100.0, 1900.0, 2050.0, 9)
    pre_open = Candle("UP", Timeframe.M1, ist(MONDAY, 9, 8), 2000.0, 2001.0, 1999.0, 2000.5, 9)
    store_history(any_market_store, [today, pre_open])

    got = SignalCandles(any_market_store, CALENDAR, M15).inputs(["UP"], ist(MONDAY, 10, 0))

    assert got["UP"].prev_close == session_close(history, THURSDAY, CALENDAR)


def test_prev_close_is_the_last_stored_close_however_old(market_store):
    # History stops a week before Thursday: the close of 6 March is the last one stored.
    history = uptrend(end=date(2025, 3, 6))
    store_history(market_store, history)

    got = SignalCandles(market_store, CALENDAR, M15).inputs(["UP"], ist(MONDAY, 10, 0))["UP"]

    assert got.prev_close == session_close(history, date(2025, 3, 6), CALENDAR)
    assert got.candle_closed_at == ist(date(2025, 3, 6), 15, 30)  # the scan: stale candle


def test_prev_close_is_none_without_an_earlier_candle_or_a_fallback(market_store):
    store_history(market_store, uptrend(end=MONDAY, sessions=1))

    got = SignalCandles(market_store, CALENDAR, M15).inputs(["UP"], ist(MONDAY, 10, 0))["UP"]

    assert got.prev_close is None
    assert got.candle_closed_at == ist(MONDAY, 10, 0)


# --- the cache -------------------------------------------------------------------------------


def test_a_scan_every_minute_queries_only_when_a_new_candle_is_due(counting_store):
    store_history(counting_store, uptrend() + uptrend("UP2"))
    candles = SignalCandles(counting_store, CALENDAR, M15)
    symbols = ["UP", "UP2"]

    candles.inputs(symbols, ist(MONDAY, 10, 0, 30))
    first = counting_store.reads
    for minute in range(1, 15):
        answer = candles.inputs(symbols, ist(MONDAY, 10, minute, 30))
    same_candle = counting_store.reads - first
    after = candles.inputs(symbols, ist(MONDAY, 10, 15, 30))
    next_candle = counting_store.reads - first

    assert first > 0
    assert same_candle == 0
    assert answer["UP"].candle_closed_at == ist(MONDAY, 10, 0)
    assert next_candle == 2  # one candle each; the previous close is still known
    assert after["UP"].candle_closed_at == ist(MONDAY, 10, 15)
    assert after["UP"].prev_close == answer["UP"].prev_close is not None


def test_a_candle_written_late_is_found_by_the_next_scan(counting_store):
    history = uptrend()
    store_history(counting_store, closed_by(history, ist(MONDAY, 9, 45), CALENDAR))
    candles = SignalCandles(counting_store, CALENDAR, M15)

    before = candles.inputs(["UP"], ist(MONDAY, 10, 0, 1))["UP"]  # 09:45 not written yet
    store_history(counting_store, closed_by(history, ist(MONDAY, 10, 0), CALENDAR))
    after = candles.inputs(["UP"], ist(MONDAY, 10, 1, 1))["UP"]

    assert before.candle_closed_at == ist(MONDAY, 9, 45)
    assert after.candle_closed_at == ist(MONDAY, 10, 0)


def test_a_missing_candle_stops_being_asked_for_until_the_next_is_due(counting_store):
    store_history(counting_store, uptrend(end=THURSDAY))  # nothing stored for Monday
    candles = SignalCandles(counting_store, CALENDAR, M15)
    candles.inputs(["UP"], ist(MONDAY, 10, 0, 30))

    reads = counting_store.reads
    for minute in range(5, 15):
        candles.inputs(["UP"], ist(MONDAY, 10, minute, 30))

    assert counting_store.reads == reads


def test_live_candles_replace_the_query(counting_store):
    history = store_and_read_back(counting_store)
    candles = SignalCandles(counting_store, CALENDAR, M15)
    candles.inputs(["UP"], ist(MONDAY, 10, 0, 30))
    reads = counting_store.reads
    bus = EventBus()
    candles.subscribe(bus)

    ten = history[ist(MONDAY, 10, 0)]
    daily = Candle("UP", Timeframe.D1, ist(MONDAY, 0, 0), 1.0, 9.0, 1.0, 5.0, 9)
    bus.publish(CANDLES_TOPIC, [daily, dataclasses.replace(ten, timeframe=Timeframe.M5), ten])
    got = candles.inputs(["UP"], ist(MONDAY, 10, 15, 30))["UP"]

    assert counting_store.reads == reads
    assert got.candle_closed_at == ist(MONDAY, 10, 15)
    assert dataclasses.replace(got, prev_close=None) == inputs_of(ten, None)


def test_a_live_candle_pushed_during_a_query_is_not_lost(counting_store):
    history = uptrend()
    store_history(counting_store, closed_by(history, ist(MONDAY, 9, 45), CALENDAR))
    candles = SignalCandles(counting_store, CALENDAR, M15)
    pushed = dataclasses.replace(history[-1], ts=ist(MONDAY, 9, 45), close=1234.5, high=1234.5)
    counting_store.during_read = lambda: candles.on_candles([pushed])

    got = candles.inputs(["UP"], ist(MONDAY, 10, 0, 1))["UP"]  # the query finds 09:30

    assert (got.candle_close, got.candle_closed_at) == (1234.5, ist(MONDAY, 10, 0))


def test_a_live_candle_without_emas_means_no_history(counting_store):
    history = store_and_read_back(counting_store)
    candles = SignalCandles(counting_store, CALENDAR, M15)
    bare = dataclasses.replace(history[ist(MONDAY, 10, 0)], ema_200=None)

    candles.on_candles([bare])
    got = candles.inputs(["UP"], ist(MONDAY, 10, 15, 30))["UP"]

    assert got.candle_close == bare.close
    assert got.ema_200 is None


def test_a_live_candle_still_forming_at_now_is_never_given(counting_store):
    history = store_and_read_back(counting_store)
    candles = SignalCandles(counting_store, CALENDAR, M15)

    candles.on_candles([history[ist(MONDAY, 10, 0)]])  # closes 10:15
    got = candles.inputs(["UP"], ist(MONDAY, 10, 14, 59))["UP"]

    assert got.candle_closed_at == ist(MONDAY, 10, 0)


def store_and_read_back(store: OHLCVStore) -> dict[datetime, Candle]:
    store_history(store, uptrend())
    return {c.ts: c for c in store.candles("UP", M15)}


# --- without a store -------------------------------------------------------------------------


def test_without_a_store_the_scan_says_not_enough_history():
    now = ist(MONDAY, 10, 0, 30)
    candles = SignalCandles(None, CALENDAR, M15, fallback_prev_close={"A": 1000.0})
    candles.on_candles(closed_by(uptrend("A"), now, CALENDAR))  # made up: not history
    quotes = {"A": Quote("A", 1020.0, 0, None, now - timedelta(seconds=1))}

    got = candles.inputs(["A"], now)
    entries, skips = scan(snaps(["A"], quotes, got), now, DEFAULTS, Book(), CALENDAR)

    assert got == {"A": CandleInputs(prev_close=1000.0)}
    assert entries == []
    assert [(s.symbol, s.reason) for s in skips] == [("A", SkipReason.NO_HISTORY)]


# --- snapshots and the scan ------------------------------------------------------------------


def snaps(symbols, quotes, inputs, **changes):
    options = {"open_symbols": (), "last_closed": {}, "use_exchange_time": False} | changes
    return snapshots(symbols, quotes, inputs, **options)


def test_snapshots_follow_the_symbols_order_and_the_quotes():
    received, exchange = ist(MONDAY, 10, 0, 5), ist(MONDAY, 10, 0, 4)
    quotes = {
        "A": Quote("A", 101.0, 5, exchange, received),
        "B": Quote("B", 202.0, 5, None, received),
    }
    closed = {"B": ist(MONDAY, 9, 0)}
    facts = {"A": CandleInputs(candle_close=100.0, prev_close=99.0)}

    plain = snaps(["C", "B", "A"], quotes, facts, open_symbols={"A"}, last_closed=closed)
    exchange_time = snaps(["A", "B"], quotes, facts, use_exchange_time=True)

    assert [s.symbol for s in plain] == ["C", "B", "A"]
    assert (plain[0].ltp, plain[0].last_tick_at, plain[0].prev_close) == (None, None, None)
    assert (plain[1].ltp, plain[1].last_closed_at, plain[1].ladder_open) == (
        202.0,
        closed["B"],
        False,
    )
    assert (plain[2].candle_close, plain[2].prev_close, plain[2].ladder_open) == (100.0, 99.0, True)
    assert plain[2].last_tick_at == received
    assert [s.last_tick_at for s in exchange_time] == [exchange, received]


def test_the_scan_buys_the_uptrend_and_skips_the_flat_symbol(any_market_store):
    now = ist(MONDAY, 10, 0, 30)
    days = trading_sessions(CALENDAR, MONDAY, 10)
    up = closed_by(uptrend(), now, CALENDAR)
    flat = flat_candles("FLAT", timeframe=M15, sessions=days, price=500.0, calendar=CALENDAR)
    store_history(any_market_store, up + closed_by(flat, now, CALENDAR))
    store = LTPStore()
    up_ltp = round(session_close(up, THURSDAY, CALENDAR) * 1.02, 2)
    store.update("UP", up_ltp, received_at=now - timedelta(seconds=1))
    store.update("FLAT", 510.0, received_at=now - timedelta(seconds=1))

    symbols = ["FLAT", "UP"]
    got = SignalCandles(any_market_store, CALENDAR, M15).inputs(symbols, now)
    entries, skips = scan(snaps(symbols, store.snapshot(), got), now, DEFAULTS, Book(), CALENDAR)

    assert entries == [Buy("UP", 1, leg_quantity(up_ltp, DEFAULTS), up_ltp)]
    assert [(s.symbol, s.reason) for s in skips] == [("FLAT", SkipReason.TREND)]


# --- the test-history builder ----------------------------------------------------------------


def test_built_history_qualifies_on_the_next_session_at_plus_two_pct(market_store):
    now = ist(MONDAY, 9, 30)  # the entry window's first moment: one Monday candle closed
    history = closed_by(uptrend(), now, CALENDAR)
    store_history(market_store, history)
    prev_close = session_close(history, THURSDAY, CALENDAR)
    ltp = prev_close * 1.02
    quotes = {"UP": Quote("UP", ltp, 0, None, now - timedelta(seconds=2))}

    got = SignalCandles(market_store, CALENDAR, M15).inputs(["UP"], now)
    entries, skips = scan(snaps(["UP"], quotes, got), now, DEFAULTS, Book(), CALENDAR)

    assert len(history) >= 200
    assert got["UP"].prev_close == prev_close
    assert (entries, skips) == ([Buy("UP", 1, leg_quantity(ltp, DEFAULTS), ltp)], [])


def test_store_history_writes_the_emas_a_csv_import_would(tmp_path):
    history = uptrend()
    with (
        migrated_market_store(f"sqlite:///{tmp_path / 'a.db'}") as whole,
        migrated_market_store(f"sqlite:///{tmp_path / 'b.db'}") as split,
    ):
        store_history(whole, history)
        store_history(split, history[:100])
        store_history(split, history[100:])  # continued from the stored EMAs

        assert whole.candles("UP", M15) == split.candles("UP", M15)
        assert whole.candles("UP", M15)[198].ema_200 is None
        assert whole.candles("UP", M15)[199].ema_200 is not None
