"""Parse CSV rows into Bars: whole columns at once when clean, else row by row naming each problem.

The import must run at 300,000 rows/s end to end, so a clean file (one the known
layouts describe, every line with its columns, every value readable and in OHLC
order) is parsed a column at a time by builtins running in C: split, float, int,
comparisons mapped over whole columns, times looked up in caches. Anything else
falls back to the row loop, which applies the same rules and names every problem
with its line; the fast path only ever accepts files the loop accepts, with the
same values.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from itertools import repeat
from operator import le, mul, truediv

from Webapp.market.bars import Bars, check_prices, forget_minutes
from Webapp.market.csv_layouts import ImportOptions, Layout, detect_layout, zone

Progress = Callable[[int, int], None]

_INF = math.inf
_PROGRESS_EVERY = 16384  # rows between progress calls while parsing
PARSE_SHARE = 0.6  # of the progress bar, the rest is storing
# ISO date string -> its 00:00 UTC; shared by imports (the same dates recur in every file).
_DAY_CACHE: dict[str, datetime] = {}
_DAY_CACHE_MAX = 100_000
# Per fixed-offset zone, a time as written -> its UTC datetime: files of one period share
# their times (47 symbols' 5-minute files hold the same 1,650), so most are looked up.
_TIME_CACHES: dict[tzinfo, dict[str, datetime]] = {}
_TIME_CACHE_MAX = 100_000


@dataclass
class Parsed:
    """A file's bars and problems; `layout_symbol` is what a yfinance header names."""

    bars: Bars
    layout_symbol: str | None
    errors: list[tuple[int, str]]
    first_data_line: int


def parse_csv(text: str, opts: ImportOptions, progress: Progress | None, total: int) -> Parsed:
    """Detect the layout of `text` and parse every row; (line, problem) for each problem."""
    if not text.strip():
        return Parsed(Bars(), None, [(1, "empty file: no header and no rows")], 1)
    lines, head, numbered = _rows(text, opts.delimiter)
    layout = detect_layout(head, opts)
    if isinstance(layout, tuple):
        return Parsed(Bars(), None, [layout], 1)
    first_line = layout.header_lines + 1
    try:
        tz = zone(opts.tz)
    except ValueError as exc:
        return Parsed(Bars(), layout.symbol, [(0, str(exc))], first_line)
    bars = None
    if lines is not None:
        bars = _parse_columns(lines, layout, opts.delimiter, opts.date_format, tz)
    if bars is not None:
        errors: list[tuple[int, str]] = []
        if progress is not None:
            progress(int(len(bars) * PARSE_SHARE), total)
    else:
        numbered = itertools.islice(numbered, layout.header_lines, None)
        bars, errors = _parse_rows(numbered, layout, opts.date_format, tz, progress, total)
    return Parsed(bars, layout.symbol, errors, first_line)


def _rows(
    text: str, delimiter: str
) -> tuple[list[str] | None, list[list[str]], Iterator[tuple[int, list[str]]]]:
    """(the lines when the file splits plainly, the first rows for layout detection,
    (physical line, fields) for every row).

    Plain files are split directly, twice as fast as the csv module, and lazily (a list
    of lists would wake the garbage collector over and over); files with quotes or bare
    carriage returns go through csv, which may join lines into one row.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if '"' not in text and "\r" not in text and len(delimiter) == 1:
        lines = text.split("\n")
        head = [line.split(delimiter) for line in lines[:3]]
        return lines, head, enumerate(map(str.split, lines, repeat(delimiter)), 1)
    head = list(itertools.islice(csv.reader(io.StringIO(text), delimiter=delimiter), 3))
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, skipinitialspace=True)
    return None, head, ((reader.line_num, row) for row in reader)


# --- the fast path: whole columns ---------------------------------------------------------------


def _parse_columns(
    lines: list[str], layout: Layout, delimiter: str, date_format: str | None, zone: tzinfo
) -> Bars | None:
    """Every row at once, or None when any row needs the row loop (a blank or short line,
    a value that does not parse, a bar out of OHLC order, a time format without a cache)."""
    index = layout.index
    if date_format is not None or "time" in index or not isinstance(zone, timezone):
        return None
    data = lines[layout.header_lines :]
    if data and data[-1] == "":
        data.pop()  # the newline ending the last line
    if not data:
        return None
    ncols = layout.ncols or data[0].count(delimiter) + 1
    if ncols < max(index.values()) + 1:
        return None
    separators = ncols - 1
    if not all(map(separators.__eq__, map(str.count, data, repeat(delimiter)))):
        return None
    cells = delimiter.join(data).split(delimiter)
    scale = 0.0
    if layout.tick:
        scale = round(1.0 / layout.tick)
        if abs(scale * layout.tick - 1.0) > 1e-9:
            return None  # a tick that is not 1/n: the row loop's slower rounding
    try:
        ts = _times(cells[index["ts"] :: ncols], zone)
        if ts is None:
            return None
        price_cells = [cells[index[key] :: ncols] for key in ("open", "high", "low", "close")]
        if scale:
            opens, highs, lows, closes = _rounded(price_cells, scale)
        else:
            opens, highs, lows, closes = (list(map(float, column)) for column in price_cells)
        vi = index.get("volume")
        volumes = list(map(int, cells[vi::ncols])) if vi is not None else [0] * len(data)
    except (ValueError, OverflowError):  # OverflowError: rounding inf
        return None
    # The row loop's `0 < low <= open <= high < inf and low <= close <= high and volume >= 0`;
    # a NaN fails the first four.
    if not (
        all(map(le, lows, opens))
        and all(map(le, opens, highs))
        and all(map(le, lows, closes))
        and all(map(le, closes, highs))
        and min(lows) > 0.0
        and max(highs) < _INF
        and min(volumes) >= 0
    ):
        return None
    first = layout.header_lines + 1
    lines_of = list(range(first, first + len(data)))
    return Bars(ts, opens, highs, lows, closes, volumes, lines_of)


def _times(raw: list[str], zone: timezone) -> list[datetime] | None:
    """Times as UTC datetimes through the zone's cache; None if one does not parse."""
    cache = _TIME_CACHES.get(zone)
    if cache is None or len(cache) > _TIME_CACHE_MAX:
        cache = _TIME_CACHES[zone] = {}
    ts = list(map(cache.get, raw))
    if None not in ts:
        return ts
    days = _DAY_CACHE if len(_DAY_CACHE) < _DAY_CACHE_MAX else {}
    of_day: dict[str, timedelta] = {}
    parse_time = _time_parser(None, zone)
    for i, t in enumerate(ts):
        if t is None:
            text = raw[i]
            try:
                t = _learn(text, days, of_day, parse_time)
            except ValueError:
                return None
            ts[i] = cache[text] = t
    return ts


def _rounded(columns: list[list[str]], scale: float) -> list[list[float]]:
    """Price columns read and rounded to the tick (round(x * scale) / scale, as the row
    loop does), each distinct text once: float32 artefacts repeat a lot."""
    distinct = list(dict.fromkeys(itertools.chain.from_iterable(columns)))
    values = map(truediv, map(round, map(mul, map(float, distinct), repeat(scale))), repeat(scale))
    value_of = dict(zip(distinct, values, strict=True)).__getitem__
    return [list(map(value_of, column)) for column in columns]


# --- the row loop: every problem named ----------------------------------------------------------


def _parse_rows(
    numbered: Iterable[tuple[int, list[str]]],
    layout: Layout,
    date_format: str | None,
    zone: tzinfo,
    progress: Progress | None,
    total: int,
) -> tuple[Bars, list[tuple[int, str]]]:
    """Parse and check every row, keeping good rows and every problem.

    Locals only, one comparison chain for the common all-good row, and ISO times
    parsed as (date part, time-of-day part) through two small caches when the zone
    has a fixed offset. A row failing the fast path is parsed again slowly to name
    every problem in it.
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
            progress(int(count * PARSE_SHARE), total)
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
            return t.replace(tzinfo=zone).astimezone(UTC)
        return t.astimezone(UTC)

    return parse


def _round_to(value: float, tick: float) -> float:
    scale = round(1.0 / tick)
    if abs(scale * tick - 1.0) <= 1e-9:
        return round(value * scale) / scale
    decimals = max(0, -math.floor(math.log10(tick)) + 2)
    return round(round(value / tick) * tick, decimals)


def forget_times() -> None:
    """Empty the time caches (a benchmark measuring a new process's first import)."""
    _TIME_CACHES.clear()
    _DAY_CACHE.clear()
    forget_minutes()
