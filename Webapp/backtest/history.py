"""A backtest's market history: CSV candles into an OHLCV store, rolled up to the signal timeframe.

The scan reads the last closed signal-timeframe candle and its EMAs from the OHLCV
store (execution/signal_inputs.py). When the data is finer than that timeframe
(5m files, 15m signals), each session's bars are rolled up (market.rollup) and stored with
EMAs the way an import stores them (bar_store.store_bars), so a candle's EMAs use
only the closes before and at it: no look-ahead.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from Webapp.market.bar_store import store_bars
from Webapp.market.bars import Bars
from Webapp.market.candle import Candle, Timeframe
from Webapp.market.csv_import import import_csv
from Webapp.market.ohlcv import OHLCVStore
from Webapp.market.rollup import roll_up


def import_files(ohlcv: OHLCVStore, paths: Iterable[str | Path]) -> dict[str, list[Candle]]:
    """Import each CSV (any layout the importer reads as is) and read its candles back.

    Returns {symbol: candles oldest first}, as stored (prices on the tick). Raises
    CsvImportError for a file the importer refuses.
    """
    out: dict[str, list[Candle]] = {}
    for path in paths:
        report = import_csv(ohlcv, path)
        assert report.symbol is not None and report.timeframe is not None
        out[report.symbol] = ohlcv.candles(report.symbol, report.timeframe)
    return out


def store_signal_history(
    ohlcv: OHLCVStore,
    candles_by_symbol: dict[str, list[Candle]],
    timeframe: Timeframe,
) -> int:
    """Roll every symbol's candles up to `timeframe` and store them with EMAs; returns rows
    written. Candles already of `timeframe` are stored as they are."""
    written = 0
    for symbol, candles in candles_by_symbol.items():
        if not candles:
            continue
        bars = candles if candles[0].timeframe is timeframe else roll_up(candles, timeframe)
        columns = Bars.of(bars)
        written += store_bars(ohlcv, symbol, timeframe, columns)[0]
    return written
