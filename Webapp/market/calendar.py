"""NSE trading days, session hours and candle bar boundaries, all returned in UTC."""

from __future__ import annotations

import csv
import functools
import logging
import threading
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path

from Webapp.market.candle import Timeframe

_log = logging.getLogger(__name__)

# India has kept one offset with no daylight saving since 1945, so a fixed zone is exact
# and needs no tz database.
IST = timezone(timedelta(hours=5, minutes=30), "IST")
SESSION_OPEN = time(9, 15)
SESSION_CLOSE = time(15, 30)

HOLIDAYS_CSV = Path(__file__).resolve().parents[2] / "support_files" / "nse_holidays.csv"

_ONE_DAY = timedelta(days=1)
# A search for the next session gives up after this long: no exchange closes for a year.
_MAX_CLOSED_DAYS = 366


def _require_aware(ts: datetime) -> None:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"timestamp must be timezone-aware, got naive {ts!r}")


class MarketCalendar:
    """Trading days and the regular session (09:15–15:30 IST) of one exchange.

    A trading day is a weekday that is not a listed holiday. Special sessions on
    other days (Muhurat trading, a Saturday budget session) are not modelled:
    those days count as closed (support_files/nse_holidays.md).

    Intraday bars are aligned to the session open: a 15m bar starts at 09:15,
    09:30, … and the last bar of a length that does not divide the 375-minute
    session is cut short at 15:30 (the 60m bars are 09:15, 10:15, …, 15:15 and
    the last one lasts 15 minutes). A 1d bar starts at the IST date's 00:00.

    `covers` is the date range over which the holiday list is known to be
    complete; asking about a day outside it logs a warning once per year and
    treats every weekday as a trading day.
    """

    def __init__(
        self, holidays: Iterable[date], *, covers: tuple[date, date] | None = None
    ) -> None:
        self.holidays: frozenset[date] = frozenset(holidays)
        self.covers = covers
        self._warned_years: set[int] = set()
        self._warn_lock = threading.Lock()

    @classmethod
    def nse(cls) -> MarketCalendar:
        """The NSE calendar from support_files/nse_holidays.csv, read once per process."""
        return _nse_calendar()

    # --- days ---------------------------------------------------------------

    def is_trading_day(self, d: date) -> bool:
        """True when `d` is a weekday and not a holiday."""
        if self.covers is not None and not self.covers[0] <= d <= self.covers[1]:
            self._warn_uncovered(d)
        return d.weekday() < 5 and d not in self.holidays

    def trading_days(self, start: date, end: date) -> list[date]:
        """Every trading day from `start` to `end`, both included, in order."""
        days: list[date] = []
        d = start
        while d <= end:
            if self.is_trading_day(d):
                days.append(d)
            d += _ONE_DAY
        return days

    def session_date(self, ts: datetime) -> date:
        """The IST calendar date of `ts`, which must be timezone-aware."""
        _require_aware(ts)
        return ts.astimezone(IST).date()

    # --- the session --------------------------------------------------------

    def session_bounds(self, d: date) -> tuple[datetime, datetime]:
        """(open, close) of the regular session on `d` as UTC datetimes (09:15 and 15:30 IST).

        Raises ValueError when `d` is not a trading day.
        """
        if not self.is_trading_day(d):
            raise ValueError(f"{d.isoformat()} is not a trading day")
        return (
            datetime.combine(d, SESSION_OPEN, IST).astimezone(UTC),
            datetime.combine(d, SESSION_CLOSE, IST).astimezone(UTC),
        )

    def in_session(self, ts: datetime) -> bool:
        """True when `ts` lies in a regular session: open ≤ ts < close on a trading day.

        A trade stamped exactly 15:30:00 is outside (it belongs to no 1m bar).
        """
        d = self.session_date(ts)
        if not self.is_trading_day(d):
            return False
        open_, close = self.session_bounds(d)
        return open_ <= ts < close

    def next_session_open(self, after: datetime) -> datetime:
        """The first session open strictly later than `after`, in UTC."""
        d = self.session_date(after)
        for _ in range(_MAX_CLOSED_DAYS):
            if self.is_trading_day(d):
                open_ = self.session_bounds(d)[0]
                if open_ > after:
                    return open_
            d += _ONE_DAY
        raise ValueError(f"no trading day within {_MAX_CLOSED_DAYS} days after {after!r}")

    # --- bars ---------------------------------------------------------------

    def bar_start(self, ts: datetime, timeframe: Timeframe) -> datetime:
        """UTC start of the `timeframe` bar that contains `ts`.

        For 1d this is 00:00 IST of ts's IST date, whatever the time of day (use
        is_trading_day to know whether that date has a session). For intraday
        timeframes `ts` must be in session, else ValueError: outside it no bar exists.
        """
        d = self.session_date(ts)
        if timeframe is Timeframe.D1:
            return datetime.combine(d, time(0), IST).astimezone(UTC)
        if not self.is_trading_day(d):
            raise ValueError(f"{ts!r} is on {d.isoformat()}, which is not a trading day")
        open_, close = self.session_bounds(d)
        if not open_ <= ts < close:
            raise ValueError(f"{ts!r} is outside the session of {d.isoformat()}")
        length = timeframe.length
        return open_ + ((ts - open_) // length) * length

    def bar_end(self, start: datetime, timeframe: Timeframe) -> datetime:
        """When the bar starting at `start` closes: start + length, cut at the session close.

        A 1d bar closes at its session's close (15:30 IST), not at midnight.
        """
        d = self.session_date(start)
        close = self.session_bounds(d)[1]
        if timeframe is Timeframe.D1:
            return close
        return min(start + timeframe.length, close)

    def expected_bars(self, d: date, timeframe: Timeframe) -> list[datetime]:
        """UTC starts of every bar of the session on `d`; [] when `d` is not a trading day."""
        if not self.is_trading_day(d):
            return []
        if timeframe is Timeframe.D1:
            return [datetime.combine(d, time(0), IST).astimezone(UTC)]
        open_, close = self.session_bounds(d)
        length = timeframe.length
        starts: list[datetime] = []
        start = open_
        while start < close:
            starts.append(start)
            start += length
        return starts

    # --- internals ------------------------------------------------------------

    def _warn_uncovered(self, d: date) -> None:
        with self._warn_lock:
            if d.year in self._warned_years:
                return
            self._warned_years.add(d.year)
        _log.warning(
            "%s is outside the holiday list (%s to %s): assuming every weekday of %d trades; "
            "add that year's holidays to %s",
            d.isoformat(),
            self.covers[0].isoformat(),  # type: ignore[index]
            self.covers[1].isoformat(),  # type: ignore[index]
            d.year,
            HOLIDAYS_CSV.name,
        )


class _EveryDayTrades(MarketCalendar):
    """Session hours without holidays: a stored candle proves its day traded (a Muhurat
    session, a year beyond the holiday list), so what reads stored candles never refuses one."""

    def is_trading_day(self, d: date) -> bool:
        return True


# The session grid alone: 09:15–15:30 IST bars on any date, whatever the holiday list.
SESSION_HOURS: MarketCalendar = _EveryDayTrades(())


def load_holidays(path: Path = HOLIDAYS_CSV) -> dict[date, str]:
    """Holidays from a `date,description` CSV, checked: ISO dates, weekdays, sorted, unique.

    Raises ValueError naming the file and line of the first bad row.
    """
    holidays: dict[date, str] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header != ["date", "description"]:
            raise ValueError(f"{path}:1: expected header 'date,description', got {header!r}")
        previous: date | None = None
        for line, row in enumerate(reader, start=2):
            if len(row) != 2:
                raise ValueError(f"{path}:{line}: expected 2 fields, got {len(row)}")
            try:
                day = date.fromisoformat(row[0])
            except ValueError as exc:
                raise ValueError(f"{path}:{line}: bad date {row[0]!r}") from exc
            if day.weekday() >= 5:
                raise ValueError(f"{path}:{line}: {day} is a weekend day, which is closed anyway")
            if previous is not None and day <= previous:
                raise ValueError(f"{path}:{line}: {day} is not after {previous} (keep it sorted)")
            holidays[day] = row[1]
            previous = day
    return holidays


@functools.cache
def _nse_calendar() -> MarketCalendar:
    holidays = load_holidays(HOLIDAYS_CSV)
    first, last = min(holidays), max(holidays)
    return MarketCalendar(holidays, covers=(date(first.year, 1, 1), date(last.year, 12, 31)))
