"""Flask CLI for candles: `flask data import`, `flask data fetch`, `flask data coverage`."""

from __future__ import annotations

import contextlib
import os
import sys
from datetime import datetime
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from Webapp.market.calendar import IST
from Webapp.market.candle import Timeframe
from Webapp.market.csv_import import LAYOUTS, ImportOptions, ImportReport, expand_paths, import_many
from Webapp.market.ohlcv import OHLCVStore
from Webapp.web.timefmt import ist

data_cli = AppGroup("data", help="Candles: import CSV files, fetch from Kite, show coverage.")

_TIMEFRAMES = click.Choice([tf.value for tf in Timeframe])
_DATE = click.DateTime(["%Y-%m-%d"])


def _store() -> OHLCVStore:
    """The market database of this app, migrated before use."""
    store = OHLCVStore(current_app.extensions["ladder"].settings.resolved_market_database_url)
    store.migrate()
    return store


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


def _when(ts: datetime | None, timeframe: Timeframe | None) -> str:
    if ts is None:
        return "-"
    return ist(ts, "%Y-%m-%d" if timeframe is Timeframe.D1 else "%Y-%m-%d %H:%M")


# --- import ---------------------------------------------------------------------------------


def parse_columns(spec: str, header: bool) -> dict:
    """`ts=Date,open=O,...` → a mapping; a bare list `ts,open,high,...` → a column order."""
    items = [item.strip() for item in spec.split(",")]
    if all("=" in item for item in items if item):
        mapping = {}
        for item in items:
            key, _, where = item.partition("=")
            where = where.strip()
            mapping[key.strip()] = int(where) if not header and where.isdigit() else where
        return {"columns": mapping}
    if any("=" in item for item in items):
        raise click.BadParameter("mix of field=column and a bare order; use one form")
    return {"column_order": [("" if item in ("-", "skip") else item) for item in items]}


@data_cli.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--symbol", help="Symbol of the candles (one file only); else from the file name.")
@click.option("--timeframe", type=_TIMEFRAMES, help="Else detected from the spacing of the times.")
@click.option("--layout", type=click.Choice(LAYOUTS), default="auto", show_default=True)
@click.option(
    "--columns",
    help="Field to column: 'ts=Date,open=O,high=H,low=L,close=C,volume=V' (header names, or "
    "1-based numbers with --no-header), or the order 'ts,open,high,low,close,volume' "
    "('-' skips a column). A split date and time: 'date=Date,time=Time,...'.",
)
@click.option("--date-format", help="strptime format of the time column, e.g. '%d-%m-%Y %H:%M'.")
@click.option(
    "--tz", default="Asia/Kolkata", show_default=True, help="Zone of times without an offset."
)
@click.option("--no-header", is_flag=True, help="The file has no header row.")
@click.option("--delimiter", default=",", show_default=True)
@click.option("--tick-size", type=float, help="Round prices to this tick (0: never round).")
def import_command(
    paths: tuple[Path, ...],
    symbol: str | None,
    timeframe: str | None,
    layout: str,
    columns: str | None,
    date_format: str | None,
    tz: str,
    no_header: bool,
    delimiter: str,
    tick_size: float | None,
) -> None:
    """Import CSV candle files (a folder: every *.csv in it), each whole or not at all."""

    files = expand_paths(paths)
    if not files:
        _fail("no .csv files found in " + ", ".join(str(p) for p in paths))
    if symbol and len(files) > 1:
        _fail(f"--symbol names one file's symbol, but {len(files)} files were given")
    extra = parse_columns(columns, not no_header) if columns else {}
    options = ImportOptions(
        symbol=symbol.strip().upper() if symbol else None,
        timeframe=Timeframe(timeframe) if timeframe else None,
        layout=layout,
        date_format=date_format,
        tz=tz,
        header=not no_header,
        delimiter=delimiter.encode().decode("unicode_escape"),  # lets '\t' mean a tab
        tick_size=tick_size,
        **extra,
    )
    store = _store()
    try:
        with contextlib.ExitStack() as stack:
            bar = None

            def on_progress(done: int, total: int) -> None:
                nonlocal bar
                if bar is None:
                    bar = stack.enter_context(
                        click.progressbar(length=max(total, 1), label="Importing rows")
                    )
                bar.update(done - bar.pos)

            reports = import_many(store, files, options, progress=on_progress)
    finally:
        store.dispose()
    failed = [r for r in reports if r.errors]
    for report in reports:
        _echo_report(report)
    stored = sum(r.rows for r in reports if not r.errors)
    click.echo(f"Imported {len(reports) - len(failed)} of {len(reports)} file(s), {stored:,} rows.")
    if failed:
        click.echo(f"{len(failed)} file(s) not imported (nothing of them stored).", err=True)
        sys.exit(1)


def _echo_report(report: ImportReport) -> None:
    if report.errors:
        click.echo(f"{report.file}: NOT imported, {report.problems} problem(s):", err=True)
        for line in report.errors:
            click.echo(f"  {line}", err=True)
        return
    tf = report.timeframe
    line = (
        f"{report.file}: {report.symbol} {tf}, {report.rows:,} rows, "
        f"{_when(report.first, tf)} to {_when(report.last, tf)} IST, "
        f"{report.changed:,} new or changed"
    )
    if report.restated:
        line += f", EMAs of {report.restated:,} later candles recomputed"
    click.echo(line)
    for note in report.notes:
        click.echo(f"  note: {note}")


# --- fetch ----------------------------------------------------------------------------------


@data_cli.command("fetch")
@click.argument("symbols", nargs=-1)
@click.option("--timeframe", required=True, type=_TIMEFRAMES)
@click.option("--from", "start", required=True, type=_DATE, help="First IST date, YYYY-MM-DD.")
@click.option("--to", "end", type=_DATE, help="Last IST date (default: today in IST).")
@click.option("--universe", help="Fetch every symbol of a universe (e.g. nifty50) or CSV file.")
def fetch_command(
    symbols: tuple[str, ...],
    timeframe: str,
    start: datetime,
    end: datetime | None,
    universe: str | None,
) -> None:
    """Fetch candles from Kite's historical API (resumable: stored windows are skipped).

    Needs KITE_API_KEY and KITE_ACCESS_TOKEN in the environment (KITE_ROOT points the
    client elsewhere, e.g. at kitesim).
    """
    from kiteconnect import KiteConnect

    from Webapp.market.history import HistoryFetchError, fetch_history
    from Webapp.market.instruments import InstrumentMap, UnknownInstrument
    from Webapp.market.universe import load_universe

    wanted = [s.strip().upper() for s in symbols]
    if universe:
        try:
            wanted += [member.symbol for member in load_universe(universe)]
        except (OSError, ValueError) as exc:
            _fail(str(exc))
    wanted = list(dict.fromkeys(wanted))
    if not wanted:
        _fail("name the symbols to fetch, or give --universe")
    api_key = os.environ.get("KITE_API_KEY", "").strip()
    access_token = os.environ.get("KITE_ACCESS_TOKEN", "").strip()
    if not api_key or not access_token:
        _fail("set KITE_API_KEY and KITE_ACCESS_TOKEN (the day's access token) to fetch")
    first = start.date()
    last = end.date() if end else datetime.now(IST).date()
    if last < first:
        _fail(f"--to {last} is before --from {first}")

    kite = KiteConnect(api_key, root=os.environ.get("KITE_ROOT") or None)
    kite.set_access_token(access_token)
    try:
        instruments = InstrumentMap.from_kite(kite.instruments("NSE"))
    except Exception as exc:  # kiteconnect's exceptions, or the network
        _fail(f"could not read Kite's instrument list: {type(exc).__name__}: {exc}")
    unknown = []
    for symbol in wanted:
        try:
            instruments.token(symbol)
        except UnknownInstrument:
            unknown.append(symbol)
    if unknown:
        _fail(f"not in Kite's NSE instrument list: {', '.join(unknown)}")

    store = _store()
    tf = Timeframe(timeframe)
    try:
        with click.progressbar(length=1, label=f"Fetching {tf} candles") as bar:

            def on_progress(done: int, total: int) -> None:
                bar.length = total
                bar.update(done - bar.pos)

            report = fetch_history(kite, store, instruments, wanted, tf, first, last, on_progress)
    except HistoryFetchError as exc:
        _echo_fetch(exc.report)
        click.echo(f"Error: {exc}", err=True)
        click.echo("Stored windows are kept; run the same command again to resume.", err=True)
        sys.exit(1)
    finally:
        store.dispose()
    _echo_fetch(report)
    click.echo(f"Fetched {report.rows:,} candles in {report.requests} request(s).")


def _echo_fetch(report) -> None:
    tf = report.timeframe
    for item in report.symbols:
        span = f", {_when(item.first, tf)} to {_when(item.last, tf)} IST" if item.first else ""
        click.echo(
            f"{item.symbol}: {item.chunks} window(s), {item.skipped} already stored, "
            f"{item.requests} request(s), {item.rows:,} candles{span}"
        )
    for note in report.notes:
        click.echo(f"  note: {note}")


# --- coverage -------------------------------------------------------------------------------


@data_cli.command("coverage")
@click.option("--symbol", help="Only this symbol.")
@click.option("--timeframe", type=_TIMEFRAMES, help="Only this timeframe.")
def coverage_command(symbol: str | None, timeframe: str | None) -> None:
    """What candles are stored: first and last (IST), count and missing bars per series."""
    store = _store()
    try:
        rows = store.coverage(
            symbol=symbol.strip().upper() if symbol else None, timeframe=timeframe
        )
    finally:
        store.dispose()
    if not rows:
        click.echo(
            "No candles stored" + (" for that selection." if symbol or timeframe else " yet.")
        )
        return
    table = [("symbol", "timeframe", "first (IST)", "last (IST)", "count", "gaps")]
    table += [
        (
            row.symbol,
            str(row.timeframe),
            _when(row.first, row.timeframe),
            _when(row.last, row.timeframe),
            f"{row.count:,}",
            f"{row.gaps:,}",
        )
        for row in rows
    ]
    widths = [max(len(cells[i]) for cells in table) for i in range(len(table[0]))]
    right = {4, 5}
    for cells in table:
        click.echo(
            "  ".join(
                cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                for i, cell in enumerate(cells)
            ).rstrip()
        )


def register(app: Flask) -> None:
    app.cli.add_command(data_cli)
