"""CSV layouts: recognise the known ones (kite, yfinance) and build a custom one from ImportOptions.

- "kite": one header row naming the columns, e.g. `timestamp,open,high,low,close,volume,oi`
  (Kite/Upstox exports; also `Date,Open,High,Low,Close,Volume` and the like: names are
  matched case-insensitively, extra columns are ignored).
- "yfinance": three header rows (`Price,Close,High,Low,Open,Volume` / `Ticker,...` /
  `Datetime,...`), UTC times, float32 prices such as 1319.9000244140625 that are rounded
  to the 0.05 tick.
- "custom": a column mapping or order, a strptime date format, the time zone of naive
  times, no header, a delimiter, a tick size (see ImportOptions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from Webapp.market.calendar import IST
from Webapp.market.candle import Timeframe

YFINANCE_TICK = 0.05
FIELDS = ("ts", "open", "high", "low", "close", "volume")
LAYOUTS = ("auto", "kite", "yfinance", "custom")

# Header names the "kite" layout understands, lower-cased.
_HEADER_NAMES = {
    "ts": ("timestamp", "datetime", "date_time", "date", "time", "ts"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v"),
}


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
class Layout:
    """Where a file's fields are: `index` maps field -> 0-based column ("time" joins a
    split date and time); `ncols` is the exact column count, None for "at least enough"."""

    name: str
    header_lines: int
    ncols: int | None
    index: dict[str, int]
    tick: float
    symbol: str | None = None


def detect_layout(head: list[list[str]], opts: ImportOptions) -> Layout | tuple[int, str]:
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
        return Layout(
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
    return Layout("kite", 1, len(first), index, tick or 0.0)


def _custom_layout(head: list[list[str]], opts: ImportOptions) -> Layout | tuple[int, str]:
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
        return detect_layout(head, ImportOptions(layout="kite", tick_size=opts.tick_size))
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
    return Layout("custom", 1 if opts.header else 0, None, index, opts.tick_size or 0.0)


def zone(name: str) -> tzinfo:
    """The time zone of naive times; ValueError names an unknown one."""
    if name in ("Asia/Kolkata", "Asia/Calcutta", "IST"):
        return IST  # fixed offset: exact for India and much faster than zoneinfo
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use e.g. Asia/Kolkata or UTC)") from None


def _looks_like_time(cell: str) -> bool:
    try:
        datetime.fromisoformat(cell.strip())
    except ValueError:
        return False
    return True
