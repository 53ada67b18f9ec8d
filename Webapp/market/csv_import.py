"""Import OHLCV candles from CSV files: detect the layout, validate every row, store whole or not.

Two layouts are read without options (see ../shared/data/README.md):

- "kite": one header row naming the columns, e.g. `timestamp,open,high,low,close,volume,oi`
  (Kite/Upstox exports; also `Date,Open,High,Low,Close,Volume` and the like: names are
  matched case-insensitively, extra columns are ignored).
- "yfinance": three header rows (`Price,Close,High,Low,Open,Volume` / `Ticker,...` /
  `Datetime,...`), UTC times, float32 prices such as 1319.9000244140625 that are rounded
  to the 0.05 tick.

Anything else goes through ImportOptions ("custom"): a column mapping, a strptime date
format, the time zone of naive times (default Asia/Kolkata), no header with a column
order, a delimiter, a tick size.

Every problem of a file is reported as `<file>:<line>: <what>` with the physical line
in the file (header rows counted), and a file is stored in one transaction or not at
all. The functions that check and store bars (`check_prices`, `check_times`,
`store_bars`) are shared with the Kite historical fetch (Webapp.market.history).
"""

from __future__ import annotations

import csv
import gc
import io
import itertools
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from itertools import repeat
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from Webapp.market.calendar import IST, MarketCalendar
from Webapp.market.candle import EMA_PERIODS, Candle, Timeframe
from Webapp.market.indicators import ema_series
from Webapp.market.ohlcv import InvalidCandles

Progress = Callable[[int, int], None]

# At most this many problems are listed per file; the rest are counted.
MAX_ERRORS = 50
YFINANCE_TICK = 0.05
FIELDS = ("ts", "open", "high", "low", "close", "volume")
LAYOUTS = ("auto", "kite", "yfinance", "custom")

_IST_DELTA = timedelta(hours=5, minutes=30)
_SESSION_OPEN_MIN = 9 * 60 + 15  # 09:15 IST, minutes after midnight
_SESSION_MINUTES = 375  # 09:15 to 15:30
_INF = math.inf
_PROGRESS_EVERY = 16384  # rows between progress calls while parsing
_PARSE_SHARE = 0.6  # of the progress bar, the rest is storing
# Header names the "kite" layout understands, lower-cased.
_HEADER_NAMES = {
    "ts": ("timestamp", "datetime", "date_time", "date", "time", "ts"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v"),
}
_SYMBOL_IN_NAME = re.compile(r"[A-Za-z0-9&.\-]+")
# ISO date string -> its 00:00 UTC; shared by imports (the same dates recur in every file).
_DAY_CACHE: dict[str, datetime] = {}
_DAY_CACHE_MAX = 100_000
_MAX_SYMBOL = 64  # what the ohlcv table accepts


# --- public API -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportOptions:
    """How to read a file; every field left at its default means "detect it".

    `columns` maps fields (ts, open, high, low, close, volume; or date + time for
    split columns) to header names, or to 1-based column numbers when `header` is
    False. `column_order` names the fields in file order instead (use "" to skip a
    column). `tick_size` rounds prices to the tick (None: 0.05 for yfinance, no
    rounding otherwise; 0: never round).
    """

    symbol: str | None = None
    timeframe: Timeframe | None = None
    layout: str = "auto"
    columns: Mapping[str, str | int] | None = None
    column_order: Sequence[str] | None = None
    date_format: str | None = None
    tz: str = "Asia/Kolkata"
    header: bool = True
    delimiter: str = ","
    tick_size: float | None = None


@dataclass
class ImportReport:
    """What became of one file: `errors` is empty when it was stored.

    `rows` is how many candles the file holds; `changed` how many rows the store
    inserted or changed (0 when re-importing an identical file). `restated` counts
    candles stored earlier whose EMAs were recomputed because the
    import overlapped or preceded them; `notes` says anything kept that a trader
    should know about (bars on days the calendar lists as closed).
    """

    file: str
    symbol: str | None
    timeframe: Timeframe | None
    rows: int
    first: datetime | None
    last: datetime | None
    errors: list[str] = field(default_factory=list)
    changed: int = 0
    restated: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class CsvImportError(Exception):
    """A file was refused; nothing of it was stored. `errors` are `<file>:<line>: ...` lines."""

    def __init__(self, file: str, errors: list[str]) -> None:
        self.file = file
        self.errors = errors
        listed = "\n".join(f"  {line}" for line in errors)
        super().__init__(f"{file} was not imported:\n{listed}")


def import_csv(
    store,
    path: str | Path,
    options: ImportOptions | None = None,
    progress: Progress | None = None,
    calendar: MarketCalendar | None = None,
) -> ImportReport:
    """Validate every row of `path`, then store it in one transaction with its EMAs.

    Raises CsvImportError (nothing stored) listing every problem with its line.
    `progress(rows_done, rows_total)` is called while parsing and after storing.
    """
    with gc_paused():
        return _import_csv(store, Path(path), options or ImportOptions(), progress, calendar)


def _import_csv(
    store, path: Path, opts: ImportOptions, progress: Progress | None, calendar
) -> ImportReport:
    name = path.name
    calendar = calendar or MarketCalendar.nse()
    text = _read_text(path)
    total = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    parsed = _parse(text, name, opts, progress, total)
    bars, symbol, errors = parsed.bars, parsed.symbol, parsed.errors
    try:
        timeframe = Timeframe(opts.timeframe) if opts.timeframe else None
    except ValueError:
        known = ", ".join(tf.value for tf in Timeframe)
        problem = f"{name}: unknown timeframe {opts.timeframe!r} ({known})"
        raise CsvImportError(name, [problem]) from None
    if symbol is None:
        errors.append((0, f"cannot tell the symbol from the file name {name!r}; give the symbol"))
    elif len(symbol) > _MAX_SYMBOL or symbol != symbol.strip():
        errors.append((0, f"symbol {symbol!r} must be 1 to {_MAX_SYMBOL} characters, unpadded"))
    if bars.ts and timeframe is None:
        timeframe = detect_timeframe(bars.ts)
        if timeframe is None:
            errors.append((0, _undetected_timeframe(bars.ts)))
    notes: list[str] = []
    if bars.ts and timeframe is not None:
        errors.extend(check_times(bars, timeframe, calendar, notes))
    elif not bars.ts and not errors:
        errors.append((parsed.first_data_line, "no candle rows in the file"))
    if errors:
        raise CsvImportError(name, _format_errors(name, errors))
    assert symbol is not None and timeframe is not None
    try:
        changed, restated = store_bars(store, symbol, timeframe, bars)
    except InvalidCandles as exc:  # a database constraint the checks above did not foresee
        raise CsvImportError(name, [f"{name}: {exc}"]) from exc
    if progress is not None:
        progress(total, total)
    return ImportReport(
        file=name,
        symbol=symbol,
        timeframe=timeframe,
        rows=len(bars),
        first=bars.ts[0],
        last=bars.ts[-1],
        changed=changed,
        restated=restated,
        notes=notes,
    )


def import_many(
    store,
    paths: Iterable[str | Path],
    options: ImportOptions | None = None,
    progress: Progress | None = None,
    calendar: MarketCalendar | None = None,
) -> list[ImportReport]:
    """Import each file whole or not at all; a refused file does not stop the others.

    A directory stands for every *.csv in it (sorted). `progress` counts rows over
    all files (the total is estimated from line counts up front).
    """
    files = expand_paths(paths)
    sizes = [_count_lines(path) for path in files]
    total = sum(sizes)
    done_before = 0
    reports: list[ImportReport] = []
    calendar = calendar or MarketCalendar.nse()
    for path, size in zip(files, sizes, strict=True):

        def file_progress(
            done: int, _total: int, base: int = done_before, size: int = size
        ) -> None:
            if progress is not None:
                progress(base + min(done, size), total)

        try:
            reports.append(import_csv(store, path, options, file_progress, calendar))
        except CsvImportError as exc:
            reports.append(ImportReport(path.name, None, None, 0, None, None, errors=exc.errors))
        done_before += size
        if progress is not None:
            progress(done_before, total)
    return reports


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, and for a directory every *.csv inside it, sorted by name."""
    files: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() == ".csv"))
        else:
            files.append(path)
    return files


def symbol_from_filename(path: str | Path) -> str | None:
    """`RELIANCE_5min.csv` → RELIANCE, `M&M_2020-10-01_to_2025-09-30.csv` → M&M."""
    stem = Path(path).stem.split("_", 1)[0].strip()
    return stem.upper() if _SYMBOL_IN_NAME.fullmatch(stem) else None


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while a batch is built.

    An import allocates a hundred thousand small objects that all live on; the
    collector would walk them again and again (it halves the import rate) and
    would find nothing, as candles hold no cycles. Nested and concurrent pauses
    are counted: the last one out restores the collector as it was.
    """
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


# --- bars: columns of parsed candles, shared with the Kite historical fetch -------------------


@dataclass
class Bars:
    """Parsed candles as parallel lists; `lines` are where each came from (file lines)."""

    ts: list[datetime] = field(default_factory=list)
    open: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    close: list[float] = field(default_factory=list)
    volume: list[int] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ts)

    def sort(self) -> None:
        """Order by time (stable), keeping the columns together."""
        order = sorted(range(len(self.ts)), key=self.ts.__getitem__)
        for name in ("ts", "open", "high", "low", "close", "volume", "lines"):
            column = getattr(self, name)
            setattr(self, name, [column[i] for i in order])


def check_prices(o: float, h: float, low: float, c: float, v: float) -> list[str]:
    """What is wrong with one bar's numbers: finite positive prices, the OHLC order, volume."""
    problems = [
        f"{label} {_num(value)} is not a finite number"
        if not math.isfinite(value)
        else f"{label} {_num(value)} must be above 0"
        for label, value in (("open", o), ("high", h), ("low", low), ("close", c))
        if not (0.0 < value < _INF)
    ]
    if not problems:
        if h < o:
            problems.append(f"high {_num(h)} is below open {_num(o)}")
        if h < c:
            problems.append(f"high {_num(h)} is below close {_num(c)}")
        if low > o:
            problems.append(f"low {_num(low)} is above open {_num(o)}")
        if low > c:
            problems.append(f"low {_num(low)} is above close {_num(c)}")
    if not math.isfinite(v) or v != int(v):
        problems.append(f"volume {_num(v)} is not a whole number")
    elif v < 0:
        problems.append(f"volume {int(v)} is negative")
    return problems


def check_times(
    bars: Bars, timeframe: Timeframe, calendar: MarketCalendar, notes: list[str] | None = None
) -> list[tuple[int, str]]:
    """Sort `bars` by time and check each: on the timeframe's grid, in session, unique.

    Daily bars are moved to 00:00 IST of their IST date (a daily bar stamped 15:30 IST
    or 00:00 UTC is that date's candle). Intraday bars start on the grid from 09:15 IST
    and, on a trading day, inside 09:15–15:30 IST. Days the calendar lists as closed
    may hold special sessions (Muhurat trading, a Saturday budget session): their bars
    are kept if on the grid, and a note says how many. Returns (line, problem) pairs.
    """
    ts = bars.ts
    if any(ts[i] > ts[i + 1] for i in range(len(ts) - 1)):
        bars.sort()
        ts = bars.ts
    lines = bars.lines
    errors: list[tuple[int, str]] = []
    daily = timeframe is Timeframe.D1
    step = timeframe.minutes or 0
    ist_delta = _IST_DELTA
    is_trading_day = calendar.is_trading_day
    closed_days: set[date] = set()
    prev_day: date | None = None
    day_open = True
    prev: datetime | None = None
    for i, t in enumerate(ts):
        local = t + ist_delta  # wall-clock IST, still tagged UTC
        if daily and (local.hour or local.minute or local.second or local.microsecond):
            day = local.date()
            t = datetime(day.year, day.month, day.day, tzinfo=UTC) - ist_delta
            ts[i] = t
            local = t + ist_delta
        day = local.date()
        if day != prev_day:
            prev_day, day_open = day, is_trading_day(day)
        if not day_open:
            closed_days.add(day)
        if not daily:
            minute = local.hour * 60 + local.minute - _SESSION_OPEN_MIN
            if local.second or local.microsecond or minute % step:
                errors.append(
                    (
                        lines[i],
                        f"{timeframe} bar at {_ist(t)} is not on the {step}-minute grid "
                        "from 09:15 IST",
                    )
                )
            elif day_open and not 0 <= minute < _SESSION_MINUTES:
                errors.append(
                    (lines[i], f"bar at {_ist(t)} is outside the 09:15–15:30 IST session")
                )
        if t == prev:
            errors.append((lines[i], f"duplicate time {_ist(t)} (also on line {lines[i - 1]})"))
        prev = t
    if closed_days and notes is not None:
        listed = ", ".join(d.isoformat() for d in sorted(closed_days)[:5])
        more = "…" if len(closed_days) > 5 else ""
        notes.append(
            f"kept bars on {len(closed_days)} day(s) the NSE calendar lists as closed "
            f"(special sessions such as Muhurat trading): {listed}{more}"
        )
    return errors


def detect_timeframe(ts: Sequence[datetime]) -> Timeframe | None:
    """The timeframe from the most common gap between consecutive times (None if unclear)."""
    ordered = ts if all(ts[i] < ts[i + 1] for i in range(min(len(ts), 201) - 1)) else sorted(ts)
    gaps = Counter(
        int((ordered[i + 1] - ordered[i]).total_seconds())
        for i in range(min(len(ordered), 201) - 1)
        if ordered[i + 1] != ordered[i]
    )
    if not gaps:
        if len(ordered) >= 1:
            local = ordered[0] + _IST_DELTA
            if (local.hour, local.minute, local.second) == (0, 0, 0):
                return Timeframe.D1
        return None
    gap = gaps.most_common(1)[0][0]
    if gap == 86400:
        return Timeframe.D1
    for timeframe in Timeframe:
        if timeframe.minutes is not None and gap == timeframe.minutes * 60:
            return timeframe
    return None


def store_bars(store, symbol: str, timeframe: Timeframe, bars: Bars) -> tuple[int, int]:
    """Store checked, sorted `bars` with EMAs in one transaction.

    Returns (rows the store inserted or changed, stored candles after the first
    imported time that were rewritten with recomputed EMAs).

    The EMAs equal a batch computation over the symbol's whole stored series in
    this timeframe:
    - appended after stored candles: they continue from the last stored candle's
      EMAs (exact once all four are seeded, i.e. 200 candles; before that the few
      stored closes are replayed);
    - overlapping or preceding stored candles: the imported bars replace stored ones
      at the same times, and every stored candle from the first imported time on is
      rewritten with recomputed EMAs in the same transaction (`restated`).
    A writer appending to the same series while this runs (the live candle
    aggregator) could store one candle on the old EMAs; import history while the
    feed for that symbol is stopped, or re-import to repair.
    """
    context = _stored_context(store, symbol, timeframe, bars.ts[0])
    ts, opens, highs, lows, closes, volumes = _merge(bars, context.tail)
    emas = _emas(context, closes)
    n = len(ts)
    candles = list(
        map(Candle, [symbol] * n, [timeframe] * n, ts, opens, highs, lows, closes, volumes, *emas)
    )
    changed = store.bulk_load(candles)
    return changed, n - len(bars)


# --- storing with EMAs ------------------------------------------------------------------------


@dataclass
class _Context:
    """What is stored around an import's first time."""

    prior: list[Candle]  # stored candles before it (the last 200, or all of them)
    complete: bool  # `prior` is the whole series before it (needed to replay closes)
    tail: list[Candle]  # every stored candle from it on
    reload: Callable[[], list[Candle]]  # the whole series before it


def _stored_context(store, symbol: str, timeframe: Timeframe, first: datetime) -> _Context:
    def everything_before() -> list[Candle]:
        return store.candles(symbol, timeframe, end=first)

    span = store.first_last(symbol, timeframe)
    if span is None:
        return _Context([], True, [], everything_before)
    stored_first, stored_last = span
    if stored_last < first:  # the common case: appending
        longest = max(EMA_PERIODS)
        prior = store.last_candles(symbol, timeframe, longest)
        return _Context(prior, len(prior) < longest, [], everything_before)
    tail = store.candles(symbol, timeframe, start=first)
    prior = everything_before() if stored_first < first else []
    return _Context(prior, True, tail, everything_before)


def _merge(bars: Bars, tail: list[Candle]):
    """The imported bars plus stored candles at other times from `tail`, in time order."""
    if not tail:
        return bars.ts, bars.open, bars.high, bars.low, bars.close, bars.volume
    rows = {c.ts: (c.ts, c.open, c.high, c.low, c.close, c.volume) for c in tail}
    for row in zip(bars.ts, bars.open, bars.high, bars.low, bars.close, bars.volume, strict=True):
        rows[row[0]] = row
    merged = [rows[t] for t in sorted(rows)]
    return tuple(list(column) for column in zip(*merged, strict=True))


def _emas(context: _Context, closes: list[float]) -> list[list[float | None]]:
    """EMA columns (one per period) for `closes`, continuing the stored series before them.

    From the last stored candle's EMAs when all four are there (EMAs continue exactly
    from a stored value); otherwise by replaying the stored closes from the series'
    first candle, which fewer than 200 stored candles always need.
    """
    prior = context.prior
    if prior:
        last = prior[-1]
        values = (last.ema_9, last.ema_21, last.ema_50, last.ema_200)
        if None not in values:
            return [
                _continue_ema(closes, period, value)
                for period, value in zip(EMA_PERIODS, values, strict=True)
            ]
        if not context.complete:  # 200+ candles stored without EMAs: replay them all
            prior = context.reload()
    history = [c.close for c in prior] + closes
    skip = len(prior)
    return [ema_series(history, period)[skip:] for period in EMA_PERIODS]


def _continue_ema(closes: list[float], period: int, value: float) -> list[float | None]:
    """ema_series continued from a seeded `value`: the same float operations, in order."""
    alpha = 2.0 / (period + 1)
    out: list[float | None] = []
    append = out.append
    for close in closes:
        value += alpha * (close - value)
        append(value)
    return out


# --- parsing ----------------------------------------------------------------------------------


@dataclass
class _Parsed:
    bars: Bars
    symbol: str | None
    errors: list[tuple[int, str]]
    first_data_line: int


@dataclass
class _Layout:
    name: str
    header_lines: int
    ncols: int | None  # None: any count is fine (checked: enough columns)
    index: dict[str, int]  # field -> 0-based column; "time" joins a split date/time
    tick: float
    symbol: str | None = None


def _read_text(path: Path) -> str:
    name = path.name
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CsvImportError(name, [f"{name}: no such file ({path})"]) from None
    except OSError as exc:
        raise CsvImportError(name, [f"{name}: cannot read it: {exc.strerror or exc}"]) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise CsvImportError(name, [f"{name}:{line}: not UTF-8 text (byte {exc.start})"]) from None


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except OSError:
        return 0


def _parse(
    text: str, name: str, opts: ImportOptions, progress: Progress | None, total: int
) -> _Parsed:
    symbol = (opts.symbol or symbol_from_filename(name) or "").upper() or None
    if not text.strip():
        return _Parsed(Bars(), symbol, [(1, "empty file: no header and no rows")], 1)
    head, numbered = _rows(text, opts.delimiter)
    layout = _detect_layout(head, opts)
    if isinstance(layout, tuple):
        return _Parsed(Bars(), symbol, [layout], 1)
    symbol = symbol or (layout.symbol.upper() if layout.symbol else None)
    first_line = layout.header_lines + 1
    try:
        zone = _zone(opts.tz)
    except ValueError as exc:
        return _Parsed(Bars(), symbol, [(0, str(exc))], first_line)
    numbered = itertools.islice(numbered, layout.header_lines, None)
    bars, errors = _parse_rows(numbered, layout, opts.date_format, zone, progress, total)
    return _Parsed(bars, symbol, errors, first_line)


def _rows(text: str, delimiter: str) -> tuple[list[list[str]], Iterator[tuple[int, list[str]]]]:
    """(the first rows, for layout detection; (physical line, fields) for every row).

    Plain files are split directly, twice as fast as the csv module, and lazily (a list
    of lists would wake the garbage collector over and over); files with quotes or bare
    carriage returns go through csv, which may join lines into one row.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if '"' not in text and "\r" not in text and len(delimiter) == 1:
        lines = text.split("\n")
        head = [line.split(delimiter) for line in lines[:3]]
        return head, enumerate(map(str.split, lines, repeat(delimiter)), 1)
    head = list(itertools.islice(csv.reader(io.StringIO(text), delimiter=delimiter), 3))
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, skipinitialspace=True)
    return head, ((reader.line_num, row) for row in reader)


def _zone(name: str) -> tzinfo:
    if name in ("Asia/Kolkata", "Asia/Calcutta", "IST"):
        return IST  # fixed offset: exact for India and much faster than zoneinfo
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use e.g. Asia/Kolkata or UTC)") from None


def _detect_layout(head: list[list[str]], opts: ImportOptions) -> _Layout | tuple[int, str]:
    """The layout from the first rows, or (line, problem)."""
    if opts.layout not in LAYOUTS:
        return (0, f"unknown layout {opts.layout!r}; choose one of {', '.join(LAYOUTS)}")
    tick = opts.tick_size
    custom = opts.layout == "custom" or opts.columns or opts.column_order or not opts.header
    if custom:
        return _custom_layout(head, opts)
    first = [cell.strip() for cell in head[0]] if head else []
    is_yfinance = (
        len(head) >= 2 and first[:1] == ["Price"] and [c.strip() for c in head[1][:1]] == ["Ticker"]
    )
    if opts.layout == "yfinance" or (opts.layout == "auto" and is_yfinance):
        if not is_yfinance:
            return (1, "not the yfinance layout: expected header rows 'Price,…' and 'Ticker,…'")
        names = {c.lower(): i for i, c in enumerate(first) if i > 0}
        index = {"ts": 0}
        for key in ("open", "high", "low", "close", "volume"):
            if key not in names:
                return (1, f"yfinance header lacks the {key.capitalize()} column")
            index[key] = names[key]
        third = [c.strip().lower() for c in head[2][:1]] if len(head) > 2 else []
        header_lines = 3 if third and third[0] in ("datetime", "date") else 2
        ticker = head[1][index["close"]].strip() if len(head[1]) > index["close"] else ""
        symbol = ticker.split(".", 1)[0] or None
        return _Layout(
            "yfinance",
            header_lines,
            len(first),
            index,
            YFINANCE_TICK if tick is None else tick,
            symbol,
        )
    lowered = [c.lower() for c in first]
    index = {}
    for key, aliases in _HEADER_NAMES.items():
        for alias in aliases:
            if alias in lowered:
                index[key] = lowered.index(alias)
                break
    missing = [key for key in FIELDS if key not in index]
    if missing:
        if first and _looks_like_time(first[0]):
            return (1, "no header row; give the column order (no-header with columns)")
        shown = ",".join(first)[:120]
        return (
            1,
            f"unknown layout: header {shown!r} lacks column(s) {', '.join(missing)}; "
            "give a column mapping",
        )
    return _Layout("kite", 1, len(first), index, tick or 0.0)


def _custom_layout(head: list[list[str]], opts: ImportOptions) -> _Layout | tuple[int, str]:
    first = [cell.strip() for cell in head[0]] if head else []
    if opts.column_order:
        index = {key: i for i, key in enumerate(opts.column_order) if key}
    elif opts.columns:
        index = {}
        for key, where in opts.columns.items():
            if opts.header and not str(where).isdigit():
                names = [c.lower() for c in first]
                if str(where).lower() not in names:
                    return (1, f"header has no column {where!r} (for {key})")
                index[key] = names.index(str(where).lower())
            else:
                index[key] = int(where) - 1
    elif not opts.header:
        index = {key: i for i, key in enumerate(FIELDS)}
    else:
        return _detect_layout(head, ImportOptions(layout="kite", tick_size=opts.tick_size))
    unknown = sorted(set(index) - set(FIELDS) - {"date", "time"})
    if unknown:
        return (
            0,
            f"unknown field(s) {', '.join(unknown)}; use {', '.join(FIELDS)} (or date, time)",
        )
    if "ts" not in index and "date" in index:
        index["ts"] = index.pop("date")
    missing = [key for key in ("ts", "open", "high", "low", "close") if key not in index]
    if missing:
        return (1 if opts.header else 0, f"no column given for {', '.join(missing)}")
    if any(i < 0 for i in index.values()):
        return (0, "column numbers start at 1")
    return _Layout("custom", 1 if opts.header else 0, None, index, opts.tick_size or 0.0)


def _looks_like_time(cell: str) -> bool:
    try:
        datetime.fromisoformat(cell.strip())
    except ValueError:
        return False
    return True


def _parse_rows(
    numbered: Iterable[tuple[int, list[str]]],
    layout: _Layout,
    date_format: str | None,
    zone: tzinfo,
    progress: Progress | None,
    total: int,
) -> tuple[Bars, list[tuple[int, str]]]:
    """The hot loop: parse and check every row, keeping good rows and every problem.

    Written for speed (the import must run at 300,000 rows/s end to end): locals
    only, one comparison chain for the common all-good row, and ISO times parsed
    as (date part, time-of-day part) through two small caches when the zone has a
    fixed offset. A row failing the fast path is parsed again slowly to name every
    problem in it.
    """
    bars = Bars()
    errors: list[tuple[int, str]] = []
    index = layout.index
    ti, oi, hi, li, ci = index["ts"], index["open"], index["high"], index["low"], index["close"]
    vi = index.get("volume")
    tmi = index.get("time")
    ncols = layout.ncols
    need = max(index.values()) + 1
    tick = layout.tick
    scale = 0.0
    if tick:
        scale = round(1.0 / tick)
        if abs(scale * tick - 1.0) > 1e-9:
            scale = 0.0  # a tick that is not 1/n: the slow rounding
    parse_time = _time_parser(date_format, zone)
    cached = date_format is None and tmi is None and isinstance(zone, timezone)
    days = _DAY_CACHE if len(_DAY_CACHE) < _DAY_CACHE_MAX else {}
    times: dict[str, timedelta] = {}
    day_get, time_get = days.get, times.get
    inf = _INF
    ts_append, o_append, h_append = bars.ts.append, bars.open.append, bars.high.append
    l_append, c_append, v_append = bars.low.append, bars.close.append, bars.volume.append
    line_append = bars.lines.append
    next_progress = _PROGRESS_EVERY
    count = 0
    for line, row in numbered:
        if len(row) != ncols:
            if len(row) == 1 and not row[0].strip() or not row:
                continue  # a blank line
            if ncols is not None or len(row) < need:
                expected = ncols if ncols is not None else f"at least {need}"
                errors.append((line, f"expected {expected} columns, found {len(row)}"))
                continue
        try:
            if cached:
                raw = row[ti]
                day = day_get(raw[:10])
                tod = time_get(raw[10:])
                t = (
                    day + tod
                    if day is not None and tod is not None
                    else _learn(raw, days, times, parse_time)
                )
            else:
                t = parse_time(row[ti] if tmi is None else f"{row[ti]} {row[tmi]}")
            o = float(row[oi])
            h = float(row[hi])
            low = float(row[li])
            c = float(row[ci])
            v = int(row[vi]) if vi is not None else 0
            if tick:
                if scale:
                    o = round(o * scale) / scale
                    h = round(h * scale) / scale
                    low = round(low * scale) / scale
                    c = round(c * scale) / scale
                else:
                    o, h, low, c = (_round_to(x, tick) for x in (o, h, low, c))
        except (ValueError, OverflowError):  # OverflowError: rounding inf
            parsed = _slow_row(row, index, parse_time, tick)
            if isinstance(parsed, list):
                errors.extend((line, problem) for problem in parsed)
                continue
            t, o, h, low, c, v = parsed
        if not (0.0 < low <= o <= h < inf and low <= c <= h and v >= 0):
            errors.extend((line, problem) for problem in check_prices(o, h, low, c, v))
            continue
        ts_append(t)
        o_append(o)
        h_append(h)
        l_append(low)
        c_append(c)
        v_append(v)
        line_append(line)
        count += 1
        if count >= next_progress and progress is not None:
            next_progress += _PROGRESS_EVERY
            progress(int(count * _PARSE_SHARE), total)
    return bars, errors


def _learn(raw: str, days: dict, times: dict, parse_time) -> datetime:
    """Parse an ISO time; remember its date part and time-of-day part for the next rows.

    With a fixed-offset zone, `YYYY-MM-DD` + suffix is always (that date's 00:00 UTC) +
    (the suffix's time of day minus its offset), so the two parts cache separately.
    """
    head, tail = raw[:10], raw[10:]
    tod = times.get(tail)
    if tod is not None:  # a new date with a known time of day: the common miss
        try:
            day = date.fromisoformat(head)
        except ValueError:
            return parse_time(raw)
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        days[head] = midnight
        return midnight + tod
    t = parse_time(raw)
    if tail[:1] in ("", " ", "T") and head == head.strip():
        try:
            day = date.fromisoformat(head)
        except ValueError:
            return t
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        tod = t - midnight
        if timedelta(days=-2) < tod < timedelta(days=2):
            times[tail] = tod
            days[head] = midnight
    return t


def _slow_row(row: list[str], index: dict[str, int], parse_time, tick: float):
    """Parse one row that failed the fast path: its values, or every problem in it."""
    problems: list[str] = []
    raw_time = (
        row[index["ts"]] if "time" not in index else f"{row[index['ts']]} {row[index['time']]}"
    )
    try:
        t = parse_time(raw_time)
    except ValueError:
        t = None
        shown = raw_time.strip()
        problems.append(f"time {shown!r} is not a valid date-time" if shown else "time is empty")
    prices: list[float] = []
    for key in ("open", "high", "low", "close"):
        cell = row[index[key]].strip()
        try:
            value = float(cell)
        except ValueError:
            problems.append(f"{key} {cell!r} is not a number" if cell else f"{key} is empty")
            continue
        prices.append(_round_to(value, tick) if tick and math.isfinite(value) else value)
    volume: float = 0
    if "volume" in index:
        cell = row[index["volume"]].strip()
        try:
            volume = int(cell)
        except ValueError:
            try:
                volume = float(cell)  # yfinance writes 1234.0
            except ValueError:
                problems.append(f"volume {cell!r} is not a number" if cell else "volume is empty")
    if problems:
        return problems
    o, h, low, c = prices
    price_problems = check_prices(o, h, low, c, volume)
    if price_problems:
        return price_problems
    return t, o, h, low, c, int(volume)


def _time_parser(date_format: str | None, zone: tzinfo) -> Callable[[str], datetime]:
    """str → aware UTC datetime; naive times are in `zone`."""
    strptime = datetime.strptime
    fromiso = datetime.fromisoformat

    def parse(raw: str) -> datetime:
        raw = raw.strip()
        t = strptime(raw, date_format) if date_format else fromiso(raw)
        if t.tzinfo is None:
            return _localize(t, zone)
        return t.astimezone(UTC)

    return parse


def _localize(t: datetime, zone: tzinfo) -> datetime:
    return t.replace(tzinfo=zone).astimezone(UTC)


def _round_to(value: float, tick: float) -> float:
    scale = round(1.0 / tick)
    if abs(scale * tick - 1.0) <= 1e-9:
        return round(value * scale) / scale
    decimals = max(0, -math.floor(math.log10(tick)) + 2)
    return round(round(value / tick) * tick, decimals)


# --- messages ---------------------------------------------------------------------------------


def _num(value: float) -> str:
    return str(int(value)) if isinstance(value, int) else repr(float(value))


def _ist(t: datetime) -> str:
    return (t + _IST_DELTA).strftime("%Y-%m-%d %H:%M IST")


def _undetected_timeframe(ts: list[datetime]) -> str:
    if len(ts) < 2:
        return "cannot tell the timeframe from a single intraday row; give the timeframe"
    ordered = sorted(ts[:201])
    gaps = Counter(b - a for a, b in itertools.pairwise(ordered) if b != a)
    common = f"{gaps.most_common(1)[0][0]}" if gaps else "none"
    return (
        f"cannot tell the timeframe from the spacing of the times (most common gap: {common}, "
        f"not one of {', '.join(tf.value for tf in Timeframe)}); give the timeframe"
    )


def _format_errors(name: str, errors: list[tuple[int, str]]) -> list[str]:
    errors = sorted(errors, key=lambda item: item[0])
    shown = [
        f"{name}:{line}: {problem}" if line else f"{name}: {problem}"
        for line, problem in errors[:MAX_ERRORS]
    ]
    if len(errors) > MAX_ERRORS:
        shown.append(f"{name}: … and {len(errors) - MAX_ERRORS} more problem(s)")
    return shown
