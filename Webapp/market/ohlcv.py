"""The OHLCV store: candles on PostgreSQL (COPY bulk loads) or in a SQLite file, one API.

Rows are keyed by (symbol, timeframe, ts); `ts` is the candle's start. On
PostgreSQL it is a timestamptz; on SQLite it is INTEGER seconds since the Unix
epoch, UTC (see migrations/market/versions/0001_ohlcv.py). Either way every
method takes and returns aware datetimes, and times come back in UTC.

Writes are idempotent: writing a candle that is already stored unchanged
changes nothing, a changed one is updated, and a batch is stored whole or not
at all. Both write methods return how many rows they inserted or changed.
Reads go through the raw DBAPI cursor and build Candles directly: a year of
15-minute candles comes back in a few milliseconds.
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import chain, repeat
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from Webapp.market.calendar import IST, MarketCalendar
from Webapp.market.candle import Candle, CandleColumns, Timeframe
from Webapp.market.ohlcv_copy import COLUMNS, ON_CONFLICT, VALUES, copy_rows
from Webapp.market.ohlcv_rows import (
    InvalidCandles,
    Span,
    batch_spans,
    candle_pg_rows,
    candle_sqlite_rows,
    candles_from_rows,
    column_span,
    columns_from_rows,
    pg_rows,
    sqlite_rows,
    timeframe_texts,
)
from Webapp.storage.db import make_engine

# SQL text below is built from these constant names only (hence the noqa: S608);
# every value travels as a bound parameter.

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_fromtimestamp = datetime.fromtimestamp

_SELECT = "SELECT ts, " + ", ".join(VALUES) + " FROM ohlcv"  # noqa: S608
_TF_ORDER = {tf: i for i, tf in enumerate(Timeframe)}

_COLS = ", ".join(COLUMNS)
_UPSERT_PG = (
    f"INSERT INTO ohlcv AS t ({_COLS}) VALUES ({', '.join(['%s'] * 12)}) "  # noqa: S608
    + ON_CONFLICT
)
_UPSERT_SQLITE = (
    f"INSERT INTO ohlcv ({_COLS}) VALUES ({', '.join(['?'] * 12)}) "  # noqa: S608
    "ON CONFLICT (symbol, timeframe, ts) DO UPDATE SET "
    f"{', '.join(f'{c} = excluded.{c}' for c in VALUES)} "
    f"WHERE {' OR '.join(f'ohlcv.{c} IS NOT excluded.{c}' for c in VALUES)}"
)
_ANY_STORED_PG = (
    "SELECT EXISTS (SELECT 1 FROM unnest(%s::text[], %s::text[], %s::timestamptz[], "
    "%s::timestamptz[]) AS r(symbol, timeframe, first_ts, last_ts) WHERE EXISTS ("
    "SELECT 1 FROM ohlcv o WHERE o.symbol = r.symbol AND o.timeframe = r.timeframe "
    "AND o.ts BETWEEN r.first_ts AND r.last_ts))"
)
# Distinct symbols by skipping along the primary key: one index probe per symbol.
_SYMBOLS = (
    "WITH RECURSIVE s(symbol) AS (SELECT min(symbol) FROM ohlcv UNION ALL "
    "SELECT (SELECT min(symbol) FROM ohlcv WHERE symbol > s.symbol) FROM s "
    "WHERE s.symbol IS NOT NULL) SELECT symbol FROM s WHERE symbol IS NOT NULL"
)
# Each (symbol, timeframe)'s last candle before a time: index probes per pair, never a scan
# (a join back to ohlcv lets PostgreSQL choose a hash join over the whole table). The
# symbols' rows are put in for {symbols}, a constant text with one placeholder each.
_TIMEFRAME_ROWS = ", ".join(f"('{tf.value}')" for tf in Timeframe)
_LAST_OF_PAIR = (
    "(SELECT x.{column} FROM ohlcv x WHERE x.symbol = s.symbol AND x.timeframe = t.timeframe "
    "AND x.ts < %s ORDER BY x.ts DESC LIMIT 1)"
)
_LAST_BEFORE = (
    "WITH s(symbol) AS ({symbols}), "  # noqa: S608
    f"t(timeframe) AS (VALUES {_TIMEFRAME_ROWS}) "
    "SELECT symbol, timeframe, ts, close FROM (SELECT s.symbol AS symbol, "
    f"t.timeframe AS timeframe, {_LAST_OF_PAIR.format(column='ts')} AS ts, "
    f"{_LAST_OF_PAIR.format(column='close')} AS close "
    "FROM s CROSS JOIN t) AS last WHERE ts IS NOT NULL"
)


@dataclass(frozen=True, slots=True)
class CoverageRow:
    """What is stored for one series. `gaps` counts the calendar's bars from first
    to last (both included) that are missing; stored bars off the calendar do not
    reduce it."""

    symbol: str
    timeframe: Timeframe
    first: datetime
    last: datetime
    count: int
    gaps: int


def make_market_engine(url: str) -> Engine:
    """An engine for the market database: SQLite via the app's make_engine, or
    PostgreSQL through psycopg 3 with the session in UTC (so timestamptz values
    come back as UTC datetimes)."""
    parsed = make_url(url)
    name, _, driver = parsed.drivername.partition("+")
    if name == "sqlite":
        return make_engine(url)
    if name not in ("postgresql", "postgres"):
        raise ValueError(f"the OHLCV store needs PostgreSQL or SQLite, not {name!r}")
    if driver not in ("", "psycopg"):
        raise ValueError(f"the OHLCV store talks to PostgreSQL through psycopg 3, not {driver!r}")
    options = parsed.query.get("options")
    utc = "-c TimeZone=UTC"
    return create_engine(
        parsed.set(drivername="postgresql+psycopg"),
        pool_pre_ping=True,
        connect_args={"options": f"{options} {utc}" if isinstance(options, str) else utc},
    )


class OHLCVStore:
    """Candles keyed by (symbol, timeframe, ts) on PostgreSQL or SQLite."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = make_market_engine(url)
        self.backend: str = self._engine.dialect.name  # "postgresql" | "sqlite"
        self._pg = self.backend == "postgresql"

    def migrate(self) -> None:
        """Create or upgrade the market schema (Alembic, migrations/market)."""
        from Webapp.storage.migrate import upgrade_market

        upgrade_market(self.url)

    @property
    def engine(self) -> Engine:
        return self._engine

    def dispose(self) -> None:
        self._engine.dispose()

    # --- writing ------------------------------------------------------------------------------

    def upsert(self, candles: Sequence[Candle]) -> int:
        """Store a small batch (closed live candles, one fetch chunk): new rows are
        inserted, changed ones updated, identical ones left alone, in one transaction."""
        timeframes = timeframe_texts(batch_spans(candles))
        if not timeframes:
            return 0
        with refusals():
            return self._upsert(candles, timeframes)

    def _upsert(self, candles: Sequence[Candle], timeframes: dict) -> int:
        with self._writing() as raw:
            if not self._pg:
                rows = candle_sqlite_rows(candles, timeframes)
                return raw.executemany(_UPSERT_SQLITE, rows).rowcount
            with raw.cursor() as cur:
                cur.executemany(_UPSERT_PG, candle_pg_rows(candles, timeframes))
                return cur.rowcount

    def bulk_load(self, candles: Sequence[Candle]) -> int:
        """Store a large batch (an import), with the same result as `upsert`.

        PostgreSQL: binary COPY straight into the table when no stored candle
        falls in the batch's range, else COPY into a temporary table merged with
        one INSERT ... ON CONFLICT. SQLite: one executemany in one transaction.
        """
        spans = batch_spans(candles)
        if not spans:
            return 0
        timeframes = timeframe_texts(spans)
        with refusals():
            if not self._pg:
                return self._upsert(candles, timeframes)
            if not self._any_stored(spans):
                try:
                    return self._pg_load(candle_pg_rows(candles, timeframes), staged=False)
                except psycopg.errors.UniqueViolation:
                    pass  # another writer stored part of the range since the check: merge
            return self._pg_load(candle_pg_rows(candles, timeframes), staged=True)

    def bulk_load_columns(self, columns: CandleColumns, *, fresh: bool = False) -> int:
        """Store one series given as columns, with the same result as `bulk_load` but
        no Candle per row (the import's path).

        `fresh` says the caller found nothing stored from the batch's first time on:
        PostgreSQL then COPYs straight into the table without asking again (should a
        row have been stored since, the COPY fails and the batch goes through the merge).
        """
        span = column_span(columns)
        if span is None:
            return 0
        with refusals():
            if not self._pg:
                with self._writing() as raw:
                    return raw.executemany(_UPSERT_SQLITE, sqlite_rows(columns)).rowcount
            if fresh or not self._any_stored({(columns.symbol, columns.timeframe): span}):
                try:
                    return self._pg_load(pg_rows(columns), staged=False)
                except psycopg.errors.UniqueViolation:
                    pass  # another writer stored part of the range since the check: merge
            return self._pg_load(pg_rows(columns), staged=True)

    def _any_stored(self, spans: dict[tuple[str, Timeframe], Span]) -> bool:
        keys = list(spans)
        params = (
            [symbol for symbol, _ in keys],
            [tf.value for _, tf in keys],
            [spans[k][0] for k in keys],
            [spans[k][1] for k in keys],
        )
        return bool(self._fetch(_ANY_STORED_PG, params)[0][0])

    def _pg_load(self, rows: Iterable[tuple], *, staged: bool) -> int:
        with self._writing() as raw:
            return copy_rows(raw, rows, staged=staged)

    @contextmanager
    def _writing(self) -> Iterator[Any]:
        """The driver's connection inside one transaction: committed on success."""
        with self._engine.begin() as conn:
            yield conn.connection.driver_connection

    # --- reading ------------------------------------------------------------------------------

    def candles(
        self,
        symbol: str,
        timeframe: Timeframe | str,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> list[Candle]:
        """Candles with start <= ts < end (either bound optional), oldest first; at
        most `limit` of them, counted from the oldest."""
        tf = Timeframe(timeframe)
        sql, params = self._select(symbol, tf, start, end, limit=limit)
        return self._build(symbol, tf, self._fetch(sql, params))

    def last_candles(self, symbol: str, timeframe: Timeframe | str, n: int) -> list[Candle]:
        """The newest `n` candles, oldest first."""
        tf = Timeframe(timeframe)
        sql, params = self._select(symbol, tf, None, None, limit=n, newest_first=True)
        rows = self._fetch(sql, params)
        rows.reverse()
        return self._build(symbol, tf, rows)

    def series_around(
        self,
        symbol: str,
        timeframe: Timeframe | str,
        first: datetime,
        before: int | None = 200,
    ) -> tuple[CandleColumns, CandleColumns]:
        """(the last `before` stored candles before `first`, all of them when None; every
        stored candle from `first` on), as columns: what an import needs around its
        first time to continue the EMAs and to see what it replaces."""
        tf = Timeframe(timeframe)
        with self._engine.connect() as conn:
            raw = conn.connection.driver_connection
            prior = self.read_before(raw, symbol, tf, first, before)
            tail = self._fetch_on(raw, *self._select(symbol, tf, first, None))
        return prior, columns_from_rows(symbol, tf, tail, None if self._pg else _fromtimestamp)

    def read_candles(
        self,
        raw,
        symbol: str,
        timeframe: Timeframe | str,
        start: datetime | None,
        end: datetime | None,
    ) -> list[Candle]:
        """`candles(symbol, timeframe, start, end)`, read on the driver connection `raw`."""
        tf = Timeframe(timeframe)
        return self._build(symbol, tf, self._fetch_on(raw, *self._select(symbol, tf, start, end)))

    def read_before(
        self, raw, symbol: str, timeframe: Timeframe | str, first: datetime, before: int | None
    ) -> CandleColumns:
        """The last `before` stored candles before `first` (all when None), as columns,
        read on the driver connection `raw` (an import's loader holds its own)."""
        tf = Timeframe(timeframe)
        sql, params = self._select(symbol, tf, None, first, limit=before, newest_first=True)
        prior = self._fetch_on(raw, sql, params)
        prior.reverse()
        return columns_from_rows(symbol, tf, prior, None if self._pg else _fromtimestamp)

    def stored_ts(
        self,
        symbol: str,
        timeframe: Timeframe | str,
        start: datetime | None,
        end: datetime | None,
    ) -> set[datetime]:
        """Starts of the stored candles with start <= ts < end: what a resumable
        fetch can skip."""
        where, params = self._where(symbol, Timeframe(timeframe), start, end)
        rows = self._fetch(f"SELECT ts FROM ohlcv WHERE {where}", params)  # noqa: S608
        if self._pg:
            return set(chain.from_iterable(rows))
        return set(map(_fromtimestamp, chain.from_iterable(rows), repeat(UTC)))

    def previous_closes(self, symbols: Iterable[str], session: date, raw=None) -> dict[str, float]:
        """Each symbol's previous session close for `session` (an IST date), in one query.

        It is the close of the last stored candle dated before `session`, whatever the
        holiday list says (STRATEGY.md "Entry"): the daily candle when the latest such
        date has one, else that date's last intraday candle (the finest timeframe when
        several end alike). Nothing of `session` itself, a pre-open candle included,
        is ever used. Symbols with no candle before `session` are left out. `raw`: a
        driver connection to read on (SignalCandles holds one per scan).
        """
        wanted = list(dict.fromkeys(symbols))
        if not wanted:
            return {}
        cutoff = datetime.combine(session, time(0), IST)
        if self._pg:
            sql = _LAST_BEFORE.format(symbols="SELECT unnest(%s::text[])")
            params: list = [wanted, self._bound(cutoff), self._bound(cutoff)]
        else:
            sql = _LAST_BEFORE.format(symbols="VALUES " + ", ".join(["(%s)"] * len(wanted)))
            params = [*wanted, self._bound(cutoff), self._bound(cutoff)]
        rows = self._fetch(sql, params) if raw is None else self._fetch_on(raw, sql, params)
        best: dict[str, tuple] = {}
        for symbol, timeframe, ts, close in rows:
            tf = Timeframe(timeframe)
            at = ts if self._pg else _utc(ts)
            # Latest date first; on one date the daily candle, then the latest and finest bar.
            rank = (at.astimezone(IST).date(), tf is Timeframe.D1, at, -tf.length)
            if symbol not in best or rank > best[symbol][0]:
                best[symbol] = (rank, close)
        return {symbol: best[symbol][1] for symbol in wanted if symbol in best}

    def first_last(self, symbol: str, timeframe: Timeframe | str) -> Span | None:
        """(first, last) candle start of one series; None when nothing is stored."""
        where, params = self._where(symbol, Timeframe(timeframe), None, None)
        sql = f"SELECT min(ts), max(ts) FROM ohlcv WHERE {where}"  # noqa: S608
        first, last = self._fetch(sql, params)[0]
        if first is None:
            return None
        return (first, last) if self._pg else (_utc(first), _utc(last))

    def symbols(self, timeframe: Timeframe | str | None = None) -> list[str]:
        """Symbols with at least one candle (of `timeframe`, when given), sorted bytewise."""
        if timeframe is None:
            return [s for (s,) in self._fetch(_SYMBOLS, [])]
        sql = (
            f"{_SYMBOLS} AND EXISTS (SELECT 1 FROM ohlcv o "  # noqa: S608
            "WHERE o.symbol = s.symbol AND o.timeframe = %s)"
        )
        return [s for (s,) in self._fetch(sql, [Timeframe(timeframe).value])]

    def coverage(
        self,
        symbol: str | None = None,
        timeframe: Timeframe | str | None = None,
        calendar: MarketCalendar | None = None,
    ) -> list[CoverageRow]:
        """First, last, count and gaps per series (sorted by symbol, then timeframe
        from 1m to 1d); gaps are counted against `calendar`, NSE's by default."""
        calendar = calendar or MarketCalendar.nse()
        conditions, params = [], []
        if symbol is not None:
            conditions.append("symbol = %s")
            params.append(symbol)
        if timeframe is not None:
            conditions.append("timeframe = %s")
            params.append(Timeframe(timeframe).value)
        where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
        sql = f"SELECT symbol, timeframe, min(ts), max(ts), count(*) FROM ohlcv {where}"  # noqa: S608
        groups = self._fetch(sql + "GROUP BY symbol, timeframe", params)
        groups.sort(key=lambda g: (g[0], _TF_ORDER[Timeframe(g[1])]))
        to_datetime = _same if self._pg else _utc
        spans = [(s, Timeframe(tf), to_datetime(a), to_datetime(b), n) for s, tf, a, b, n in groups]
        expected = _ExpectedBars(calendar, spans)
        # Epoch seconds on both backends: ints hash and compare far faster than datetimes.
        epoch = "date_part('epoch', ts)::bigint" if self._pg else "ts"
        sql = f"SELECT {epoch} FROM ohlcv WHERE symbol = %s AND timeframe = %s"  # noqa: S608
        rows = []
        for s, tf, first, last, n in spans:
            stored = chain.from_iterable(self._fetch(sql, [s, tf.value]))
            rows.append(
                CoverageRow(s, tf, first, last, n, expected.missing(tf, first, last, stored))
            )
        return rows

    def _select(
        self,
        symbol: str,
        tf: Timeframe,
        start: datetime | None,
        end: datetime | None,
        *,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> tuple[str, list]:
        """The query for (ts, open, ..., ema_200) rows of one series, in time order."""
        where, params = self._where(symbol, tf, start, end)
        sql = f"{_SELECT} WHERE {where} ORDER BY ts{' DESC' if newest_first else ''}"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(_count(limit, "limit"))
        return sql, params

    def _where(
        self, symbol: str, tf: Timeframe, start: datetime | None, end: datetime | None
    ) -> tuple[str, list]:
        sql, params = "symbol = %s AND timeframe = %s", [symbol, tf.value]
        if start is not None:
            sql += " AND ts >= %s"
            params.append(self._bound(start))
        if end is not None:
            sql += " AND ts < %s"
            params.append(self._bound(end))
        return sql, params

    def _bound(self, when: datetime) -> datetime | int:
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"naive datetime refused, pass an aware one: {when!r}")
        if self._pg:
            return when
        # Stored starts are whole seconds, so ts >= t and ts < t both mean ts vs ceil(t).
        return -((_EPOCH - when) // _SECOND)

    def _fetch(self, sql: str, params: Sequence) -> list[tuple]:
        with self._engine.connect() as conn:
            return self._fetch_on(conn.connection.driver_connection, sql, params)

    def _fetch_on(self, raw, sql: str, params: Sequence) -> list[tuple]:
        if not self._pg:
            return raw.execute(sql.replace("%s", "?"), params).fetchall()
        with raw.cursor(binary=True) as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def _build(self, symbol: str, tf: Timeframe, rows: list[tuple]) -> list[Candle]:
        return candles_from_rows(symbol, tf, rows, None if self._pg else _fromtimestamp)


class _ExpectedBars:
    """The calendar's bar starts per timeframe as epoch seconds, computed once over
    all series' dates."""

    def __init__(self, calendar: MarketCalendar, spans: list[tuple]) -> None:
        days: dict[Timeframe, tuple[date, date]] = {}
        for _, tf, first, last, _ in spans:
            lo, hi = calendar.session_date(first), calendar.session_date(last)
            if tf in days:
                lo, hi = min(lo, days[tf][0]), max(hi, days[tf][1])
            days[tf] = (lo, hi)
        self._starts: dict[Timeframe, list[int]] = {}
        self._sets: dict[Timeframe, set[int]] = {}
        for tf, (lo, hi) in days.items():
            starts = [
                int(t.timestamp())
                for d in calendar.trading_days(lo, hi)
                for t in calendar.expected_bars(d, tf)
            ]
            self._starts[tf], self._sets[tf] = starts, set(starts)

    def missing(self, tf: Timeframe, first: datetime, last: datetime, stored: Iterable[int]) -> int:
        """How many expected starts from `first` to `last` (both included) are not in
        `stored`, the epoch starts of the series whose first and last these are."""
        starts = self._starts[tf]
        expected = bisect_right(starts, last.timestamp()) - bisect_left(starts, first.timestamp())
        # Every stored start lies in [first, last]: matching against all starts is enough.
        return expected - len(self._sets[tf].intersection(stored))


@contextmanager
def refusals() -> Iterator[None]:
    """Constraint violations (NaN, high < low, ...) become InvalidCandles."""
    try:
        yield
    except (
        psycopg.IntegrityError,
        psycopg.DataError,
        sqlite3.IntegrityError,
        SAIntegrityError,
        OverflowError,
    ) as exc:
        raise InvalidCandles(f"the database refused the batch, nothing stored: {exc}") from exc


def _utc(epoch_s: int) -> datetime:
    return _fromtimestamp(epoch_s, UTC)


def _same(value: Any) -> Any:
    return value


def _count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return value
