"""import_many's overlapped path (PostgreSQL: COPY in flight while the next file parses) agrees
with importing the files one by one, for new series, re-imports, appends, overlaps and refusals."""

from __future__ import annotations

from datetime import date

import pytest

from tests.conftest import migrated_market_store
from tests.integration.test_csv_import import (
    FIVE_MIN,
    KITE_HEADER,
    assert_emas_are_batch,
    five_minute_bars,
    kite_lines,
    need,
    write,
)
from Webapp.market.candle import EMA_PERIODS, Candle, CandleColumns, Timeframe
from Webapp.market.csv_import import import_many
from Webapp.market.indicators import ema_series
from Webapp.market.ohlcv import InvalidCandles
from Webapp.market.ohlcv_copy import PgPipe, copy_body
from Webapp.market.ohlcv_loads import PgLoader, loader
from Webapp.market.ohlcv_rows import pg_rows


@pytest.fixture
def any_store(any_market_store):
    return any_market_store


@pytest.fixture
def pg_store(pg_database):
    with migrated_market_store(pg_database) as store:
        yield store


def closes(bars):
    return [b[4] for b in bars]


def test_a_folder_imported_again_changes_nothing_and_a_changed_candle_is_repaired(any_store):
    folder = need(FIVE_MIN)
    files = sorted(folder.glob("*.csv"))[:6]
    first = import_many(any_store, files)
    assert [r.changed for r in first] == [1_650] * 6
    before = {r.symbol: any_store.candles(r.symbol, Timeframe.M5) for r in first}
    again = import_many(any_store, files)
    assert [(r.errors, r.changed, r.restated) for r in again] == [([], 0, 0)] * 6
    # A stored candle that differs from its file (a volume) is written back, alone.
    damaged = before[first[2].symbol][700]
    any_store.upsert([Candle(**{**_fields(damaged), "volume": damaged.volume + 1})])
    repaired = import_many(any_store, files)
    assert [r.changed for r in repaired] == [0, 0, 1, 0, 0, 0]
    for symbol, candles in before.items():
        assert any_store.candles(symbol, Timeframe.M5) == candles


def test_files_of_one_series_in_one_call_are_stored_in_order(any_store, tmp_path):
    bars = five_minute_bars(date(2024, 1, 1), 8)  # 600 bars
    parts = [
        write(tmp_path / "INFY_1.csv", KITE_HEADER, kite_lines(bars[:150])),
        write(tmp_path / "TCS_1.csv", KITE_HEADER, kite_lines(bars[:10])),
        write(tmp_path / "INFY_2.csv", KITE_HEADER, kite_lines(bars[150:400])),
        write(tmp_path / "INFY_3.csv", KITE_HEADER, kite_lines(bars[400:])),
    ]
    reports = import_many(any_store, parts)
    assert [(r.symbol, r.changed, r.restated) for r in reports] == [
        ("INFY", 150, 0),
        ("TCS", 10, 0),
        ("INFY", 250, 0),
        ("INFY", 200, 0),
    ]
    assert_emas_are_batch(any_store, "INFY", Timeframe.M5, closes(bars))
    assert_emas_are_batch(any_store, "TCS", Timeframe.M5, closes(bars[:10]))


def test_a_file_before_and_one_overlapping_the_stored_series_restate_what_follows(
    any_store, tmp_path
):
    bars = five_minute_bars(date(2024, 1, 1), 8)
    changed = [
        (t, o, max(h, c + 1), lo, c + 1, v) if 450 <= i < 460 else (t, o, h, lo, c, v)
        for i, (t, o, h, lo, c, v) in enumerate(bars)
    ]
    import_many(any_store, [write(tmp_path / "INFY_late.csv", KITE_HEADER, kite_lines(bars[300:]))])
    reports = import_many(
        any_store,
        [
            write(tmp_path / "INFY_early.csv", KITE_HEADER, kite_lines(bars[:300])),
            write(tmp_path / "INFY_fix.csv", KITE_HEADER, kite_lines(changed[440:470])),
        ],
    )
    assert [(r.rows, r.restated) for r in reports] == [(300, 300), (30, 600 - 470)]
    assert_emas_are_batch(any_store, "INFY", Timeframe.M5, closes(changed))


def test_a_refused_file_does_not_stop_the_others_in_the_overlapped_path(any_store, tmp_path):
    bars = five_minute_bars(date(2024, 1, 1), 2)
    t, o, h, lo, c, _ = bars[5]
    bad = kite_lines([*bars[:5], (t, o, h, lo, c, -3), *bars[6:20]])
    files = [
        write(tmp_path / "INFY.csv", KITE_HEADER, kite_lines(bars)),
        write(tmp_path / "SBIN.csv", KITE_HEADER, bad),
        write(tmp_path / "TCS.csv", KITE_HEADER, kite_lines(bars)),
    ]
    reports = import_many(any_store, files)
    assert [r.ok for r in reports] == [True, False, True]
    assert reports[1].errors == ["SBIN.csv:7: volume -3 is negative"]
    assert any_store.symbols() == ["INFY", "TCS"]


def test_progress_of_many_files_never_goes_back_and_ends_at_the_total(any_store, tmp_path):
    bars = five_minute_bars(date(2024, 1, 1), 3)
    files = [
        write(tmp_path / f"S{i}.csv", KITE_HEADER, kite_lines(bars[: 50 + 10 * i]))
        for i in range(5)
    ]
    seen = []
    import_many(any_store, files, progress=lambda done, total: seen.append((done, total)))
    assert seen == sorted(seen)
    assert seen[-1] == (sum(51 + 10 * i for i in range(5)),) * 2


# --- the PostgreSQL loader itself -------------------------------------------------------------


def _fields(candle: Candle) -> dict:
    return {name: getattr(candle, name) for name in Candle.__dataclass_fields__}


def _columns(symbol: str, bars, emas=None) -> CandleColumns:
    ts, opens, highs, lows, closes_, volumes = (list(c) for c in zip(*bars, strict=True))
    none = [None] * len(ts)
    return CandleColumns(
        symbol, Timeframe.M5, ts, opens, highs, lows, closes_, volumes,
        *(emas or (none, none, none, none)),
    )  # fmt: skip


def test_a_copy_into_a_range_stored_meanwhile_goes_through_the_merge(pg_store):
    bars = five_minute_bars(date(2024, 1, 1), 1)
    pg_store.bulk_load_columns(_columns("INFY", bars[:10]))  # "another writer"
    outcomes, merged = {}, []

    def otherwise(symbol):
        merged.append(symbol)
        return pg_store.bulk_load_columns(_columns(symbol, bars)), 0

    with loader(pg_store) as load:
        assert isinstance(load, PgLoader)
        for symbol in ("TCS", "INFY", "SBIN"):  # one COPY for the three, refused whole
            load.submit(
                _columns(symbol, bars),
                None,
                lambda *o, symbol=symbol: outcomes.setdefault(symbol, o),
                lambda symbol=symbol: otherwise(symbol),
            )
    assert merged == ["INFY"]
    assert outcomes == {
        "TCS": (len(bars), 0, None),
        "INFY": (len(bars) - 10, 0, None),
        "SBIN": (len(bars), 0, None),
    }
    for symbol in ("TCS", "INFY", "SBIN"):
        assert len(pg_store.candles(symbol, Timeframe.M5)) == len(bars)


def test_a_copy_the_database_refuses_is_reported_and_the_next_one_is_stored(pg_store):
    bars = five_minute_bars(date(2024, 1, 1), 1)
    bad = [(t, o, h, lo, c, -1) for t, o, h, lo, c, _ in bars]  # volume >= 0 is a CHECK
    outcomes = []
    with loader(pg_store) as load:
        for symbol, rows in (("BAD", bad), ("GOOD", bars)):
            load.submit(_columns(symbol, rows), None, lambda *o: outcomes.append(o), lambda: (0, 0))
    (refused_changed, _, refused), stored = outcomes
    assert refused_changed == 0 and isinstance(refused, InvalidCandles)
    assert "ck_ohlcv_volume" in str(refused)
    assert stored == (len(bars), 0, None)
    assert pg_store.symbols() == ["GOOD"]


def test_columns_the_store_would_refuse_never_reach_the_server(pg_store):
    bars = five_minute_bars(date(2024, 1, 1), 1)
    twice = bars[:3] + bars[2:5]  # a time given twice
    outcomes = []
    with loader(pg_store) as load:
        load.submit(_columns("INFY", twice), None, lambda *o: outcomes.append(o), lambda: (0, 0))
    assert isinstance(outcomes[0][2], InvalidCandles)
    assert pg_store.symbols() == []


def test_stored_rows_come_back_as_the_bytes_their_copy_carried(pg_store):
    bars = five_minute_bars(date(2024, 1, 1), 4)  # 300 bars: EMAs missing at the start
    emas = [ema_series(closes(bars), period) for period in EMA_PERIODS]
    columns = _columns("M&M", bars, emas)
    outcomes = []
    with loader(pg_store) as load:
        load.submit(columns, None, lambda *o: outcomes.append(o), lambda: (0, 0))
    assert outcomes == [(300, 0, None)]
    engine = pg_store.engine.execution_options(isolation_level="AUTOCOMMIT")
    with loader(pg_store) as load, engine.connect() as conn:
        assert isinstance(load, PgLoader)
        pipe = PgPipe(conn.connection.driver_connection)
        encoded = pipe.encode(pg_rows(columns))
        rows_only = pipe.encode_rows(pg_rows(columns))
        pipe.close()
        load.ask(("M&M", Timeframe.M5), columns.ts[0], 200)
        whole = load.context()
        load.ask(("M&M", Timeframe.M5), columns.ts[250], 200)
        middle = load.context()
    assert whole.rows_from == copy_body(encoded) == rows_only
    assert (whole.prior_closes, whole.last_emas) == ([], None)
    assert middle.prior_closes == closes(bars)[50:250]
    assert middle.last_emas == tuple(ema[249] for ema in emas)


def test_a_copy_left_open_by_a_failing_import_stores_nothing(pg_store):
    bars = five_minute_bars(date(2024, 1, 1), 1)
    outcomes = []
    with pytest.raises(KeyboardInterrupt), loader(pg_store) as load:
        load.submit(_columns("INFY", bars), None, lambda *o: outcomes.append(o), lambda: (0, 0))
        raise KeyboardInterrupt  # the import stops with the COPY still open
    assert outcomes == []
    assert pg_store.symbols() == []
    with loader(pg_store) as load:  # the pooled connections are fine for the next import
        load.submit(_columns("INFY", bars), None, lambda *o: outcomes.append(o), lambda: (0, 0))
    assert outcomes == [(len(bars), 0, None)]
