"""MarketCalendar: NSE trading days, the 09:15–15:30 IST session and bar boundaries in UTC."""

from __future__ import annotations

import csv
import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from Webapp.market.calendar import HOLIDAYS_CSV, IST, MarketCalendar, load_holidays
from Webapp.market.candle import Timeframe

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DAILY = SHARED_DATA / "nse-daily-2020-2025"
FIVE_MIN = SHARED_DATA / "nse-5min-2026"
# Diwali Laxmi Pujan: a holiday for the regular session; the daily data has a row
# for each because it records that evening's Muhurat session (support_files/nse_holidays.md).
MUHURAT_ON_A_WEEKDAY_HOLIDAY = {date(2021, 11, 4), date(2022, 10, 24), date(2024, 11, 1)}

NSE = MarketCalendar.nse()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ist(*args: int) -> datetime:
    return datetime(*args, tzinfo=IST)


def weekdays(start: date, end: date) -> list[date]:
    days, d = [], start
    while d <= end:
        if d.weekday() < 5:
            days.append(d)
        d += timedelta(days=1)
    return days


# --- the holiday list ---------------------------------------------------------------


def test_holiday_file_is_sorted_weekdays_covering_2020_to_2026():
    holidays = load_holidays()

    assert list(holidays) == sorted(holidays)
    assert all(d.weekday() < 5 for d in holidays)
    assert {d.year for d in holidays} == set(range(2020, 2027))
    assert NSE.covers == (date(2020, 1, 1), date(2026, 12, 31))
    assert NSE.holidays == frozenset(holidays)
    assert MarketCalendar.nse() is NSE


@pytest.mark.parametrize(
    ("day", "trades"),
    [
        (date(2026, 6, 19), True),  # a Friday
        (date(2026, 6, 20), False),  # Saturday
        (date(2026, 6, 21), False),  # Sunday
        (date(2026, 5, 28), False),  # Bakri Id
        (date(2024, 1, 22), False),  # special holiday
        (date(2024, 11, 1), False),  # Diwali: only a Muhurat session, not modelled
        (date(2025, 2, 1), False),  # Saturday budget session, not modelled
        (date(2026, 1, 15), False),  # Maharashtra municipal elections
    ],
)
def test_is_trading_day(day, trades):
    assert NSE.is_trading_day(day) is trades


def test_a_day_outside_the_holiday_list_warns_once_per_year(caplog):
    calendar = MarketCalendar([], covers=(date(2020, 1, 1), date(2026, 12, 31)))

    with caplog.at_level(logging.WARNING, logger="Webapp.market.calendar"):
        assert calendar.is_trading_day(date(2027, 1, 4))
        assert calendar.is_trading_day(date(2027, 1, 5))
        assert calendar.is_trading_day(date(2026, 1, 5))

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "2027" in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("day,name\n2026-01-26,Republic Day\n", ":1: expected header"),
        ("date,description\n2026-01-26,Republic Day\n2026-01-31,A Saturday\n", ":3: "),
        ("date,description\n2026-03-03,Holi\n2026-01-26,Republic Day\n", ":3: "),
        ("date,description\n2026-01-26,Republic Day\n2026-01-26,Again\n", ":3: "),
        ("date,description\n26/01/2026,Republic Day\n", ":2: bad date"),
        ("date,description\n2026-01-26\n", ":2: expected 2 fields"),
    ],
)
def test_a_bad_holiday_file_is_refused_with_its_line(tmp_path, content, message):
    path = tmp_path / "holidays.csv"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(ValueError, match=message):
        load_holidays(path)


# --- days and sessions ------------------------------------------------------------------


def test_trading_days_are_inclusive_and_skip_weekends_and_holidays():
    days = NSE.trading_days(date(2026, 5, 20), date(2026, 6, 19))

    assert len(days) == 22
    assert days[0] == date(2026, 5, 20) and days[-1] == date(2026, 6, 19)
    assert date(2026, 5, 28) not in days
    assert NSE.trading_days(date(2026, 6, 19), date(2026, 6, 19)) == [date(2026, 6, 19)]
    assert NSE.trading_days(date(2026, 6, 20), date(2026, 6, 21)) == []
    assert NSE.trading_days(date(2026, 6, 19), date(2026, 6, 18)) == []


def test_session_bounds_are_0915_and_1530_ist_in_utc():
    open_, close = NSE.session_bounds(date(2026, 6, 19))

    assert (open_, close) == (utc(2026, 6, 19, 3, 45), utc(2026, 6, 19, 10, 0))
    assert open_.tzinfo is UTC and close.tzinfo is UTC


def test_session_bounds_of_a_holiday_is_an_error():
    with pytest.raises(ValueError, match="2026-05-28 is not a trading day"):
        NSE.session_bounds(date(2026, 5, 28))


def test_session_date_is_the_ist_date():
    assert NSE.session_date(utc(2026, 6, 18, 18, 29, 59)) == date(2026, 6, 18)
    assert NSE.session_date(utc(2026, 6, 18, 18, 30)) == date(2026, 6, 19)
    with pytest.raises(ValueError, match="naive"):
        NSE.session_date(datetime(2026, 6, 19, 10, 0))


@pytest.mark.parametrize(
    ("ts", "inside"),
    [
        (ist(2026, 6, 19, 9, 14, 59), False),
        (ist(2026, 6, 19, 9, 15), True),
        (datetime(2026, 6, 19, 15, 29, 59, 999_999, tzinfo=IST), True),
        (ist(2026, 6, 19, 15, 30), False),
        (ist(2026, 5, 28, 11, 0), False),  # holiday
        (ist(2026, 6, 20, 11, 0), False),  # Saturday
    ],
)
def test_in_session_is_open_inclusive_close_exclusive(ts, inside):
    assert NSE.in_session(ts) is inside
    assert NSE.in_session(ts.astimezone(UTC)) is inside


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (ist(2026, 6, 19, 8, 0), ist(2026, 6, 19, 9, 15)),  # before the open: today
        (ist(2026, 6, 19, 9, 15), ist(2026, 6, 22, 9, 15)),  # strictly after: Monday
        (ist(2026, 6, 19, 12, 0), ist(2026, 6, 22, 9, 15)),  # Friday in session: Monday
        (ist(2026, 5, 27, 16, 0), ist(2026, 5, 29, 9, 15)),  # across Bakri Id
        (ist(2026, 6, 20, 10, 0), ist(2026, 6, 22, 9, 15)),  # from a Saturday
    ],
)
def test_next_session_open(after, expected):
    found = NSE.next_session_open(after)

    assert found == expected
    assert found.tzinfo is UTC


# --- bars ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "timeframe", "start"),
    [
        (ist(2026, 6, 19, 9, 15), Timeframe.M1, ist(2026, 6, 19, 9, 15)),
        (ist(2026, 6, 19, 9, 15, 59), Timeframe.M1, ist(2026, 6, 19, 9, 15)),
        (ist(2026, 6, 19, 9, 29, 59), Timeframe.M15, ist(2026, 6, 19, 9, 15)),
        (ist(2026, 6, 19, 9, 30), Timeframe.M15, ist(2026, 6, 19, 9, 30)),
        (ist(2026, 6, 19, 15, 29, 59), Timeframe.M5, ist(2026, 6, 19, 15, 25)),
        (ist(2026, 6, 19, 15, 29, 59), Timeframe.M15, ist(2026, 6, 19, 15, 15)),
        (ist(2026, 6, 19, 10, 14), Timeframe.H1, ist(2026, 6, 19, 9, 15)),
        (ist(2026, 6, 19, 15, 20), Timeframe.H1, ist(2026, 6, 19, 15, 15)),
        (ist(2026, 6, 19, 15, 29), Timeframe.M10, ist(2026, 6, 19, 15, 25)),
        (ist(2026, 6, 19, 12, 0), Timeframe.D1, ist(2026, 6, 19, 0, 0)),
        (ist(2026, 6, 20, 12, 0), Timeframe.D1, ist(2026, 6, 20, 0, 0)),
    ],
)
def test_bar_start_is_aligned_to_the_session_open_and_in_utc(ts, timeframe, start):
    found = NSE.bar_start(ts.astimezone(UTC), timeframe)

    assert found == start
    assert found.tzinfo is UTC


def test_a_daily_bar_starts_at_ist_midnight_which_is_the_previous_utc_day():
    assert NSE.bar_start(utc(2026, 6, 19, 4, 0), Timeframe.D1) == utc(2026, 6, 18, 18, 30)


@pytest.mark.parametrize(
    "ts", [ist(2026, 6, 19, 9, 14, 59), ist(2026, 6, 19, 15, 30), ist(2026, 5, 28, 11, 0)]
)
def test_intraday_bar_start_outside_the_session_is_an_error(ts):
    with pytest.raises(ValueError):
        NSE.bar_start(ts, Timeframe.M5)


def test_bar_end_is_cut_at_the_close_and_a_daily_bar_ends_at_the_close():
    assert NSE.bar_end(ist(2026, 6, 19, 9, 30), Timeframe.M15) == ist(2026, 6, 19, 9, 45)
    assert NSE.bar_end(ist(2026, 6, 19, 15, 15), Timeframe.H1) == ist(2026, 6, 19, 15, 30)
    assert NSE.bar_end(ist(2026, 6, 19, 0, 0), Timeframe.D1) == ist(2026, 6, 19, 15, 30)


@pytest.mark.parametrize(
    ("timeframe", "count", "last"),
    [
        (Timeframe.M1, 375, (15, 29)),
        (Timeframe.M3, 125, (15, 27)),
        (Timeframe.M5, 75, (15, 25)),
        (Timeframe.M10, 38, (15, 25)),
        (Timeframe.M15, 25, (15, 15)),
        (Timeframe.M30, 13, (15, 15)),
        (Timeframe.H1, 7, (15, 15)),
    ],
)
def test_expected_bars_of_a_session(timeframe, count, last):
    bars = NSE.expected_bars(date(2026, 6, 19), timeframe)

    assert len(bars) == count
    assert bars[0] == ist(2026, 6, 19, 9, 15)
    assert bars[-1] == ist(2026, 6, 19, *last)
    assert all(bar.tzinfo is UTC for bar in bars)
    assert all(NSE.bar_start(bar, timeframe) == bar for bar in bars)


def test_expected_bars_of_a_day_and_of_a_holiday():
    assert NSE.expected_bars(date(2026, 6, 19), Timeframe.D1) == [utc(2026, 6, 18, 18, 30)]
    assert NSE.expected_bars(date(2026, 5, 28), Timeframe.M5) == []
    assert NSE.expected_bars(date(2026, 6, 20), Timeframe.D1) == []


# --- against the real data in ../shared/data -------------------------------------------


def _need(folder: Path) -> None:
    if not folder.is_dir():
        pytest.skip(f"real NSE data not found at {folder} (see ../shared/data/README.md)")


def test_holidays_in_the_daily_data_range_are_exactly_the_weekdays_missing_from_all_files():
    _need(DAILY)
    files = sorted(DAILY.glob("*.csv"))
    assert len(files) == 50
    sessions_by_file = []
    for path in files:
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))[1:]
        sessions_by_file.append({date.fromisoformat(row[0][:10]) for row in rows})
    traded = set().union(*sessions_by_file)
    # Every file has every session of the union inside its own date range.
    for sessions in sessions_by_file:
        assert sessions == {d for d in traded if min(sessions) <= d <= max(sessions)}

    span = weekdays(date(2020, 10, 1), date(2025, 9, 30))
    missing = {d for d in span if d not in traded}
    listed = {d for d in NSE.holidays if span[0] <= d <= span[-1]}

    assert len(missing) == 69
    assert listed == missing | MUHURAT_ON_A_WEEKDAY_HOLIDAY
    assert NSE.trading_days(span[0], span[-1]) == sorted(
        d for d in traded if d.weekday() < 5 and d not in MUHURAT_ON_A_WEEKDAY_HOLIDAY
    )


def _five_minute_bar_starts(path: Path) -> list[datetime]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))[3:]  # yfinance: three header rows
    return [datetime.fromisoformat(row[0]) for row in rows]


def test_expected_bars_match_every_session_of_a_real_five_minute_file():
    _need(FIVE_MIN)
    starts = _five_minute_bar_starts(FIVE_MIN / "RELIANCE_5min.csv")
    sessions = sorted({NSE.session_date(ts) for ts in starts})

    assert len(sessions) == 22
    assert sessions == NSE.trading_days(date(2026, 5, 20), date(2026, 6, 19))
    expected = [bar for d in sessions for bar in NSE.expected_bars(d, Timeframe.M5)]
    assert starts == expected


def test_the_five_minute_files_all_skip_the_same_weekday_a_listed_holiday():
    _need(FIVE_MIN)
    files = sorted(FIVE_MIN.glob("*_5min.csv"))
    assert len(files) == 47
    traded = {NSE.session_date(ts) for ts in _five_minute_bar_starts(files[0])}
    for path in files[1:]:
        assert {NSE.session_date(ts) for ts in _five_minute_bar_starts(path)} == traded

    span = weekdays(date(2026, 5, 20), date(2026, 6, 19))
    assert {d for d in span if d not in traded} == {date(2026, 5, 28)}
    assert {d for d in NSE.holidays if span[0] <= d <= span[-1]} == {date(2026, 5, 28)}


def test_holidays_csv_path_is_in_support_files():
    assert HOLIDAYS_CSV.parts[-2:] == ("support_files", "nse_holidays.csv")
