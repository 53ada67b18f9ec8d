"""Binary COPY of candle rows into PostgreSQL's ohlcv table: in one go, or sent without waiting.

Rows are tuples in table order: (symbol, timeframe text, ts, open, high, low, close,
volume, ema_9, ema_21, ema_50, ema_200). `copy_rows` stores a batch inside the
caller's transaction, straight into the table or merged through a staging table.
`PgPipe` sends a batch as its own transaction and returns at once, or opens a COPY
that takes batches one after another: the server checks and inserts them on its own
core while the caller (an import) parses the next file, and `finish` collects the
outcome. It also asks, the same way, for a series'
stored rows as the very bytes a COPY of them carries, so that a re-import compares
bytes instead of decoding every stored value.
"""

from __future__ import annotations

import io
import selectors
import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat

import psycopg
from psycopg import pq
from psycopg.adapt import Transformer
from psycopg.copy import FileWriter

try:  # the row formatter behind psycopg's Copy.write_row (C in psycopg-binary)
    from psycopg._copy_base import format_row_binary as _format_row
except ImportError:  # pragma: no cover - another psycopg: the public writer
    _format_row = None

COLUMNS = (
    "symbol", "timeframe", "ts", "open", "high", "low", "close", "volume",
    "ema_9", "ema_21", "ema_50", "ema_200",
)  # fmt: skip
VALUES = COLUMNS[3:]
_COLS = ", ".join(COLUMNS)
_COPY_TYPES = ["text", "text", "timestamptz"] + ["float8"] * 4 + ["int8"] + ["float8"] * 4
_COPY = f"COPY ohlcv ({_COLS}) FROM STDIN (FORMAT BINARY)"
# Changed rows only: re-writing an identical candle must not touch the row.
_SET = ", ".join(f"{c} = excluded.{c}" for c in VALUES)
ON_CONFLICT = (
    f"ON CONFLICT (symbol, timeframe, ts) DO UPDATE SET {_SET} "
    f"WHERE ({', '.join('t.' + c for c in VALUES)}) IS DISTINCT FROM "
    f"({', '.join('excluded.' + c for c in VALUES)})"
)
# The staged merge: the join drops unchanged rows before they reach ON CONFLICT,
# which would otherwise lock (and so write) every existing row it meets.
_MERGE_STAGE = (
    f"INSERT INTO ohlcv AS t ({_COLS}) SELECT {', '.join('s.' + c for c in COLUMNS)} "  # noqa: S608
    "FROM ohlcv_load s LEFT JOIN ohlcv o "
    "ON o.symbol = s.symbol AND o.timeframe = s.timeframe AND o.ts = s.ts "
    f"WHERE o.ts IS NULL OR ({', '.join('o.' + c for c in VALUES)}) IS DISTINCT FROM "
    f"({', '.join('s.' + c for c in VALUES)}) {ON_CONFLICT}"
)


def copy_rows(raw: psycopg.Connection, rows: Iterable[tuple], *, staged: bool) -> int:
    """COPY `rows` inside the current transaction of `raw`; rows inserted or changed.

    staged=False: straight into ohlcv (a stored key fails with UniqueViolation).
    staged=True: into a temporary table, then merged, skipping unchanged rows.
    """
    with raw.cursor() as cur:
        if staged:
            cur.execute("CREATE TEMP TABLE ohlcv_load (LIKE ohlcv) ON COMMIT DROP")
        target = "ohlcv_load" if staged else "ohlcv"
        with cur.copy(f"COPY {target} ({_COLS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_COPY_TYPES)
            write_row = copy.write_row
            for row in rows:
                write_row(row)
        if staged:
            cur.execute("ANALYZE ohlcv_load")  # else the merge may scan all of ohlcv
            cur.execute(_MERGE_STAGE)
        return cur.rowcount


# What an import needs to know about a series around its first time $3, in one
# statement: the stored rows from $3 on as the bytes a binary COPY of them carries
# (without header and trailer; $4 is every row's constant start: field count, symbol,
# timeframe), so that a re-import compares bytes instead of decoding every value; and
# the closes of the last $5 candles before $3 and the last one's four EMAs, to
# continue the EMAs. All as bytea: float8send is the float's 8 bytes, big-endian.
_LEN8 = "'\\x00000008'::bytea"
_ROW_BYTES = (
    f"$4 || {_LEN8} || timestamptz_send(ts)"
    + "".join(f" || {_LEN8} || float8send({c})" for c in ("open", "high", "low", "close"))
    + f" || {_LEN8} || int8send(volume)"
    + "".join(
        f" || coalesce({_LEN8} || float8send({c}), '\\xffffffff'::bytea)"
        for c in ("ema_9", "ema_21", "ema_50", "ema_200")
    )
)
_CONTEXT = (
    "WITH prior AS (SELECT ts, close, ema_9, ema_21, ema_50, ema_200 FROM ohlcv "  # noqa: S608
    "WHERE symbol = $1 AND timeframe = $2 AND ts < $3 ORDER BY ts DESC LIMIT $5) "
    f"SELECT (SELECT string_agg({_ROW_BYTES}, ''::bytea ORDER BY ts) FROM ohlcv "
    "WHERE symbol = $1 AND timeframe = $2 AND ts >= $3), "
    "(SELECT string_agg(float8send(close), ''::bytea ORDER BY ts) FROM prior), "
    "(SELECT float8send(ema_9) || float8send(ema_21) || float8send(ema_50) "
    "|| float8send(ema_200) FROM prior ORDER BY ts DESC LIMIT 1)"
)


@dataclass(frozen=True, slots=True)
class StoredContext:
    """What is stored around a batch's first time (see _CONTEXT)."""

    rows_from: bytes | None  # stored rows from the first time on, as COPY bytes; None: none
    prior_closes: list[float]  # of the last `before` candles before it, oldest first
    last_emas: tuple[float, float, float, float] | None  # None: no prior, or one is NULL


_TEXT, _TIMESTAMPTZ, _BYTEA, _INT8 = 25, 1184, 17, 20
_CONTEXT_NAME = b"ladder_ohlcv_context"
_CONTEXT_TYPES = [_TEXT, _TEXT, _TIMESTAMPTZ, _BYTEA, _INT8]
_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no extension
_TRAILER = b"\xff\xff"


class PgPipe:
    """One statement at a time in flight on an autocommit connection, without waiting.

    `send_copy` starts a direct COPY into ohlcv (its own transaction: all rows or
    none), or `open_copy`, `write_copy`... and `end_copy` the same in pieces;
    `send_context` the query for what is stored around a batch; both return
    once the request is handed to the socket, and `finish` waits for the answer:
    rows inserted, or a StoredContext, or it raises what psycopg would
    (UniqueViolation, CheckViolation, ...). Only libpq's
    documented calls are used, so psycopg finds the connection idle after `finish`;
    waiting happens in `selectors`, which releases the GIL.
    """

    def __init__(self, raw: psycopg.Connection) -> None:
        if not raw.autocommit:
            raise ValueError("PgPipe needs an autocommit connection")
        self._pg = raw.pgconn
        self._cursor = raw.cursor()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._pg.socket, selectors.EVENT_READ | selectors.EVENT_WRITE)
        self._in_flight: str | None = None  # "starting" | "open" | "copy" | "query"
        self._prepared = False
        self._dumpers: Transformer | None = None

    @property
    def busy(self) -> bool:
        """A statement is in flight (a started COPY waiting for data is not)."""
        return self._in_flight in ("open", "copy", "query")

    def encode(self, rows: Iterable[tuple]) -> bytes:
        """`rows` as one binary COPY stream, formatted by psycopg (no connection I/O)."""
        buffer = io.BytesIO()
        with psycopg.Copy(self._cursor, binary=True, writer=FileWriter(buffer)) as copy:
            copy.set_types(_COPY_TYPES)
            write_row = copy.write_row
            for row in rows:
                write_row(row)
        return buffer.getvalue()

    def encode_rows(self, rows: Iterable[tuple]) -> bytes:
        """`rows` as `encode` writes them, without the stream's header and trailer.

        psycopg's own row formatter (C) is called for each row directly, without the
        two Python calls per row of its public Copy.write_row: 40% of the encoding
        time of an import. Without that formatter, `encode` does it.
        """
        if _format_row is None:
            body = copy_body(self.encode(rows))
            if body is None:
                raise RuntimeError("psycopg's binary COPY stream changed its layout")
            return body
        if self._dumpers is None:
            registry = self._cursor.adapters.types
            self._dumpers = Transformer(self._cursor)
            self._dumpers.set_dumper_types(
                [registry.get_oid(name) for name in _COPY_TYPES], pq.Format.BINARY
            )
        out = bytearray()
        deque(map(_format_row, rows, repeat(self._dumpers), repeat(out)), maxlen=0)
        return bytes(out)

    @property
    def streaming(self) -> bool:
        """A COPY was opened (see open_copy) and takes rows."""
        return self._in_flight == "open"

    @property
    def starting(self) -> bool:
        """A COPY was started (see start_copy) and waits for its data."""
        return self._in_flight == "starting"

    def start_copy(self) -> None:
        """Send the COPY statement ahead of its data: the server's answer to it (a round
        trip that would stall the caller) arrives while the caller does other work."""
        self._ready().send_query(_COPY.encode())
        self._flush()
        self._in_flight = "starting"

    def send_copy(self, data: bytes) -> None:
        """COPY `data` (from `encode`) and return without waiting for the server to store it."""
        self._begin_copy()
        self._in_flight = "copy"
        pg = self._pg
        if pg.put_copy_data(data) != 1 or pg.put_copy_end() != 1:
            raise psycopg.OperationalError(pg.get_error_message())
        self._flush()

    def open_copy(self) -> None:
        """Begin a COPY whose rows follow in pieces (`write_copy`) while the caller works;
        `end_copy` sends its end, and `finish` waits for the outcome, as after `send_copy`."""
        self._begin_copy()
        self._in_flight = "open"
        self.write_copy(_HEADER)

    def write_copy(self, rows: bytes) -> None:
        """Send more rows (from `encode_rows`) to the open COPY. The server stores them
        while the caller goes on: whatever the socket does not take at once stays queued
        and goes with the next piece or the end."""
        pg = self._pg
        if self._in_flight != "open":
            raise RuntimeError("no COPY is open")
        if pg.put_copy_data(rows) != 1:
            raise psycopg.OperationalError(pg.get_error_message())
        if pg.flush() == 1:  # not all sent: the server reads on while it stores
            pg.consume_input()  # an early error, kept for `finish`

    def end_copy(self) -> None:
        """End the open COPY and return without waiting for the server to store it."""
        pg = self._pg
        if self._in_flight != "open":
            raise RuntimeError("no COPY is open")
        self._in_flight = "copy"
        if pg.put_copy_data(_TRAILER) != 1 or pg.put_copy_end() != 1:
            raise psycopg.OperationalError(pg.get_error_message())
        self._flush()

    def _begin_copy(self) -> None:
        if self._in_flight != "starting":
            self.start_copy()
        started = self._result()
        if started is None or started.status != pq.ExecStatus.COPY_IN:
            self._in_flight = None
            self._drain()
            raise _error(started)

    def cancel_copy(self) -> None:
        """Give up a started COPY before sending data: the server rolls it back."""
        if self._in_flight != "starting":
            return
        self._in_flight = None
        started = self._result()
        if started is not None and started.status == pq.ExecStatus.COPY_IN:
            self._pg.put_copy_end(b"not needed")
            self._flush()
        self._drain()  # the error the server answers the cancel with

    def send_context(
        self, symbol: str, timeframe: str, first: datetime, before: int, start: bytes
    ) -> None:
        """Ask what is stored of (symbol, timeframe) around `first`: the rows from it on
        (every row beginning with `start`, see row_start) and the last `before` before."""
        self.prepare_context()
        pg = self._ready()
        pg.send_query_prepared(
            _CONTEXT_NAME,
            [
                symbol.encode(),
                timeframe.encode(),
                first.isoformat().encode(),
                start,
                b"%d" % before,
            ],
            param_formats=[0, 0, 0, 1, 0],
            result_format=1,
        )
        self._flush()
        self._in_flight = "query"

    def prepare_context(self) -> None:
        """Plan the query of `send_context` on this connection, once (it waits for the server)."""
        if self._prepared:
            return
        prepared = self._ready().prepare(_CONTEXT_NAME, _CONTEXT.encode(), _CONTEXT_TYPES)
        if prepared.status != pq.ExecStatus.COMMAND_OK:
            raise _error(prepared)
        self._prepared = True

    def finish(self) -> int | StoredContext:
        """Wait for the statement in flight: rows a COPY inserted, or the StoredContext."""
        kind, self._in_flight = self._in_flight, None
        if kind not in ("copy", "query"):
            raise RuntimeError("nothing in flight")
        result = self._result()
        self._drain()
        if result is None or result.status not in (
            pq.ExecStatus.COMMAND_OK,
            pq.ExecStatus.TUPLES_OK,
        ):
            raise _error(result)
        if kind == "copy":
            return int(result.command_tuples or 0)
        rows_from, closes, emas = (result.get_value(0, column) for column in range(3))
        return StoredContext(
            rows_from,
            list(struct.unpack(f">{len(closes) // 8}d", closes)) if closes else [],
            struct.unpack(">4d", emas) if emas else None,
        )

    def close(self) -> None:
        """Wait for anything still in flight, ignoring its outcome (the caller is failing)."""
        try:
            if self.starting:
                self.cancel_copy()
            elif self.streaming:
                self._in_flight = "copy"
                self._pg.put_copy_end(b"not finished")  # rolled back
                self._flush()
                self.finish()
            elif self.busy:
                self.finish()
            if self._prepared:  # the connection goes back to the pool
                self._pg.exec_(b"DEALLOCATE " + _CONTEXT_NAME)
        except psycopg.Error:
            pass
        finally:
            self._selector.close()
            self._cursor.close()

    def _ready(self):
        if self._in_flight is not None:
            raise RuntimeError("finish the statement in flight first")
        pg = self._pg
        if pg.transaction_status != pq.TransactionStatus.IDLE:
            raise RuntimeError("the pipe's connection is not idle")
        return pg

    def _flush(self) -> None:
        pg = self._pg
        while pg.flush():  # 1: data left to send; wait until the socket takes more
            for _key, events in self._selector.select():
                if events & selectors.EVENT_READ:
                    pg.consume_input()

    def _result(self) -> pq.abc.PGresult | None:
        pg = self._pg
        pg.consume_input()
        while pg.is_busy():
            self._selector.modify(pg.socket, selectors.EVENT_READ)
            try:
                self._selector.select()
            finally:
                self._selector.modify(pg.socket, selectors.EVENT_READ | selectors.EVENT_WRITE)
            pg.consume_input()
        return pg.get_result()

    def _drain(self) -> None:
        while self._result() is not None:
            pass


def row_start(symbol: str, timeframe: str) -> bytes:
    """The bytes every binary COPY row of the series begins with (as `encode` writes them)."""
    name, frame = symbol.encode(), timeframe.encode()
    return struct.pack(f">hi{len(name)}si{len(frame)}s", 12, len(name), name, len(frame), frame)


def copy_stream(bodies: list[bytes]) -> bytes:
    """One binary COPY stream of the rows of several (see copy_body)."""
    return b"".join([_HEADER, *bodies, _TRAILER])


def copy_body(data: bytes) -> bytes | None:
    """The rows of a binary COPY stream from `encode`, without header and trailer (None
    if the stream is not laid out as expected: then it matches no stored rows)."""
    if not (data.startswith(_HEADER) and data.endswith(_TRAILER)):
        return None
    return data[len(_HEADER) : -len(_TRAILER)]


def _error(result: pq.abc.PGresult | None) -> psycopg.Error:
    """The psycopg exception a failed result stands for (its SQLSTATE's class)."""
    if result is None:
        return psycopg.OperationalError("the server sent no result for the COPY")
    sqlstate = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()
    message = (result.error_message or b"").decode(errors="replace").strip()
    try:
        cls = psycopg.errors.lookup(sqlstate)
    except KeyError:
        cls = psycopg.DatabaseError
    return cls(message or f"COPY failed ({result.status.name})")
