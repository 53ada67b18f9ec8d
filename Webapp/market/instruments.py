"""Kite's instrument list: read it from the CSV dump or the API and map symbol ↔ instrument token.

Kite publishes every tradable instrument once a day as CSV
(https://api.kite.trade/instruments) with the columns below; the official
client's `KiteConnect.instruments()` returns the same rows as dicts with the
numbers already parsed. Tokens are what KiteTicker subscribes to and what the
historical API takes; the trader thinks in tradingsymbols on an exchange.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

COLUMNS = (
    "instrument_token",
    "exchange_token",
    "tradingsymbol",
    "name",
    "last_price",
    "expiry",
    "strike",
    "tick_size",
    "lot_size",
    "instrument_type",
    "segment",
    "exchange",
)
# What Instrument keeps; the other columns (prices, expiry, strike) change daily.
_REQUIRED = (
    "instrument_token",
    "tradingsymbol",
    "name",
    "tick_size",
    "lot_size",
    "instrument_type",
    "segment",
    "exchange",
)


class UnknownInstrument(LookupError):
    """A symbol or token that is not in the instrument list; the message names it."""


@dataclass(frozen=True, slots=True)
class Instrument:
    """One row of Kite's instrument list."""

    token: int  # instrument_token: what the ticker and the historical API take
    exchange: str  # NSE, BSE, NFO, ...
    symbol: str  # tradingsymbol, e.g. "INFY", "M&M", "NIFTY25DECFUT"
    name: str
    tick_size: float
    lot_size: int
    segment: str  # NSE, INDICES, NFO-FUT, NFO-OPT, ...
    instrument_type: str  # EQ, FUT, CE, PE


def read_instruments_csv(source: str | os.PathLike[str] | io.TextIOBase) -> list[Instrument]:
    """Instruments from Kite's CSV dump: a path, or an open text file.

    Raises ValueError naming the file and line for a missing column or a bad value.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return _read(handle, str(path))
    return _read(source, getattr(source, "name", "<instruments csv>"))


def _read(handle, where: str) -> list[Instrument]:
    reader = csv.DictReader(handle)
    missing = [c for c in _REQUIRED if c not in (reader.fieldnames or ())]
    if missing:
        raise ValueError(f"{where}:1: not Kite's instruments CSV, missing {', '.join(missing)}")
    # DictReader's line_num counts physical lines, so it is right even after a quoted newline.
    return [_instrument(row, f"{where}:{reader.line_num}") for row in reader]


def instruments_from_kite(records: Iterable[Mapping[str, object]]) -> list[Instrument]:
    """Instruments from `KiteConnect.instruments()` (a list of dicts, numbers parsed)."""
    return [_instrument(record, f"instruments()[{i}]") for i, record in enumerate(records)]


def _instrument(row: Mapping[str, object], where: str) -> Instrument:
    try:
        token = int(row["instrument_token"])  # type: ignore[arg-type]
        tick_size = float(row["tick_size"])  # type: ignore[arg-type]
        lot_size = int(row["lot_size"])  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: bad instrument row ({exc}): {dict(row)!r}") from None
    symbol, exchange = str(row["tradingsymbol"] or ""), str(row["exchange"] or "")
    if token <= 0 or not symbol or not exchange:
        raise ValueError(f"{where}: an instrument needs a token, a tradingsymbol and an exchange")
    return Instrument(
        token=token,
        exchange=exchange,
        symbol=symbol,
        name=str(row["name"] or ""),
        tick_size=tick_size,
        lot_size=lot_size,
        segment=str(row["segment"] or ""),
        instrument_type=str(row["instrument_type"] or ""),
    )


class InstrumentMap:
    """Lookups both ways: (symbol, exchange) → token and token → symbol."""

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        self._by_token: dict[int, Instrument] = {}
        self._by_symbol: dict[tuple[str, str], Instrument] = {}
        for ins in instruments:
            if ins.token in self._by_token:
                raise ValueError(f"instrument token {ins.token} is listed twice")
            key = (ins.exchange, ins.symbol)
            if key in self._by_symbol:
                raise ValueError(f"{ins.exchange}:{ins.symbol} is listed twice")
            self._by_token[ins.token] = ins
            self._by_symbol[key] = ins

    @classmethod
    def from_csv(cls, source: str | os.PathLike[str] | io.TextIOBase) -> InstrumentMap:
        return cls(read_instruments_csv(source))

    @classmethod
    def from_kite(cls, records: Iterable[Mapping[str, object]]) -> InstrumentMap:
        return cls(instruments_from_kite(records))

    def __len__(self) -> int:
        return len(self._by_token)

    def instrument(self, symbol: str, exchange: str = "NSE") -> Instrument:
        try:
            return self._by_symbol[(exchange, symbol)]
        except KeyError:
            raise UnknownInstrument(f"{exchange}:{symbol} is not in the instrument list") from None

    def token(self, symbol: str, exchange: str = "NSE") -> int:
        """The instrument token of `symbol` on `exchange`."""
        return self.instrument(symbol, exchange).token

    def symbol(self, token: int) -> str:
        """The tradingsymbol of an instrument token."""
        try:
            return self._by_token[token].symbol
        except KeyError:
            raise UnknownInstrument(f"instrument token {token} is not in the list") from None

    def by_token(self, token: int) -> Instrument:
        try:
            return self._by_token[token]
        except KeyError:
            raise UnknownInstrument(f"instrument token {token} is not in the list") from None

    def for_symbols(self, symbols: Iterable[str], exchange: str = "NSE") -> dict[int, str]:
        """{token: symbol} for a universe; names every unknown symbol at once."""
        symbols = list(symbols)
        unknown = [s for s in symbols if (exchange, s) not in self._by_symbol]
        if unknown:
            raise UnknownInstrument(
                f"{len(unknown)} symbol(s) not in the {exchange} instrument list: "
                + ", ".join(unknown)
            )
        return {self._by_symbol[(exchange, s)].token: s for s in symbols}
