"""Load a trading universe (symbols and reference prices) from support_files/universe."""

from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

UNIVERSE_DIR = Path(__file__).resolve().parents[2] / "support_files" / "universe"

# A bare universe name such as "nifty50": no directory part, no extension.
_BARE_NAME = re.compile(r"[A-Za-z0-9_-]+")

_COLUMNS = ("symbol", "ref_price")


@dataclass(frozen=True)
class UniverseMember:
    """One tradable symbol and a realistic price to start simulations from."""

    symbol: str
    ref_price: float


def universe_path(name_or_path: str | os.PathLike[str]) -> Path:
    """Where `load_universe` reads from: a bare name maps into UNIVERSE_DIR, a path is kept."""
    if isinstance(name_or_path, str) and _BARE_NAME.fullmatch(name_or_path):
        return UNIVERSE_DIR / f"{name_or_path}.csv"
    return Path(name_or_path)


def load_universe(name_or_path: str | os.PathLike[str]) -> list[UniverseMember]:
    """Members of a universe CSV with header `symbol,ref_price`, in file order.

    "nifty50" reads support_files/universe/nifty50.csv; anything else is a path.
    Raises FileNotFoundError naming the file, or ValueError naming the file and
    line for a bad header, a missing value, a non-positive or non-numeric price,
    or a duplicate symbol.
    """
    path = universe_path(name_or_path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise FileNotFoundError(f"universe file not found: {path}") from None
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file, expected header 'symbol,ref_price'")
        header = [column.strip() for column in header]
        missing = [column for column in _COLUMNS if column not in header]
        if missing:
            raise ValueError(
                f"{path}:1: header {','.join(header)!r} lacks column(s) {', '.join(missing)}"
            )
        symbol_at, price_at = header.index("symbol"), header.index("ref_price")

        members: list[UniverseMember] = []
        first_seen_on: dict[str, int] = {}
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            where = f"{path}:{line}"
            if len(row) != len(header):
                raise ValueError(f"{where}: expected {len(header)} fields, got {len(row)}")
            symbol = row[symbol_at].strip()
            price_text = row[price_at].strip()
            if not symbol:
                raise ValueError(f"{where}: missing symbol")
            if not price_text:
                raise ValueError(f"{where}: missing ref_price for {symbol}")
            try:
                ref_price = float(price_text)
            except ValueError:
                raise ValueError(
                    f"{where}: ref_price {price_text!r} for {symbol} is not a number"
                ) from None
            if not (ref_price > 0 and math.isfinite(ref_price)):
                raise ValueError(
                    f"{where}: ref_price for {symbol} must be positive, got {price_text}"
                )
            if symbol in first_seen_on:
                raise ValueError(
                    f"{where}: duplicate symbol {symbol} (first on line {first_seen_on[symbol]})"
                )
            first_seen_on[symbol] = line
            members.append(UniverseMember(symbol, ref_price))

    if not members:
        raise ValueError(f"{path}: no symbols listed")
    return members
