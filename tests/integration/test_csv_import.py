"""CSV import: both real layouts, malformed files refused by line, custom layouts, EMAs."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta

import pytest

from tests.conftest import SHARED_DATA
from Webapp.market.calendar import IST, MarketCalendar
from Webapp.market.candle import EMA_PERIODS, Timeframe
from Webapp.market.csv_import import (
    MAX_ERRORS,
    CsvImportError,
    ImportOptions,
    import_csv,
    import_many,
    symbol_from_filename,
)
from Webapp.market.indicators import ema_series

DAILY = SHARED_DATA / "nse-daily-2020-2025"
FIVE_MIN = SHARED_DATA / "nse-5min-2026"
KITE_HEADER = "timestamp,open,high,low,close,volume,oi"


def need(folder):
    if not folder.is_dir():
        pytest.skip(f"real market data not found at {folder} (see ../shared/data/README.md)")
    return folder


@pytest.fixture
def store(market_store):
    return market_store


@pytest.fixture
def any_store(any_market_store):
    return any_market_store


def five_minute_bars(first_day: date, days: int, start_price: float = 1000.0):
    """Valid 5m bars (UTC start, o, h, l, c, v) on `days` NSE trading days from `first_day`."""
    calendar = MarketCalendar.nse()
    bars, price, day = [], start_price, first_day
    while days:
        starts = calendar.expected_bars(day, Timeframe.M5)
        days -= 1 if starts else 0
        for start in starts:
            close = round((price + ((len(bars) * 7919) % 41 - 20) * 0.05) * 20) / 20
            high, low = max(price, close) + 0.5, min(price, close) - 0.5
            bars.append((start, price, high, low, close, 1000 + len(bars)))
            price = close
        day += timedelta(days=1)
    return bars


def kite_lines(bars) -> list[str]:
    """Rows in the daily files' layout, times written in IST with their offset."""
    return [
        f"{t.astimezone(IST).isoformat(sep=' ')},{o},{h},{lo},{c},{v},0"
        for t, o, h, lo, c, v in bars
    ]


def write(path, header: str | None, lines: list[str]):
    text = "\n".join(([header] if header is not None else []) + lines) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def read_closes(path, yfinance: bool) -> list[float]:
    """The file's closes read independently of the importer (rounded like it for yfinance)."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if yfinance:
        return [round(float(row[1]) * 20) / 20 for row in rows[3:]]
    return [float(row[4]) for row in rows[1:]]


def assert_emas_are_batch(store, symbol, timeframe, closes):
    stored = store.candles(symbol, timeframe)
    assert [c.close for c in stored] == closes
    for period in EMA_PERIODS:
        assert [getattr(c, f"ema_{period}") for c in stored] == ema_series(closes, period), period


# --- the two real datasets --------------------------------------------------------------------


def test_real_daily_files_import_whole_with_readme_counts_and_batch_emas(any_store):
    folder = need(DAILY)
    reports = import_many(any_store, [folder])
    assert [r.errors for r in reports if r.errors] == []
    assert len(reports) == 50
    assert sum(r.rows for r in reports) == 61_135
    assert {r.timeframe for r in reports} == {Timeframe.D1}
    by_symbol = {r.symbol: r for r in reports}
    assert {"M&M", "BAJAJ-AUTO", "RELIANCE"} <= set(by_symbol)
    reliance = by_symbol["RELIANCE"]
    assert reliance.first == datetime(2020, 9, 30, 18, 30, tzinfo=UTC)  # 2020-10-01 00:00 IST
    assert reliance.last.astimezone(IST).date() == date(2025, 9, 30)
    assert by_symbol["ETERNAL"].first.astimezone(IST).date() == date(2021, 7, 23)
    assert by_symbol["JIOFIN"].first.astimezone(IST).date() == date(2023, 8, 21)
    # Muhurat and budget-day sessions are in the data although the calendar lists them closed.
    assert any("2020-11-14" in note for note in reliance.notes)
    coverage = any_store.coverage(timeframe=Timeframe.D1)
    assert sum(row.count for row in coverage) == 61_135
    for symbol in ("RELIANCE", "M&M", "JIOFIN"):
        path = folder / f"{symbol}_2020-10-01_to_2025-09-30.csv"
        assert_emas_are_batch(any_store, symbol, Timeframe.D1, read_closes(path, False))


def test_real_yfinance_five_minute_files_import_with_rounding_and_batch_emas(any_store):
    folder = need(FIVE_MIN)
    reports = import_many(any_store, sorted(folder.glob("*.csv")))
    assert [r.errors for r in reports if r.errors] == []
    assert len(reports) == 47
    assert all(r.rows == 1_650 for r in reports)
    assert {r.timeframe for r in reports} == {Timeframe.M5}
    reliance = any_store.candles("RELIANCE", Timeframe.M5)
    assert len(reliance) == 1_650
    first = reliance[0]
    assert first.ts == datetime(2026, 5, 20, 3, 45, tzinfo=UTC)  # 09:15 IST
    # 1319.9000244140625 in the file: float32 noise rounded to the tick.
    assert (first.open, first.high, first.low, first.close) == (1317.0, 1319.9, 1312.7, 1319.0)
    assert first.volume == 0
    assert reliance[-1].ts.astimezone(IST).strftime("%Y-%m-%d %H:%M") == "2026-06-19 15:25"
    for symbol in ("RELIANCE", "M&M", "BAJAJ-AUTO"):
        path = folder / f"{symbol}_5min.csv"
        assert_emas_are_batch(any_store, symbol, Timeframe.M5, read_closes(path, True))
    rows = any_store.coverage(symbol="RELIANCE", timeframe=Timeframe.M5)
    assert (rows[0].count, rows[0].gaps) == (1_650, 0)


def test_reimporting_the_same_file_changes_nothing(any_store):
    path = need(FIVE_MIN) / "INFY_5min.csv"
    first = import_csv(any_store, path)
    before = any_store.candles("INFY", Timeframe.M5)
    again = import_csv(any_store, path)
    assert (first.changed, again.changed, again.rows) == (1_650, 0, 1_650)
    assert any_store.candles("INFY", Timeframe.M5) == before


def test_symbol_comes_from_the_file_name():
    assert symbol_from_filename("M&M_2020-10-01_to_2025-09-30.csv") == "M&M"
    assert symbol_from_filename("BAJAJ-AUTO_5min.csv") == "BAJAJ-AUTO"
    assert symbol_from_filename("/x/y/infy.csv") == "INFY"
    assert symbol_from_filename("what is this.csv") is None


# --- malformed files: the right line, nothing stored -------------------------------------------

GOOD = kite_lines(five_minute_bars(date(2024, 1, 1), 1))  # 75 bars of 2024-01-01


def replace_line(lines, index, text):
    lines = list(lines)
    lines[index] = text
    return lines


MALFORMED = [
    # (case, header, data lines, "<line>: <expected text>")
    ("bad_time", KITE_HEADER, replace_line(GOOD, 2, "2024-13-01 09:25:00+05:30,1,2,0.5,1.5,10,0"),
     "4: time '2024-13-01 09:25:00+05:30' is not a valid date-time"),
    ("high_below_close", KITE_HEADER,
     replace_line(GOOD, 55, "2024-01-01 13:50:00+05:30,1290.0,1290.5,1289.0,1291.0,10,0"),
     "57: high 1290.5 is below close 1291.0"),
    ("low_above_open", KITE_HEADER,
     replace_line(GOOD, 9, "2024-01-01 10:00:00+05:30,1000.0,1002.0,1000.5,1001.0,10,0"),
     "11: low 1000.5 is above open 1000.0"),
    ("negative_volume", KITE_HEADER,
     replace_line(GOOD, 4, "2024-01-01 09:35:00+05:30,1000.0,1002.0,999.0,1001.0,-5,0"),
     "6: volume -5 is negative"),
    ("fractional_volume", KITE_HEADER,
     replace_line(GOOD, 4, "2024-01-01 09:35:00+05:30,1000.0,1002.0,999.0,1001.0,12.5,0"),
     "6: volume 12.5 is not a whole number"),
    ("duplicate_time", KITE_HEADER, GOOD[:10] + [GOOD[9]] + GOOD[10:],
     "12: duplicate time 2024-01-01 10:00 IST (also on line 11)"),
    ("non_numeric_price", KITE_HEADER,
     replace_line(GOOD, 20, "2024-01-01 10:55:00+05:30,abc,1002.0,999.0,1001.0,10,0"),
     "22: open 'abc' is not a number"),
    ("nan_close", KITE_HEADER,
     replace_line(GOOD, 30, "2024-01-01 11:45:00+05:30,1000.0,1002.0,999.0,nan,10,0"),
     "32: close nan is not a finite number"),
    ("zero_low", KITE_HEADER,
     replace_line(GOOD, 30, "2024-01-01 11:45:00+05:30,1000.0,1002.0,0,1001.0,10,0"),
     "32: low 0.0 must be above 0"),
    ("wrong_column_count", KITE_HEADER,
     replace_line(GOOD, 40, "2024-01-01 12:35:00+05:30,1000.0,1002.0,999.0,1001.0"),
     "42: expected 7 columns, found 5"),
    ("misaligned_5m_bar", KITE_HEADER,
     replace_line(GOOD, 1, "2024-01-01 09:22:00+05:30,1000.0,1002.0,999.0,1001.0,10,0"),
     "3: 5m bar at 2024-01-01 09:22 IST is not on the 5-minute grid from 09:15 IST"),
    ("outside_session", KITE_HEADER,
     GOOD + ["2024-01-01 15:30:00+05:30,1000.0,1002.0,999.0,1001.0,10,0"],
     "77: bar at 2024-01-01 15:30 IST is outside the 09:15–15:30 IST session"),
    ("missing_column", "timestamp,open,high,close,volume",
     [",".join(x for i, x in enumerate(line.split(",")) if i not in (3, 6)) for line in GOOD],
     "1: unknown layout: header 'timestamp,open,high,close,volume' lacks column(s) low"),
    ("unknown_layout", "a;b;c", ["1;2;3"], "1: unknown layout: header 'a;b;c' lacks column(s)"),
    ("no_header", None, GOOD, "1: no header row; give the column order"),
    ("header_only", KITE_HEADER, [], "2: no candle rows in the file"),
    ("yfinance_bad_row",
     "Price,Close,High,Low,Open,Volume\nTicker,INFY.NS,INFY.NS,INFY.NS,INFY.NS,INFY.NS\n"
     "Datetime,,,,,",
     ["2026-05-20 03:45:00+00:00,1319.0,1319.9000244140625,1312.699951171875,1317.0,0",
      "2026-05-20 03:50:00+00:00,1322.0999755859375,1321.300048828125,1317.8,1319.0,175225.0"],
     "5: high 1321.3 is below close 1322.1"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "header", "lines", "expected"), MALFORMED, ids=lambda v: v)
def test_a_malformed_file_is_refused_with_its_line_and_nothing_is_stored(
    store, tmp_path, case, header, lines, expected
):
    path = write(tmp_path / f"INFY_{case}.csv", header, lines)
    with pytest.raises(CsvImportError) as refused:
        import_csv(store, path)
    assert any(f"INFY_{case}.csv:{expected}" in error for error in refused.value.errors), (
        refused.value.errors
    )
    assert store.coverage() == []


def test_an_empty_file_is_refused_at_line_1(store, tmp_path):
    path = tmp_path / "INFY_empty.csv"
    path.write_text("")
    with pytest.raises(CsvImportError) as refused:
        import_csv(store, path)
    assert refused.value.errors == ["INFY_empty.csv:1: empty file: no header and no rows"]


def test_a_bad_row_after_a_thousand_good_ones_stores_nothing(store, tmp_path):
    bars = five_minute_bars(date(2024, 1, 1), 14)  # 1,050 bars
    lines = kite_lines(bars)
    t, o, h, lo, c, v = bars[1000]
    lines[1000] = f"{t.astimezone(IST).isoformat(sep=' ')},{o},{c - 1},{lo},{c},{v},0"
    path = write(tmp_path / "INFY_late.csv", KITE_HEADER, lines)
    with pytest.raises(CsvImportError) as refused:
        import_csv(store, path)
    assert refused.value.errors == [
        f"INFY_late.csv:1002: high {c - 1} is below open {o}",
        f"INFY_late.csv:1002: high {c - 1} is below close {c}",
    ]
    assert store.first_last("INFY", Timeframe.M5) is None


def test_every_problem_is_listed_up_to_the_cap_with_a_count_of_the_rest(store, tmp_path):
    lines = [
        f"{line.rsplit(',', 2)[0]},-1,0" if i % 2 else line for i, line in enumerate(GOOD)
    ]  # every other volume negative: 37 problems
    lines += ["garbage"] * 30
    path = write(tmp_path / "INFY_many.csv", KITE_HEADER, lines)
    with pytest.raises(CsvImportError) as refused:
        import_csv(store, path)
    errors = refused.value.errors
    assert len(errors) == MAX_ERRORS + 1
    assert errors[0] == "INFY_many.csv:3: volume -1 is negative"
    assert errors[-1] == f"INFY_many.csv: … and {37 + 30 - MAX_ERRORS} more problem(s)"
    assert "INFY_many.csv" in str(refused.value)


def test_import_many_stores_the_good_files_and_reports_the_bad_one(store, tmp_path):
    write(tmp_path / "INFY_ok.csv", KITE_HEADER, GOOD)
    write(tmp_path / "TCS_bad.csv", KITE_HEADER, replace_line(GOOD, 3, "x,1,1,1,1,1,0"))
    seen = []
    reports = import_many(
        store, [tmp_path], progress=lambda done, total: seen.append((done, total))
    )
    assert [(r.file, r.ok) for r in reports] == [("INFY_ok.csv", True), ("TCS_bad.csv", False)]
    assert reports[1].errors == ["TCS_bad.csv:5: time 'x' is not a valid date-time"]
    assert store.first_last("TCS", Timeframe.M5) is None
    assert len(store.candles("INFY", Timeframe.M5)) == 75
    assert seen[-1][0] == seen[-1][1] and all(
        a <= b for (a, _), (b, _) in zip(seen, seen[1:], strict=False)
    )


# --- layouts by options ----------------------------------------------------------------------


def test_no_header_with_a_column_order_custom_date_format_and_naive_ist_times(store, tmp_path):
    lines = [
        "1500;02/01/2024 09:15;100.0;101.0;99.5;100.5",
        "2300;02/01/2024 09:30;100.5;102.0;100.0;101.5",
        "1800;02/01/2024 09:45;101.5;101.5;100.0;100.25",
    ]
    path = write(tmp_path / "export.txt", None, lines)
    options = ImportOptions(
        symbol="SBIN",
        header=False,
        column_order=["volume", "ts", "open", "high", "low", "close"],
        date_format="%d/%m/%Y %H:%M",
        delimiter=";",
    )
    report = import_csv(store, path, options)
    assert (report.symbol, report.timeframe, report.rows) == ("SBIN", Timeframe.M15, 3)
    candles = store.candles("SBIN", Timeframe.M15)
    assert candles[0].ts == datetime(2024, 1, 2, 3, 45, tzinfo=UTC)  # 09:15 IST
    assert (candles[2].close, candles[2].volume) == (100.25, 1800)


def test_a_column_mapping_by_header_names_with_split_date_and_time(store, tmp_path):
    lines = ["2024-01-02,09:15,1,100,101,99,100.5,5", "2024-01-02,09:16,1,100.5,101,100,100.75,7"]
    path = write(tmp_path / "x.csv", "Date,Time,Junk,O,H,L,C,Vol", lines)
    options = ImportOptions(
        symbol="ITC",
        timeframe=Timeframe.M1,
        columns={"date": "Date", "time": "Time", "open": "O", "high": "H", "low": "L",
                 "close": "C", "volume": "Vol"},
    )  # fmt: skip
    report = import_csv(store, path, options)
    assert (report.symbol, report.rows, report.first) == (
        "ITC",
        2,
        datetime(2024, 1, 2, 3, 45, tzinfo=UTC),
    )


def test_naive_times_in_another_zone_and_a_tick_size(store, tmp_path):
    lines = ["2024-01-02 03:45:00,100.01,101.02,99.49,100.52,10"]
    lines.append("2024-01-03 03:45:00,100.5,101.0,100.0,100.75,10")
    path = write(tmp_path / "HDFCBANK.csv", "Datetime,Open,High,Low,Close,Volume", lines)
    report = import_csv(store, path, ImportOptions(tz="UTC", tick_size=0.05, timeframe="1d"))
    assert report.timeframe is Timeframe.D1
    first = store.candles("HDFCBANK", Timeframe.D1)[0]
    # A daily bar is stored at 00:00 IST of its IST date.
    assert first.ts == datetime(2024, 1, 1, 18, 30, tzinfo=UTC)
    assert (first.open, first.high, first.low, first.close) == (100.0, 101.0, 99.5, 100.5)


def test_a_column_order_refers_to_fields_only(store, tmp_path):
    path = write(tmp_path / "INFY.csv", None, ["2024-01-02,1,2,0.5,1.5,1"])
    with pytest.raises(CsvImportError) as refused:
        import_csv(store, path, ImportOptions(header=False, column_order=["when", "open"]))
    assert "unknown field(s) when" in refused.value.errors[0]


def test_daily_rows_stamped_at_the_close_are_stored_at_midnight_ist_and_unsorted_rows_sort(
    store, tmp_path
):
    lines = [
        "2024-01-03 15:30:00+05:30,102,103,101,102.5,100,0",
        "2024-01-02 15:30:00+05:30,101,102,100,101.5,100,0",
        "2024-01-04 15:30:00+05:30,103,104,102,103.5,100,0",
    ]
    report = import_csv(store, write(tmp_path / "LT.csv", KITE_HEADER, lines))
    assert report.timeframe is Timeframe.D1
    assert [c.ts.astimezone(IST).isoformat() for c in store.candles("LT", Timeframe.D1)] == [
        "2024-01-02T00:00:00+05:30",
        "2024-01-03T00:00:00+05:30",
        "2024-01-04T00:00:00+05:30",
    ]


# --- EMAs across imports ---------------------------------------------------------------------


def split_file(tmp_path, bars, at):
    first = write(tmp_path / "INFY_a.csv", KITE_HEADER, kite_lines(bars[:at]))
    second = write(tmp_path / "INFY_b.csv", KITE_HEADER, kite_lines(bars[at:]))
    return first, second


def test_an_appended_import_continues_the_stored_emas_exactly(any_store, tmp_path):
    bars = five_minute_bars(date(2024, 1, 1), 8)  # 600 bars
    first, second = split_file(tmp_path, bars, 400)
    import_csv(any_store, first)
    report = import_csv(any_store, second)
    assert report.restated == 0
    assert_emas_are_batch(any_store, "INFY", Timeframe.M5, [b[4] for b in bars])


def test_an_append_to_a_short_series_replays_its_closes(store, tmp_path):
    bars = five_minute_bars(date(2024, 1, 1), 4)  # 300 bars
    first, second = split_file(tmp_path, bars, 120)  # EMA 200 not yet seeded after 120
    import_csv(store, first)
    import_csv(store, second)
    assert_emas_are_batch(store, "INFY", Timeframe.M5, [b[4] for b in bars])


def test_an_import_before_stored_candles_recomputes_their_emas(any_store, tmp_path):
    bars = five_minute_bars(date(2024, 1, 1), 8)
    first, second = split_file(tmp_path, bars, 300)
    import_csv(any_store, second)
    report = import_csv(any_store, first)
    assert report.restated == 300
    assert_emas_are_batch(any_store, "INFY", Timeframe.M5, [b[4] for b in bars])


def test_an_overlapping_import_with_changed_closes_recomputes_what_follows(store, tmp_path):
    bars = five_minute_bars(date(2024, 1, 1), 8)
    import_csv(store, write(tmp_path / "INFY.csv", KITE_HEADER, kite_lines(bars)))
    changed = [
        (t, o, max(h, c + 1), lo, c + 1, v) if 250 <= i < 260 else (t, o, h, lo, c, v)
        for i, (t, o, h, lo, c, v) in enumerate(bars)
    ]
    fix = write(tmp_path / "INFY_fix.csv", KITE_HEADER, kite_lines(changed[240:270]))
    report = import_csv(store, fix)
    assert (report.rows, report.restated) == (30, 600 - 270)
    assert_emas_are_batch(store, "INFY", Timeframe.M5, [b[4] for b in changed])


def test_progress_runs_up_to_the_total(store, tmp_path):
    bars = five_minute_bars(date(2024, 1, 1), 250)  # 18,750 rows: one mid-parse call at least
    path = write(tmp_path / "INFY.csv", KITE_HEADER, kite_lines(bars))
    seen = []
    import_csv(store, path, progress=lambda done, total: seen.append((done, total)))
    assert len(seen) >= 2
    assert seen[-1] == (18_751, 18_751)  # header + rows
    assert all(a <= b for (a, _), (b, _) in zip(seen, seen[1:], strict=False))


def test_quoted_fields_are_read_with_the_csv_module_and_keep_their_lines(store, tmp_path):
    rows = [line.split(",") for line in GOOD[:5]]
    rows[2][1] = "x" + rows[2][1]  # the open of line 4
    lines = [",".join(f'"{field}"' for field in row) for row in rows]
    path = write(tmp_path / "INFY_quoted.csv", KITE_HEADER, lines)
    with pytest.raises(CsvImportError) as refused:
        import_csv(store, path)
    assert refused.value.errors == [
        f"INFY_quoted.csv:4: open 'x{GOOD[2].split(',')[1]}' is not a number"
    ]
    path = write(tmp_path / "INFY_quoted.csv", KITE_HEADER, lines[:2] + lines[3:])
    assert import_csv(store, path, ImportOptions(timeframe=Timeframe.M5)).rows == 4


def test_a_file_that_is_not_utf8_is_refused_at_the_line_of_the_bad_byte(store, tmp_path):
    path = tmp_path / "INFY_latin1.csv"
    path.write_bytes(("\n".join([KITE_HEADER, *GOOD[:3]]) + "\n").encode() + b"caf\xe9\n")
    with pytest.raises(CsvImportError) as refused:
        import_csv(store, path)
    assert refused.value.errors[0].startswith("INFY_latin1.csv:5: not UTF-8 text")


def test_bars_of_a_special_session_on_a_closed_day_are_kept_with_a_note(store, tmp_path):
    saturday = [  # 2024-01-20 was a Saturday session; Muhurat 2023-11-12 ran in the evening
        "2024-01-20 09:15:00+05:30,100,101,99,100.5,10,0",
        "2024-01-20 09:20:00+05:30,100.5,101,100,100.75,10,0",
        "2024-01-22 09:15:00+05:30,100.5,101,100,100.75,10,0",  # a declared holiday
    ]
    report = import_csv(store, write(tmp_path / "SBIN.csv", KITE_HEADER, saturday))
    assert report.rows == 3
    assert report.notes == [
        "kept bars on 2 day(s) the NSE calendar lists as closed (special sessions such as "
        "Muhurat trading): 2024-01-20, 2024-01-22"
    ]
