"""Import OHLCV candles from CSV files: read, check every row, store each file whole or not at all.

Both layouts of ../shared/data are read without options, anything else through
ImportOptions (see csv_layouts). Every problem of a file is reported as
`<file>:<line>: <what>` with the physical line in the file (header rows counted),
and a file is stored in one transaction or not at all. The modules doing the work:
csv_layouts (which columns hold what), csv_rows (parsing), bars (the checks shared
with the Kite historical fetch) and bar_store (storing with EMAs).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from Webapp.market.bar_store import BarWriter, Stored, store_bars
from Webapp.market.bars import Bars, check_times, detect_timeframe, gc_paused, undetected_timeframe
from Webapp.market.calendar import MarketCalendar
from Webapp.market.candle import Timeframe
from Webapp.market.csv_layouts import FIELDS, LAYOUTS, YFINANCE_TICK, ImportOptions
from Webapp.market.csv_rows import parse_csv
from Webapp.market.ohlcv import InvalidCandles
from Webapp.market.ohlcv_loads import loader

__all__ = [
    "FIELDS",
    "LAYOUTS",
    "MAX_ERRORS",
    "YFINANCE_TICK",
    "CsvImportError",
    "ImportOptions",
    "ImportReport",
    "expand_paths",
    "import_csv",
    "import_many",
    "symbol_from_filename",
]

Progress = Callable[[int, int], None]

# At most this many problems are listed per file; the rest are counted.
MAX_ERRORS = 50
_SYMBOL_IN_NAME = re.compile(r"[A-Za-z0-9&.\-]+")
_MAX_SYMBOL = 64  # what the ohlcv table accepts


@dataclass
class ImportReport:
    """What became of one file: `errors` is empty when it was stored.

    `problems` is how many problems a refused file has: `errors` lists at most
    MAX_ERRORS of them, then one line counting the rest.

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
    problems: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


class CsvImportError(Exception):
    """A file was refused; nothing of it was stored. `errors` are `<file>:<line>: ...` lines,
    at most MAX_ERRORS and a line counting the rest; `problems` is the true count."""

    def __init__(self, file: str, errors: list[str], problems: int | None = None) -> None:
        self.file = file
        self.errors = errors
        self.problems = len(errors) if problems is None else problems
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
        checked = _check_file(Path(path), options or ImportOptions(), progress, calendar)
        try:
            changed, restated = store_bars(store, checked.symbol, checked.timeframe, checked.bars)
        except InvalidCandles as exc:  # a database constraint the checks did not foresee
            raise CsvImportError(checked.name, [f"{checked.name}: {exc}"]) from exc
    if progress is not None:
        progress(checked.total, checked.total)
    return checked.report(changed, restated)


def import_many(
    store,
    paths: Iterable[str | Path],
    options: ImportOptions | None = None,
    progress: Progress | None = None,
    calendar: MarketCalendar | None = None,
) -> list[ImportReport]:
    """Import each file whole or not at all; a refused file does not stop the others.

    A directory stands for every *.csv in it (sorted). `progress` counts rows over
    all files (the total is estimated from line counts up front). On PostgreSQL the
    server stores files while the next ones are parsed, and new files may share a
    COPY and its commit (see ohlcv_loads): each is still stored whole or not at all.
    """
    files = expand_paths(paths)
    sizes = [_count_lines(path) for path in files]
    total = sum(sizes)
    calendar = calendar or MarketCalendar.nse()
    options = options or ImportOptions()
    reports: list[ImportReport | None] = [None] * len(files)
    shown = 0

    def advance(rows_done: int) -> None:
        nonlocal shown  # storing finishes a file after the next one started parsing
        if progress is not None and rows_done > shown:
            shown = rows_done
            progress(rows_done, total)

    def file_done(i: int, report: ImportReport, rows_done: int) -> None:
        reports[i] = report
        advance(rows_done)

    with gc_paused(), loader(store) as load:
        writer = BarWriter(load)
        base = 0
        for i, (path, size) in enumerate(zip(files, sizes, strict=True)):

            def parsing(done: int, _total: int, base: int = base, size: int = size) -> None:
                advance(base + min(done, size))

            base += size
            try:
                checked = _check_file(path, options, parsing, calendar)
            except CsvImportError as exc:
                reports[i] = _refused(path.name, exc)
                advance(base)
                continue
            stored = _on_stored(checked, lambda report, i=i, end=base: file_done(i, report, end))
            writer.store(checked.symbol, checked.timeframe, checked.bars, stored)
        writer.finish()
    advance(total)
    missing = [files[i].name for i, report in enumerate(reports) if report is None]
    if missing:  # every file is reported before the loader's block ends
        raise RuntimeError(f"no outcome for {', '.join(missing)}")
    return reports  # type: ignore[return-value]


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


@dataclass
class _Checked:
    """A file whose every row passed: what to store and what to report."""

    name: str
    symbol: str
    timeframe: Timeframe
    bars: Bars
    notes: list[str]
    total: int  # lines in the file, for progress

    def report(self, changed: int, restated: int) -> ImportReport:
        return ImportReport(
            file=self.name,
            symbol=self.symbol,
            timeframe=self.timeframe,
            rows=len(self.bars),
            first=self.bars.ts[0],
            last=self.bars.ts[-1],
            changed=changed,
            restated=restated,
            notes=self.notes,
        )


def _check_file(
    path: Path, opts: ImportOptions, progress: Progress | None, calendar: MarketCalendar | None
) -> _Checked:
    """Read and check every row of `path`; raises CsvImportError listing every problem."""
    name = path.name
    calendar = calendar or MarketCalendar.nse()
    text = _read_text(path)
    total = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    parsed = parse_csv(text, opts, progress, total)
    bars, errors = parsed.bars, parsed.errors
    symbol = (opts.symbol or symbol_from_filename(name) or "").upper() or None
    symbol = symbol or (parsed.layout_symbol.upper() if parsed.layout_symbol else None)
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
            errors.append((0, undetected_timeframe(bars.ts)))
    notes: list[str] = []
    if bars.ts and timeframe is not None:
        errors.extend(check_times(bars, timeframe, calendar, notes))
    elif not bars.ts and not errors:
        errors.append((parsed.first_data_line, "no candle rows in the file"))
    if errors:
        raise CsvImportError(name, _format_errors(name, errors), len(errors))
    assert symbol is not None and timeframe is not None
    return _Checked(name, symbol, timeframe, bars, notes, total)


def _on_stored(checked: _Checked, then: Callable[[ImportReport], None]) -> Stored:
    """The BarWriter callback that turns a file's outcome into its report."""

    def stored(changed: int, restated: int, error: InvalidCandles | None) -> None:
        if error is None:
            then(checked.report(changed, restated))
        else:
            refusal = CsvImportError(checked.name, [f"{checked.name}: {error}"])
            then(_refused(checked.name, refusal))

    return stored


def _refused(name: str, refusal: CsvImportError) -> ImportReport:
    return ImportReport(
        name, None, None, 0, None, None, errors=refusal.errors, problems=refusal.problems
    )


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


def _format_errors(name: str, errors: list[tuple[int, str]]) -> list[str]:
    errors = sorted(errors, key=lambda item: item[0])
    shown = [
        f"{name}:{line}: {problem}" if line else f"{name}: {problem}"
        for line, problem in errors[:MAX_ERRORS]
    ]
    if len(errors) > MAX_ERRORS:
        shown.append(f"{name}: … and {len(errors) - MAX_ERRORS} more problem(s)")
    return shown
