"""Fetch candles from Kite's historical API: chunked, rate limited, resumable, stored with EMAs.

The official client's `KiteConnect.historical_data(token, from, to, interval)` answers
at most one window per request (60 days of minute candles ... 2000 days of daily
ones), and Kite allows 3 historical requests a second. `fetch_history` splits the
range into windows, skips windows whose bars (per the NSE calendar) are all stored
already, and checks and stores each window in its own transaction with the same
functions as the CSV import, so an interrupted fetch keeps what it stored and a
rerun resumes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time

import requests
from kiteconnect import exceptions as kite_errors

from Webapp.market.bar_store import store_bars
from Webapp.market.bars import Bars, check_prices, check_times, gc_paused
from Webapp.market.calendar import IST, SESSION_CLOSE, MarketCalendar
from Webapp.market.candle import Timeframe
from Webapp.market.instruments import InstrumentMap
from Webapp.market.ohlcv import InvalidCandles
from Webapp.ratelimit import Limiter, RateLimiter  # RateLimiter: also imported from here

Progress = Callable[[int, int], None]

# Timeframe -> Kite's interval name.
KITE_INTERVALS: dict[Timeframe, str] = {
    Timeframe.M1: "minute",
    Timeframe.M3: "3minute",
    Timeframe.M5: "5minute",
    Timeframe.M10: "10minute",
    Timeframe.M15: "15minute",
    Timeframe.M30: "30minute",
    Timeframe.H1: "60minute",
    Timeframe.D1: "day",
}
# The longest range Kite answers in one request, in days, per interval.
MAX_DAYS: dict[str, int] = {
    "minute": 60,
    "3minute": 100,
    "5minute": 100,
    "10minute": 100,
    "15minute": 200,
    "30minute": 200,
    "60minute": 400,
    "day": 2000,
}
REQUESTS_PER_SECOND = 3  # Kite's historical limit (Webapp.ratelimit.KITE_HISTORICAL_PER_SECOND)
# Failures worth another try: the request is a read, so repeating it is safe.
_RETRY_DELAYS_S = (1.0, 3.0)
_LAST_SECOND = clock_time(23, 59, 59)


class HistoryFetchError(Exception):
    """A request or its candles failed; the message names the symbol and date range.

    Chunks stored before the failure stay stored (`report` says what was done), so
    running the same fetch again resumes from the failed chunk.
    """

    def __init__(self, message: str, report: FetchReport, cause: BaseException | None = None):
        super().__init__(message)
        self.report = report
        self.cause = cause


@dataclass
class SymbolFetch:
    """One symbol's part of a fetch."""

    symbol: str
    chunks: int = 0  # windows of the range
    skipped: int = 0  # windows already stored in full
    requests: int = 0  # requests sent (retries included)
    rows: int = 0  # candles received and stored
    changed: int = 0  # rows the store inserted or changed
    first: datetime | None = None
    last: datetime | None = None


@dataclass
class FetchReport:
    timeframe: Timeframe
    start: date
    end: date
    symbols: list[SymbolFetch] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.symbols)

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.symbols)

    @property
    def skipped(self) -> int:
        return sum(s.skipped for s in self.symbols)


def chunk_ranges(start: date, end: date, timeframe: Timeframe) -> list[tuple[date, date]]:
    """[start, end] cut into Kite's windows for the timeframe's interval, both ends included."""
    if end < start:
        raise ValueError(f"the range ends ({end}) before it starts ({start})")
    days = MAX_DAYS[KITE_INTERVALS[timeframe]]
    chunks = []
    first = start
    while first <= end:
        last = min(end, first + timedelta(days=days - 1))
        chunks.append((first, last))
        first = last + timedelta(days=1)
    return chunks


def fetch_history(
    kite,
    store,
    instruments: InstrumentMap,
    symbols: Sequence[str],
    timeframe: Timeframe,
    start: date,
    end: date,
    progress: Progress | None = None,
    limiter: Limiter | None = None,
    calendar: MarketCalendar | None = None,
    *,
    exchange: str = "NSE",
    now: Callable[[], datetime] | None = None,
) -> FetchReport:
    """Fetch `symbols` from `start` to `end` (IST dates, both included) and store them.

    `kite` is a logged-in `kiteconnect.KiteConnect`. `limiter` defaults to a private
    3/s window; pass `KiteRateLimits.historical` to share one API key's allowance
    with a running KiteBroker. `progress(chunks_done,
    chunks_total)` is called after each window. Candles still forming at `now()` are
    not stored (Kite returns today's unfinished candle). Raises HistoryFetchError on
    the first failure (UnknownInstrument before any request for a symbol not in the
    list); everything stored until then stays.

    A window is skipped when every bar the calendar expects in it (and that has
    closed by now) is stored. Windows with bars Kite does not have (before a
    listing, during a suspension) are therefore requested again on every run:
    harmless, as storing is idempotent.
    """
    timeframe = Timeframe(timeframe)
    calendar = calendar or MarketCalendar.nse()
    limiter = limiter or RateLimiter(REQUESTS_PER_SECOND)
    now = now or (lambda: datetime.now(UTC))
    chunks = chunk_ranges(start, end, timeframe)
    tokens = {symbol: instruments.token(symbol, exchange) for symbol in symbols}
    report = FetchReport(timeframe, start, end)
    total, done = len(chunks) * len(tokens), 0
    for symbol, token in tokens.items():
        item = SymbolFetch(symbol, chunks=len(chunks))
        report.symbols.append(item)
        for first, last in chunks:
            _fetch_chunk(kite, store, calendar, limiter, report, item, token, first, last, now())
            done += 1
            if progress is not None:
                progress(done, total)
    return report


def _fetch_chunk(
    kite, store, calendar, limiter, report, item: SymbolFetch, token, first, last, now
) -> None:
    timeframe = report.timeframe
    symbol = item.symbol
    window_start = datetime.combine(first, clock_time(0), IST).astimezone(UTC)
    window_end = datetime.combine(last + timedelta(days=1), clock_time(0), IST).astimezone(UTC)
    expected = [
        bar
        for day in calendar.trading_days(first, last)
        for bar in calendar.expected_bars(day, timeframe)
        if _bar_end(bar, timeframe) <= now
    ]
    if expected and set(expected) <= store.stored_ts(symbol, timeframe, window_start, window_end):
        item.skipped += 1
        return
    where = f"{symbol} {timeframe} {first.isoformat()} to {last.isoformat()}"
    records = _request(kite, limiter, report, item, token, first, last, where)
    with gc_paused():
        bars, problems = _bars(records, where)
        notes: list[str] = []
        if bars.ts:
            problems.extend(
                f"{where}: candle {line}: {problem}"
                for line, problem in check_times(bars, timeframe, calendar, notes)
            )
        if problems:
            shown = problems[:20] + (
                [f"… and {len(problems) - 20} more"] if len(problems) > 20 else []
            )
            raise HistoryFetchError(
                f"{where}: Kite sent {len(problems)} bad candle(s), nothing of this window "
                "was stored:\n  " + "\n  ".join(shown),
                report,
            )
        _drop_unfinished(bars, timeframe, now)
        if not bars.ts:
            return
        try:
            changed, _ = store_bars(store, symbol, timeframe, bars)
        except InvalidCandles as exc:
            raise HistoryFetchError(f"{where}: {exc}", report, exc) from exc
    report.notes.extend(f"{symbol}: {note}" for note in notes)
    item.rows += len(bars)
    item.changed += changed
    item.first = min(item.first or bars.ts[0], bars.ts[0])
    item.last = max(item.last or bars.ts[-1], bars.ts[-1])


def _request(kite, limiter, report, item, token, first, last, where) -> list[dict]:
    """historical_data for one window, with a bounded retry of transient failures."""
    interval = KITE_INTERVALS[report.timeframe]
    from_date = datetime.combine(first, clock_time(0))  # naive: Kite reads IST
    to_date = datetime.combine(last, _LAST_SECOND)
    for attempt in range(len(_RETRY_DELAYS_S) + 1):
        limiter.acquire()
        item.requests += 1
        try:
            return kite.historical_data(token, from_date, to_date, interval)
        except Exception as exc:
            if attempt < len(_RETRY_DELAYS_S) and _transient(exc):
                limiter.sleep(_RETRY_DELAYS_S[attempt])
                continue
            raise HistoryFetchError(f"{where}: {_describe(exc)}", report, exc) from exc
    raise AssertionError("unreachable")


def _transient(exc: BaseException) -> bool:
    """Too many requests, Kite's backend unreachable, or the connection failed."""
    if getattr(exc, "code", None) == 429 or isinstance(exc, kite_errors.NetworkException):
        return True
    return isinstance(exc, requests.ConnectionError | requests.Timeout)


def _describe(exc: BaseException) -> str:
    """What failed, in words that say what to do; never includes credentials."""
    kind = type(exc).__name__
    status = getattr(exc, "code", None)
    detail = f"{kind}: {exc}" + (f" (HTTP {status})" if status else "")
    if isinstance(exc, kite_errors.TokenException):
        return (
            f"Kite refused the login: {detail}. The access token is invalid or has expired "
            "(tokens expire every morning); log in again and rerun, stored windows are kept"
        )
    if isinstance(exc, kite_errors.PermissionException):
        return f"Kite refused: {detail}. Does the app's subscription include historical data?"
    if isinstance(exc, kite_errors.InputException):
        return f"Kite rejected the request: {detail}"
    if isinstance(exc, kite_errors.KiteException):
        return f"Kite failed: {detail}; rerun to resume"
    return f"the request failed: {detail}; rerun to resume"


def _bars(records: list[dict], where: str) -> tuple[Bars, list[str]]:
    """Kite's records as checked Bars (`lines` = 1-based record numbers)."""
    bars = Bars()
    problems: list[str] = []
    for number, record in enumerate(records, 1):
        try:
            ts = record["date"]
            values = [float(record[key]) for key in ("open", "high", "low", "close", "volume")]
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"{where}: candle {number}: unreadable ({exc!r})")
            continue
        if not isinstance(ts, datetime) or ts.tzinfo is None:
            problems.append(f"{where}: candle {number}: time {ts!r} has no time zone")
            continue
        o, h, low, c, v = values
        row_problems = check_prices(o, h, low, c, v)
        if row_problems:
            problems.extend(f"{where}: candle {number}: {p}" for p in row_problems)
            continue
        bars.ts.append(ts.astimezone(UTC))
        bars.open.append(o)
        bars.high.append(h)
        bars.low.append(low)
        bars.close.append(c)
        bars.volume.append(int(v))
        bars.lines.append(number)
    return bars, problems


def _bar_end(start: datetime, timeframe: Timeframe) -> datetime:
    """When a bar is final: its length later, or at 15:30 IST for the day's last or daily bar."""
    session_close = datetime.combine(
        (start + timedelta(hours=5, minutes=30)).date(), SESSION_CLOSE, IST
    ).astimezone(UTC)
    if timeframe is Timeframe.D1:
        return session_close
    end = start + timeframe.length
    # A special session after the regular close (Muhurat trading) ends bar by bar.
    return end if start >= session_close else min(end, session_close)


def _drop_unfinished(bars: Bars, timeframe: Timeframe, now: datetime) -> None:
    """Remove bars still forming at `now` (they are sorted: only the tail can be)."""
    keep = len(bars.ts)
    while keep and _bar_end(bars.ts[keep - 1], timeframe) > now:
        keep -= 1
    if keep < len(bars.ts):
        for name in ("ts", "open", "high", "low", "close", "volume", "lines"):
            del getattr(bars, name)[keep:]
