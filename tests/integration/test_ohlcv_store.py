"""The OHLCV store on SQLite and PostgreSQL: idempotent, all-or-nothing writes; ranges; coverage."""

from __future__ import annotations

import dataclasses
import math
import sqlite3
from datetime import UTC, date, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect

from Webapp.market import ohlcv_rows
from Webapp.market.calendar import IST, MarketCalendar
from Webapp.market.candle import Candle, Timeframe
from Webapp.market.ohlcv import CoverageRow, InvalidCandles, OHLCVStore
from Webapp.storage import migrate

# Republic Day 2026 is a Monday: of the two weeks from 2026-01-19, the second has four sessions.
CALENDAR = MarketCalendar(holidays=[date(2026, 1, 26)])
FIRST_DAY, LAST_DAY = date(2026, 1, 19), date(2026, 1, 30)


def series(
    symbol: str = "INFY",
    timeframe: Timeframe = Timeframe.M15,
    first: date = FIRST_DAY,
    last: date = LAST_DAY,
    price: float = 1500.0,
) -> list[Candle]:
    """Every bar the calendar expects, with prices that are not round in binary."""
    candles = []
    for day in CALENDAR.trading_days(first, last):
        for ts in CALENDAR.expected_bars(day, timeframe):
            i = len(candles)
            open_ = price + 0.35 * (i % 17) + 0.1
            close = open_ + 0.7 * ((i % 5) - 2) / 3
            ema = None if i < 9 else close - 0.123456789
            candles.append(
                Candle(
                    symbol,
                    timeframe,
                    ts,
                    open_,
                    max(open_, close) + 0.45,
                    min(open_, close) - 0.45,
                    close,
                    1000 + 37 * i,
                    ema,
                    ema,
                    None,
                    None,
                )  # fmt: skip
            )
    return candles


def with_close(candle: Candle, close: float) -> Candle:
    return dataclasses.replace(
        candle, close=close, high=max(candle.high, close), low=min(candle.low, close)
    )


@pytest.fixture
def store(any_market_store):
    return any_market_store


def stored(store: OHLCVStore, symbol: str = "INFY", tf: Timeframe = Timeframe.M15) -> list:
    return store.candles(symbol, tf)


# --- schema ---------------------------------------------------------------------------------------


def test_migrate_creates_ohlcv_with_its_own_version_table_and_is_repeatable(store):
    store.migrate()
    engine = create_engine(store.url)
    try:
        assert set(inspect(engine).get_table_names()) == {"ohlcv", "alembic_version_market"}
    finally:
        engine.dispose()
    assert store.backend in ("sqlite", "postgresql")


def test_app_and_market_schemas_share_one_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'one.db'}"
    migrate.upgrade(url)
    migrate.upgrade_market(url)
    engine = create_engine(url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"users", "audit_log", "alembic_version", "ohlcv", "alembic_version_market"} <= tables


def test_market_downgrade_removes_the_table(tmp_path):
    url = f"sqlite:///{tmp_path / 'market.db'}"
    migrate.upgrade_market(url)
    command.downgrade(migrate.market_alembic_config(url), "base")
    engine = create_engine(url)
    assert set(inspect(engine).get_table_names()) == {"alembic_version_market"}
    engine.dispose()


def test_sqlite_keeps_ts_as_integer_epoch_seconds_utc(tmp_path):
    store = OHLCVStore(f"sqlite:///{tmp_path / 'market.db'}")
    store.migrate()
    candle = series()[0]  # 2026-01-19 09:15 IST
    store.upsert([candle])
    store.dispose()
    with sqlite3.connect(tmp_path / "market.db") as conn:
        ts, kind = conn.execute("SELECT ts, typeof(ts) FROM ohlcv").fetchone()
    assert kind == "integer"
    assert ts == int(datetime(2026, 1, 19, 3, 45, tzinfo=UTC).timestamp())


@pytest.mark.parametrize(
    "url, problem",
    [
        ("mysql://root@localhost/market", "PostgreSQL or SQLite"),
        ("postgresql+psycopg2://postgres@localhost/market", "psycopg 3"),
    ],
)
def test_other_databases_and_drivers_are_refused(url, problem):
    with pytest.raises(ValueError, match=problem):
        OHLCVStore(url)


@pytest.mark.pg
def test_a_plain_postgresql_url_uses_psycopg_3(pg_database):
    plain = pg_database.replace("postgresql+psycopg://", "postgresql://")
    store = OHLCVStore(plain)
    store.migrate()
    store.upsert(series()[:3])
    assert store.backend == "postgresql"
    assert store.candles("INFY", "15m") == series()[:3]
    store.dispose()


# --- writing --------------------------------------------------------------------------------------


def test_upsert_twice_stores_each_candle_once(store):
    candles = series()
    assert store.upsert(candles) == len(candles)
    assert store.upsert(candles) == 0
    assert stored(store) == candles


def test_upsert_updates_a_changed_candle_and_adds_new_ones(store):
    candles = series(last=date(2026, 1, 23))
    store.upsert(candles)
    changed = with_close(candles[10], candles[10].close + 3.3)
    new = series(first=date(2026, 1, 27), last=date(2026, 1, 27))
    assert store.upsert([candles[9], changed, *new]) == 1 + len(new)
    expected = [*candles[:10], changed, *candles[11:], *new]
    assert stored(store) == expected


def test_bulk_load_is_idempotent_and_updates_changes(store):
    candles = series()
    assert store.bulk_load(candles) == len(candles)
    assert store.bulk_load(candles) == 0
    changed = [with_close(c, c.close + 1.05) for c in candles[100:103]]
    more = series(first=date(2026, 2, 2), last=date(2026, 2, 2))
    assert store.bulk_load([*candles[:100], *changed, *candles[103:], *more]) == 3 + len(more)
    assert stored(store) == [*candles[:100], *changed, *candles[103:], *more]


def test_bulk_load_of_several_series_in_any_order(store):
    infy, tcs = series("INFY"), series("TCS", price=3200.0)
    interleaved = [c for pair in zip(infy, tcs, strict=True) for c in pair]
    assert store.bulk_load(interleaved[::-1]) == len(interleaved)
    assert stored(store, "INFY") == infy
    assert stored(store, "TCS") == tcs


BAD_ROWS = {
    "NaN close": lambda c: dataclasses.replace(c, close=math.nan),
    "NaN high": lambda c: dataclasses.replace(c, high=math.nan),
    "infinite high": lambda c: dataclasses.replace(c, high=math.inf),
    "high below close": lambda c: dataclasses.replace(c, high=c.close - 1),
    "low above open": lambda c: dataclasses.replace(c, low=c.open + 1),
    "zero low": lambda c: dataclasses.replace(c, low=0.0),
    "negative volume": lambda c: dataclasses.replace(c, volume=-1),
    "NaN EMA": lambda c: dataclasses.replace(c, ema_50=math.nan),
    "infinite EMA": lambda c: dataclasses.replace(c, ema_9=-math.inf),
    "unknown timeframe": lambda c: dataclasses.replace(c, timeframe="7m"),
    "naive ts": lambda c: dataclasses.replace(c, ts=c.ts.replace(tzinfo=None)),
    "fractional second": lambda c: dataclasses.replace(c, ts=c.ts + timedelta(microseconds=1)),
}


@pytest.mark.parametrize("bad", BAD_ROWS, ids=str)
@pytest.mark.parametrize("method", ["bulk_load", "upsert"])
@pytest.mark.parametrize("preloaded", [False, True], ids=["empty", "preloaded"])
def test_one_invalid_candle_stores_nothing_of_its_batch(store, bad, method, preloaded):
    candles = series()
    before = candles[:50] if preloaded else []
    store.bulk_load(before)
    # Changed rows, new rows, then the bad one last: the database has seen the rest.
    batch = [with_close(c, c.close + 0.5) for c in candles[:50]] + candles[50:]
    batch[-1] = BAD_ROWS[bad](batch[-1])
    with pytest.raises(InvalidCandles):
        getattr(store, method)(batch)
    assert stored(store) == before


@pytest.mark.parametrize("method", ["bulk_load", "upsert"])
@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "shuffled"])
def test_a_candle_twice_in_one_batch_is_refused(store, method, ordered):
    candles = series()
    batch = [*candles, with_close(candles[7], candles[7].close + 1)]
    if not ordered:
        batch.reverse()
    with pytest.raises(InvalidCandles, match="twice"):
        getattr(store, method)(batch)
    assert stored(store) == []


def test_same_instant_in_another_time_zone_is_the_same_candle(store):
    candle = series()[0]
    store.upsert([candle])
    in_ist = dataclasses.replace(candle, ts=candle.ts.astimezone(IST), close=candle.open)
    assert store.upsert([in_ist]) == 1
    assert stored(store) == [in_ist]
    assert stored(store)[0].ts.tzinfo is UTC


@pytest.mark.pg
def test_direct_copy_that_meets_a_stored_row_falls_back_to_merging(pg_database, monkeypatch):
    store = OHLCVStore(pg_database)
    store.migrate()
    candles = series()
    store.bulk_load(candles[100:110])
    # As if another writer stored those rows between the emptiness check and the COPY.
    monkeypatch.setattr(store, "_any_stored", lambda spans: False)
    assert store.bulk_load(candles) == len(candles) - 10
    assert stored(store) == candles
    store.dispose()


def test_empty_batches_are_fine_and_generators_are_refused(store):
    assert store.upsert([]) == 0
    assert store.bulk_load(()) == 0
    with pytest.raises(TypeError, match="list or tuple"):
        store.bulk_load(c for c in series())
    assert stored(store) == []


# --- reading --------------------------------------------------------------------------------------


def test_range_is_half_open_and_comes_back_in_utc(store):
    candles = series()
    store.bulk_load(candles)
    got = store.candles("INFY", "15m", start=candles[10].ts, end=candles[20].ts)
    assert got == candles[10:20]
    assert all(c.ts.tzinfo is UTC and c.timeframe is Timeframe.M15 for c in got)
    # Bounds in IST, and bounds between bar starts.
    ist = store.candles(
        "INFY", Timeframe.M15, start=candles[10].ts.astimezone(IST), end=candles[20].ts
    )
    assert ist == candles[10:20]
    between = store.candles(
        "INFY",
        Timeframe.M15,
        start=candles[10].ts - timedelta(seconds=0.5),
        end=candles[20].ts + timedelta(microseconds=1),
    )
    assert between == candles[10:21]
    assert store.candles("INFY", "15m", start=candles[-1].ts) == candles[-1:]
    assert store.candles("INFY", "15m", end=candles[0].ts) == []
    assert store.candles("INFY", "15m", start=candles[5].ts, limit=3) == candles[5:8]
    assert store.candles("INFY", "5m") == []
    assert store.candles("TCS", "15m") == []


def test_candles_read_back_equal_candles_built_the_usual_way(store, monkeypatch):
    candles = series()
    store.bulk_load(candles)
    assert ohlcv_rows._DIRECT  # the fast path is the one in use
    fast = store.candles("INFY", "15m")
    monkeypatch.setattr(ohlcv_rows, "_DIRECT", False)
    assert store.candles("INFY", "15m") == fast == candles
    assert type(fast[0]) is Candle
    assert {hash(c) for c in fast} == {hash(c) for c in candles}


def test_naive_bounds_are_refused(store):
    with pytest.raises(ValueError, match="naive"):
        store.candles("INFY", "15m", start=datetime(2026, 1, 19, 9, 15))


def test_last_candles_are_the_newest_n_oldest_first(store):
    candles = series()
    store.bulk_load(candles)
    assert store.last_candles("INFY", "15m", 5) == candles[-5:]
    assert store.last_candles("INFY", "15m", 10_000) == candles
    assert store.last_candles("INFY", "15m", 0) == []
    assert store.last_candles("TCS", "15m", 5) == []


def test_stored_ts_lists_what_a_fetch_can_skip(store):
    candles = series()
    store.bulk_load(candles[:30] + candles[40:])
    window = store.stored_ts("INFY", "15m", candles[25].ts, candles[45].ts)
    assert window == {c.ts for c in candles[25:30] + candles[40:45]}
    assert all(ts.tzinfo is UTC for ts in window)
    assert store.stored_ts("TCS", "15m", candles[0].ts, candles[-1].ts) == set()


def test_first_last_and_symbols(store):
    assert store.first_last("INFY", "15m") is None
    assert store.symbols() == []
    infy, daily = series("INFY"), series("M&M", Timeframe.D1)
    store.bulk_load(infy + daily + series("BAJAJ-AUTO", price=9000.0))
    first, last = store.first_last("INFY", Timeframe.M15)
    assert (first, last) == (infy[0].ts, infy[-1].ts)
    assert first.tzinfo is UTC and last.tzinfo is UTC
    assert store.symbols() == ["BAJAJ-AUTO", "INFY", "M&M"]
    assert store.symbols("1d") == ["M&M"]
    assert store.symbols(Timeframe.M5) == []


def test_daily_candles_keep_their_ist_date(store):
    daily = series("INFY", Timeframe.D1)
    store.bulk_load(daily)
    got = store.candles("INFY", "1d")
    assert got == daily
    assert [c.ts.astimezone(IST).date() for c in got] == CALENDAR.trading_days(FIRST_DAY, LAST_DAY)
    assert got[0].ts == datetime(2026, 1, 18, 18, 30, tzinfo=UTC)  # 2026-01-19 00:00 IST
    day = store.candles(
        "INFY", "1d", start=datetime(2026, 1, 20, tzinfo=IST), end=datetime(2026, 1, 21, tzinfo=IST)
    )
    assert [c.ts.astimezone(IST).date() for c in day] == [date(2026, 1, 20)]


# --- previous session close -----------------------------------------------------------------------

TUESDAY_27 = date(2026, 1, 27)  # after Republic Day (Monday 26th) and the weekend


def last_of_day(candles: list[Candle], day: date) -> Candle:
    return [c for c in candles if c.ts.astimezone(IST).date() == day][-1]


def test_previous_close_is_the_last_close_dated_before_the_session_holiday_list_or_not(store):
    infy = series("INFY")
    store.bulk_load(infy)
    friday = last_of_day(infy, date(2026, 1, 23))

    # The query knows no calendar: Monday the 26th traded or not, Friday's close it is.
    assert store.previous_closes(["INFY"], TUESDAY_27) == {"INFY": friday.close}
    assert store.previous_closes(["INFY"], date(2026, 1, 26)) == {"INFY": friday.close}
    assert store.previous_closes(["INFY"], date(2026, 1, 24)) == {"INFY": friday.close}


def test_previous_close_prefers_that_dates_daily_candle_but_never_an_older_one(store):
    intraday = series("INFY")
    daily = series("INFY", Timeframe.D1, last=date(2026, 1, 22))
    store.bulk_load(intraday)
    store.bulk_load([with_close(c, c.close + 7.5) for c in daily])

    thursday = last_of_day(daily, date(2026, 1, 22)).close + 7.5
    friday = last_of_day(intraday, date(2026, 1, 23)).close
    assert store.previous_closes(["INFY"], date(2026, 1, 23)) == {"INFY": thursday}
    # No daily candle for Friday: its last bar beats Thursday's daily close.
    assert store.previous_closes(["INFY"], TUESDAY_27) == {"INFY": friday}


def test_previous_close_from_intraday_candles_takes_the_latest_and_finest(store):
    fifteen = series("INFY", Timeframe.M15)
    five = series("INFY", Timeframe.M5)
    last_five = last_of_day(five, date(2026, 1, 23))
    five = [with_close(c, c.close + 3.25) if c is last_five else c for c in five]
    store.bulk_load(fifteen)
    store.bulk_load(five)

    assert store.previous_closes(["INFY"], TUESDAY_27) == {"INFY": last_five.close + 3.25}


def test_previous_close_never_uses_a_candle_of_the_session_itself(store):
    infy = series("INFY", last=date(2026, 1, 23))
    store.bulk_load(infy)
    friday = date(2026, 1, 23)
    pre_open = datetime(2026, 1, 23, 9, 8, tzinfo=IST).astimezone(UTC)
    store.bulk_load(
        [
            Candle("INFY", Timeframe.M1, pre_open, 1600.0, 1601.0, 1599.0, 1600.5, 10),
            Candle("INFY", Timeframe.D1, datetime(2026, 1, 23, tzinfo=IST), 1, 9999, 1, 9999, 1),
        ]
    )

    got = store.previous_closes(["INFY"], friday)

    assert got == {"INFY": last_of_day(infy, date(2026, 1, 22)).close}


def test_previous_closes_of_many_symbols_in_one_answer(store):
    infy, tcs = series("INFY"), series("TCS", Timeframe.M5, price=3200.0)
    store.bulk_load(infy)
    store.bulk_load(tcs)
    friday = date(2026, 1, 23)
    expected = {
        "INFY": last_of_day(infy, friday).close,
        "TCS": last_of_day(tcs, friday).close,
    }

    assert store.previous_closes(["TCS", "NONE", "INFY", "TCS"], TUESDAY_27) == expected
    assert store.previous_closes(["INFY"], FIRST_DAY) == {}
    assert store.previous_closes([], TUESDAY_27) == {}
    with store.engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert store.previous_closes(["INFY", "TCS"], TUESDAY_27, raw) == expected


# --- coverage -------------------------------------------------------------------------------------


def test_coverage_counts_series_and_missing_bars_as_gaps(store):
    infy, tcs = series("INFY"), series("TCS", price=3200.0)
    infy_daily, ril_daily = series("INFY", Timeframe.D1), series("RELIANCE", Timeframe.D1)
    # Three TCS bars and one INFY daily bar are missing; the other series are whole.
    holes = {5, 6, 100}
    holed_tcs = [c for i, c in enumerate(tcs) if i not in holes]
    store.bulk_load(infy + holed_tcs + infy_daily[:3] + infy_daily[4:] + ril_daily)
    rows = store.coverage(calendar=CALENDAR)
    assert [(r.symbol, r.timeframe, r.count, r.gaps) for r in rows] == [
        ("INFY", Timeframe.M15, len(infy), 0),
        ("INFY", Timeframe.D1, len(infy_daily) - 1, 1),
        ("RELIANCE", Timeframe.D1, len(ril_daily), 0),
        ("TCS", Timeframe.M15, len(tcs) - 3, 3),
    ]
    assert rows[0] == CoverageRow("INFY", Timeframe.M15, infy[0].ts, infy[-1].ts, len(infy), 0)
    assert all(r.first.tzinfo is UTC and r.last.tzinfo is UTC for r in rows)
    # Filling the holes closes the gaps.
    store.upsert([tcs[i] for i in holes])
    assert store.coverage(symbol="TCS", calendar=CALENDAR) == [
        CoverageRow("TCS", Timeframe.M15, tcs[0].ts, tcs[-1].ts, len(tcs), 0)
    ]
    assert [r.symbol for r in store.coverage(timeframe="1d", calendar=CALENDAR)] == [
        "INFY",
        "RELIANCE",
    ]


def test_coverage_counts_from_first_to_last_only_and_ignores_off_calendar_bars(store):
    candles = series()
    # Starting mid-session and ending mid-session is not a gap; a bar on the holiday is extra.
    holiday_bar = dataclasses.replace(
        candles[0], ts=datetime(2026, 1, 26, 10, 0, tzinfo=IST).astimezone(UTC)
    )
    store.bulk_load(candles[3:-4] + [holiday_bar])
    (row,) = store.coverage(calendar=CALENDAR)
    assert (row.count, row.gaps) == (len(candles) - 7 + 1, 0)
    assert (row.first, row.last) == (candles[3].ts, candles[-5].ts)


def test_coverage_defaults_to_the_nse_calendar(store):
    # NSE closed on 2026-01-15 (Maharashtra elections) and 2026-01-26 (Republic Day);
    # the test calendar only knows the second, so the 15th's bars count as gaps there.
    candles = series(first=date(2026, 1, 12))
    nse_day = [c for c in candles if c.ts.astimezone(IST).date() != date(2026, 1, 15)]
    store.bulk_load(nse_day)
    (row,) = store.coverage()
    assert (row.count, row.gaps) == (len(nse_day), 0)
    (row,) = store.coverage(calendar=CALENDAR)
    assert row.gaps == len(candles) - len(nse_day) == 25


# --- the two backends agree -----------------------------------------------------------------------


@pytest.mark.pg
def test_sqlite_and_postgresql_return_identical_results(tmp_path, pg_database):
    stores = [OHLCVStore(f"sqlite:///{tmp_path / 'market.db'}"), OHLCVStore(pg_database)]
    data = series("INFY") + series("M&M", Timeframe.D1) + series("TCS", Timeframe.H1)[::2]
    results = []
    for store in stores:
        store.migrate()
        store.bulk_load(data)
        store.upsert([with_close(data[3], data[3].close + 2.2)])
        mid = data[40].ts
        results.append(
            (
                store.candles("INFY", "15m"),
                store.candles("INFY", "15m", start=mid, end=mid + timedelta(hours=5), limit=7),
                store.last_candles("M&M", "1d", 4),
                sorted(store.stored_ts("TCS", "60m", data[0].ts, data[-1].ts)),
                store.first_last("TCS", "60m"),
                store.symbols(),
                store.symbols("1d"),
                store.coverage(calendar=CALENDAR),
            )
        )
        store.dispose()
    sqlite_result, pg_result = results
    assert sqlite_result == pg_result
    assert repr(sqlite_result) == repr(pg_result)  # same types and tzinfo, not only equal
