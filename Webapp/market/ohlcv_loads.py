"""Many series into the OHLCV store in turn; on PostgreSQL the server stores while Python parses.

An import of many files is two jobs on two cores: Python parses and checks a file
while PostgreSQL stores the previous ones (COPY, constraints, index, commit: as much
work as the parsing). `loader(store)` gives the importer what it needs for that; on
PostgreSQL a `PgLoader`, whose requests return at once:

- `ask(...)` sends the query for what is stored around a batch's first time (see
  ohlcv_copy.StoredContext); `context()` collects the answer, usually long ready;
- `submit(columns, rows_from, done, otherwise)` stores a batch meant as the whole
  series from its first time on: nothing stored from there (`rows_from` is None) →
  sent down the open direct COPY, which the server stores as the rows arrive (two
  connections take turns: one streams while the other commits its last COPY or
  has the next one started ahead); the same bytes as stored → nothing to write (a
  re-import); anything else → `otherwise()`, the general merge, at once;
- `done(changed, restated, error)` hears each outcome, in order within a series.

A file is stored whole or not at all. Fresh batches of different series go down one
COPY, up to _GROUP_ROWS rows or until a batch of the same series must read what is
stored (a COPY statement costs the server about as much as a file's rows, so one
for a whole import spares it 10-15% of its work), and commit together; if the
server refuses that COPY, nothing of it is stored and each batch is copied again
alone, to be stored whole or refused whole (a row stored meanwhile by another
writer sends its batch to `otherwise`). The COPYs
commit without waiting for their WAL to reach the disk (synchronous_commit off: a
crash can lose such a commit whole, never part of it), and the loader's block ends
with one synchronous commit that flushes them all: when an import returns, all it
stored is durable, and no COPY waited for an fsync meanwhile. On SQLite there is
nothing to overlap (the database runs in this process): the plain `Loader` only
carries the store, and the caller stores each batch itself.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime

import psycopg

from Webapp.market.candle import CandleColumns, Timeframe
from Webapp.market.ohlcv import InvalidCandles, OHLCVStore, refusals
from Webapp.market.ohlcv_copy import PgPipe, StoredContext, copy_stream, row_start
from Webapp.market.ohlcv_rows import column_span, pg_rows

Done = Callable[[int, int, InvalidCandles | None], None]  # (changed, restated, error)
Otherwise = Callable[[], tuple[int, int]]  # the general path: (changed, restated)
Series = tuple[str, Timeframe]
_READ_CONNECTIONS = 2
_COPY_CONNECTIONS = 2
# Fresh batches go down one COPY up to about this many rows (~14 MB kept to copy them
# again alone, should the server refuse the COPY): each COPY statement costs the
# server ~0.7 ms on top of its rows (half a file's worth of rows).
_GROUP_ROWS = 100_000


class Loader:
    """Carries the store; the caller stores each batch itself (SQLite)."""

    def __init__(self, store: OHLCVStore) -> None:
        self.store = store

    def finish(self) -> None:
        """Wait for every batch given so far."""


@dataclass
class _Batch:
    """A batch to COPY: its columns, its rows as COPY bytes, whom to tell."""

    columns: CandleColumns
    body: bytes
    done: Done
    otherwise: Otherwise


class PgLoader(Loader):
    """See the module docstring. Reader connections take turns answering `ask` (so that
    an answer has two files' parsing to arrive); COPY connections take turns copying."""

    def __init__(self, store: OHLCVStore, readers: list, copiers: list[PgPipe]) -> None:
        super().__init__(store)
        self._readers = [(raw, PgPipe(raw)) for raw in readers]
        self._asking: deque[int] = deque()  # readers with a question out, oldest first
        self._answered = 0  # a reader with no question out
        self._copiers = copiers
        self._copying: list[list[_Batch] | None] = [None] * len(copiers)
        self._turn = 0
        self._open: int | None = None  # the copier whose COPY takes fresh batches
        self._group: list[_Batch] = []  # the batches sent down it
        self._group_rows = 0

    @property
    def readers(self) -> int:
        """How many questions may be out at once."""
        return len(self._readers)

    def ask(self, series: Series, first: datetime, before: int) -> None:
        """Send the query for what is stored of `series` around `first` (the last `before`
        candles before it); every COPY of the series must be finished (`settle`).
        Answers come back in the order asked."""
        symbol, timeframe = series
        tf = Timeframe(timeframe).value
        i = (self._asking[-1] + 1) % len(self._readers) if self._asking else self._answered
        self._readers[i][1].send_context(symbol, tf, first, before, row_start(symbol, tf))
        self._asking.append(i)

    def context(self) -> StoredContext:
        """The answer to the oldest `ask`."""
        i = self._asking.popleft()
        answer = self._readers[i][1].finish()
        self._answered = i
        assert isinstance(answer, StoredContext)
        return answer

    def closes_before(self, series: Series, first: datetime) -> list[float]:
        """Every stored close of `series` before `first` (right after its `context`)."""
        symbol, timeframe = series
        raw = self._readers[self._answered][0]
        return self.store.read_before(raw, symbol, timeframe, first, None).close

    def submit(
        self, columns: CandleColumns, rows_from: bytes | None, done: Done, otherwise: Otherwise
    ) -> None:
        try:
            column_span(columns)
        except InvalidCandles as exc:
            done(0, 0, exc)
            return
        body = self._copiers[0].encode_rows(pg_rows(columns))
        if rows_from is None:
            self._stream(_Batch(columns, body, done, otherwise))
        elif rows_from == body:  # the same rows, byte for byte
            done(0, 0, None)
        else:
            self.settle(_series(columns))
            _run(otherwise, done)

    def settle(self, series: Series) -> None:
        """Store every batch of `series` given so far, so that reads see it."""
        if any(_series(batch.columns) == series for batch in self._group):
            self._send_group()
        for i, group in enumerate(self._copying):
            if group and any(_series(batch.columns) == series for batch in group):
                self._collect(i)

    def prepare_copy(self) -> None:
        """Start the next COPY ahead of its data (see PgPipe.start_copy), once the
        connection whose turn it is has finished its last one (usually long ago)."""
        if self._open is not None:
            return
        i = self._turn
        self._collect(i)
        if not self._copiers[i].starting:
            self._copiers[i].start_copy()

    def finish(self) -> None:
        self._send_group()
        for i, copier in enumerate(self._copiers):
            copier.cancel_copy()
            self._collect(i)

    def close(self) -> None:
        """Release the pipes, waiting out (and ignoring) anything still in flight."""
        for pipe in [pipe for _, pipe in self._readers] + self._copiers:
            pipe.close()

    def _stream(self, batch: _Batch) -> None:
        """Send a fresh batch down the open COPY (opening one if none is), which the server
        stores as it arrives; end it once it holds _GROUP_ROWS rows."""
        if self._open is None:
            i = self._turn
            self._collect(i)
            self._copiers[i].open_copy()
            self._open = i
        self._copiers[self._open].write_copy(batch.body)
        self._group.append(batch)
        self._group_rows += len(batch.columns.ts)
        if self._group_rows >= _GROUP_ROWS:
            self._send_group()

    def _send_group(self) -> None:
        """End the open COPY: its batches commit together (see the docstring)."""
        i, group = self._open, self._group
        self._open, self._group, self._group_rows = None, [], 0
        if i is None:
            return
        self._turn = (i + 1) % len(self._copiers)
        self._copiers[i].end_copy()
        self._copying[i] = group

    def _collect(self, i: int) -> None:
        """Wait for copier i's COPY, if any, and report each batch in it."""
        group, self._copying[i] = self._copying[i], None
        if not group:
            return
        try:
            with refusals():
                changed = self._copiers[i].finish()
        except InvalidCandles as exc:
            if len(group) == 1:
                self._refused(group[0], exc)
            else:  # which one? each alone: it is stored whole or refused whole
                for batch in group:
                    self._copy_alone(i, batch)
            return
        assert changed == sum(len(batch.columns.ts) for batch in group)
        for batch in group:
            batch.done(len(batch.columns.ts), 0, None)

    def _copy_alone(self, i: int, batch: _Batch) -> None:
        try:
            with refusals():
                self._copiers[i].send_copy(copy_stream([batch.body]))
                changed = self._copiers[i].finish()
        except InvalidCandles as exc:
            self._refused(batch, exc)
        else:
            batch.done(changed, 0, None)

    def _refused(self, batch: _Batch, exc: InvalidCandles) -> None:
        if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
            # Another writer stored part of the range since it was found empty: merge.
            _run(batch.otherwise, batch.done)
        else:
            batch.done(0, 0, exc)


def _series(columns: CandleColumns) -> Series:
    return columns.symbol, columns.timeframe


def _flush_wal(raw) -> None:
    """Wait until every commit before this one is on disk: a transaction that writes its
    own commit record, committed synchronously, flushes the WAL up to it."""
    with raw.transaction():
        raw.execute("SET LOCAL synchronous_commit TO on")
        raw.execute("SELECT txid_current()")  # gives the transaction its commit record


def _run(otherwise: Otherwise, done: Done) -> None:
    try:
        changed, restated = otherwise()
    except InvalidCandles as exc:
        done(0, 0, exc)
    else:
        done(changed, restated, None)


@contextmanager
def loader(store: OHLCVStore) -> Iterator[Loader]:
    """A loader for `store`; every batch given is stored (or refused) when the block ends."""
    if store.backend != "postgresql":
        yield Loader(store)
        return
    engine = store.engine.execution_options(isolation_level="AUTOCOMMIT")
    with ExitStack() as stack:
        count = _READ_CONNECTIONS + _COPY_CONNECTIONS
        conns = [stack.enter_context(engine.connect()) for _ in range(count)]
        raws = [conn.connection.driver_connection for conn in conns]
        readers, writers = raws[:_READ_CONNECTIONS], raws[_READ_CONNECTIONS:]
        for raw in writers:
            raw.execute("SET synchronous_commit TO off")
        copiers = [PgPipe(raw) for raw in writers]
        load = PgLoader(store, readers, copiers)
        ok = False
        try:
            yield load
            load.finish()
            _flush_wal(writers[0])
            for raw in writers:
                raw.execute("RESET synchronous_commit")
            ok = True
        finally:
            load.close()
            if not ok:
                for conn in conns:
                    conn.invalidate()  # whatever state libpq was left in: not for reuse
