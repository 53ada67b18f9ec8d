"""The column-at-a-time fast paths of CSV parsing and time checks give exactly what the row
loops give, and step aside (to the loops, which name each problem) for anything unusual."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest

from tests.conftest import SHARED_DATA
from Webapp.market import csv_rows
from Webapp.market.bars import Bars, _check_each_time, _closed_days_if_all_good, check_times
from Webapp.market.calendar import IST, MarketCalendar
from Webapp.market.candle import Timeframe
from Webapp.market.csv_layouts import ImportOptions, detect_layout, zone

CALENDAR = MarketCalendar.nse()
HEADER = "timestamp,open,high,low,close,volume,oi"
ROWS = [
    "2024-01-02 09:15:00+05:30,100.0,101.5,99.5,101.0,1200,0",
    "2024-01-02 09:20:00+05:30,101.0,102.0,100.5,101.5,900,0",
    "2024-01-02 09:25:00+05:30,101.5,101.5,100.0,100.25,0,0",
]


def both_ways(text: str, options: ImportOptions | None = None):
    """(fast path's Bars or None, the row loop's Bars and problems) for `text`."""
    options = options or ImportOptions()
    lines, head, numbered = csv_rows._rows(text, options.delimiter)
    layout = detect_layout(head, options)
    tz = zone(options.tz)
    fast = csv_rows._parse_columns(lines, layout, options.delimiter, options.date_format, tz)
    numbered = itertools.islice(numbered, layout.header_lines, None)
    slow = csv_rows._parse_rows(numbered, layout, options.date_format, tz, None, 0)
    return fast, slow


@pytest.mark.parametrize(
    "text",
    [
        "\n".join([HEADER, *ROWS]) + "\n",
        "\n".join([HEADER, *ROWS]),  # no final newline
        "\r\n".join([HEADER, *ROWS]) + "\r\n",
        "\n".join([HEADER, *(row.replace(",", ", ") for row in ROWS)]) + "\n",
        "\n".join([HEADER, *(row.replace("+05:30", "Z") for row in ROWS)]) + "\n",
        "\n".join([HEADER, *(row.replace(" ", "T") for row in ROWS)]) + "\n",
    ],
    ids=["plain", "no-final-newline", "crlf", "spaces", "utc-z", "iso-t"],
)
def test_the_fast_path_reads_clean_files_exactly_as_the_row_loop(text):
    fast, (slow, problems) = both_ways(text)
    assert problems == []
    assert fast == slow


def test_float32_artefacts_are_rounded_to_the_tick_as_the_row_loop_does():
    folder = SHARED_DATA / "nse-5min-2026"
    if not folder.is_dir():
        pytest.skip(f"real market data not found at {folder}")
    for path in sorted(folder.glob("*.csv"))[:5]:
        fast, (slow, problems) = both_ways(path.read_text())
        assert problems == [] and fast is not None
        assert fast == slow


@pytest.mark.parametrize(
    "change",
    [
        lambda rows: [*rows[:1], "", *rows[1:]],  # a blank line
        lambda rows: [*rows[:1], rows[1] + ",extra", *rows[2:]],  # a column too many
        lambda rows: [rows[0].replace("100.0", "x"), *rows[1:]],  # not a number
        lambda rows: [rows[0].replace("101.5", "98.0", 1), *rows[1:]],  # high below low
        lambda rows: [rows[0].replace(",1200,", ",-5,"), *rows[1:]],  # negative volume
        lambda rows: [rows[0].replace(",1200,", ",1200.0,"), *rows[1:]],  # yfinance's 1200.0
        lambda rows: [rows[0].replace("100.0", "nan"), *rows[1:]],
        lambda rows: [rows[0].replace("101.5", "inf", 1), *rows[1:]],
        lambda rows: [rows[0].replace("2024-01-02 09", "2024-13-02 09"), *rows[1:]],
    ],
    ids=["blank", "columns", "text", "ohlc", "volume", "float-volume", "nan", "inf", "time"],
)
def test_anything_unusual_goes_to_the_row_loop(change):
    fast, _ = both_ways("\n".join([HEADER, *change(ROWS)]) + "\n")
    assert fast is None


def test_a_time_format_or_a_zone_with_daylight_saving_goes_to_the_row_loop():
    text = "\n".join(["timestamp,open,high,low,close,volume", "2024-01-02 09:15,1,2,0.5,1.5,3"])
    assert both_ways(text, ImportOptions(date_format="%Y-%m-%d %H:%M"))[0] is None
    assert both_ways(text, ImportOptions(tz="Europe/London"))[0] is None
    assert both_ways(text, ImportOptions(tz="Asia/Kolkata"))[0] is not None


def bars_at(times: list[datetime]) -> Bars:
    n = len(times)
    return Bars(list(times), [1.0] * n, [1.0] * n, [1.0] * n, [1.0] * n, [0] * n, list(range(n)))


def session(day: date, step: int) -> list[datetime]:
    open_ = datetime(day.year, day.month, day.day, 9, 15, tzinfo=IST).astimezone(UTC)
    return [open_ + timedelta(minutes=m) for m in range(0, 375, step)]


@pytest.mark.parametrize(
    ("times", "timeframe"),
    [
        (session(date(2024, 1, 2), 5) + session(date(2024, 1, 3), 5), Timeframe.M5),
        (session(date(2024, 1, 20), 15), Timeframe.M15),  # a Saturday session: a closed day
        (session(date(2024, 1, 2), 60), Timeframe.H1),
        ([datetime(2024, 1, d, tzinfo=IST).astimezone(UTC) for d in (1, 2, 6)], Timeframe.D1),
    ],
)
def test_the_fast_time_check_agrees_with_the_loop_on_good_times(times, timeframe):
    errors = []
    closed = _check_each_time(bars_at(times), timeframe, CALENDAR, errors)
    assert errors == []
    assert _closed_days_if_all_good(times, timeframe, CALENDAR) == closed


@pytest.mark.parametrize(
    ("times", "timeframe"),
    [
        (session(date(2024, 1, 2), 5)[::-1], Timeframe.M5),  # unsorted
        (session(date(2024, 1, 2), 5)[:3] * 2, Timeframe.M5),  # duplicates
        ([t + timedelta(seconds=30) for t in session(date(2024, 1, 2), 5)], Timeframe.M5),
        ([t + timedelta(minutes=1) for t in session(date(2024, 1, 2), 5)], Timeframe.M5),
        ([t - timedelta(minutes=15) for t in session(date(2024, 1, 2), 5)], Timeframe.M5),
        ([datetime(2024, 1, 2, 15, 30, tzinfo=IST).astimezone(UTC)], Timeframe.D1),
    ],
    ids=["unsorted", "duplicates", "seconds", "off-grid", "before-open", "daily-at-close"],
)
def test_the_fast_time_check_leaves_anything_else_to_the_loop(times, timeframe):
    assert _closed_days_if_all_good(times, timeframe, CALENDAR) is None
    check_times(bars_at(times), timeframe, CALENDAR)  # the loop copes (errors or fixes)
