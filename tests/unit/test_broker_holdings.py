"""Kite's holdings and positions as Holdings and Positions, and the shares held in each symbol.

STRATEGY.md: shares held = holdings quantity − `used_quantity` (sold from holdings
today) + today's CNC position on NSE; other products and exchanges do not count.
Kite shows a sale out of holdings twice (in `used_quantity`, and as a negative CNC
position), so it is taken off once: a negative position adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from Webapp.broker.base import Holding, Position, shares_held
from Webapp.broker.kite_convert import to_holding, to_position

# GET /portfolio/holdings as Kite documents it (kite.trade/docs/connect/v3/portfolio).
KITE_HOLDINGS = [
    {
        "tradingsymbol": "AARON",
        "exchange": "NSE",
        "instrument_token": 263681,
        "isin": "INE721Z01010",
        "product": "CNC",
        "price": 0,
        "quantity": 1,
        "used_quantity": 0,
        "t1_quantity": 0,
        "realised_quantity": 1,
        "authorised_quantity": 0,
        "authorised_date": "2025-01-17 00:00:00",
        "authorisation": {},
        "opening_quantity": 1,
        "short_quantity": 0,
        "collateral_quantity": 0,
        "collateral_type": "",
        "discrepancy": False,
        "average_price": 161,
        "last_price": 352.95,
        "close_price": 352.35,
        "pnl": 191.95,
        "day_change": 0.5999999999999659,
        "day_change_percentage": 0.17028522775648244,
        "mtf": {
            "quantity": 1000,
            "used_quantity": 0,
            "average_price": 100,
            "value": 100000,
            "initial_margin": 0,
        },
    },
    {
        "tradingsymbol": "SBIN",
        "exchange": "BSE",
        "instrument_token": 128028676,
        "isin": "INE062A01020",
        "product": "CNC",
        "price": 0,
        "quantity": 16,
        "used_quantity": 4,
        "t1_quantity": 2,
        "realised_quantity": 16,
        "authorised_quantity": 0,
        "authorised_date": "2025-01-17 00:00:00",
        "authorisation": {},
        "opening_quantity": 16,
        "short_quantity": 0,
        "collateral_quantity": 0,
        "collateral_type": "",
        "discrepancy": False,
        "average_price": 571.7,
        "last_price": 791.45,
        "close_price": 794.35,
        "pnl": 3516,
        "day_change": -2.9,
        "day_change_percentage": -0.36507,
        "mtf": {
            "quantity": 0,
            "used_quantity": 0,
            "average_price": 0,
            "value": 0,
            "initial_margin": 0,
        },
    },
]


def kite_position(symbol: str, exchange: str, product: str, quantity: int) -> dict:
    """One row of GET /portfolio/positions with Kite's fields."""
    price = 100.0
    return {
        "tradingsymbol": symbol,
        "exchange": exchange,
        "instrument_token": 1,
        "product": product,
        "quantity": quantity,
        "overnight_quantity": 0,
        "multiplier": 1,
        "average_price": price,
        "close_price": 0,
        "last_price": price,
        "value": -quantity * price,
        "pnl": 0,
        "m2m": 0,
        "unrealised": 0,
        "realised": 0,
        "buy_quantity": max(quantity, 0),
        "buy_price": price,
        "buy_value": max(quantity, 0) * price,
        "buy_m2m": max(quantity, 0) * price,
        "sell_quantity": max(-quantity, 0),
        "sell_price": price,
        "sell_value": max(-quantity, 0) * price,
        "sell_m2m": max(-quantity, 0) * price,
        "day_buy_quantity": max(quantity, 0),
        "day_buy_price": price,
        "day_buy_value": max(quantity, 0) * price,
        "day_sell_quantity": max(-quantity, 0),
        "day_sell_price": price,
        "day_sell_value": max(-quantity, 0) * price,
    }


KITE_POSITIONS = {
    "net": [
        kite_position("AARON", "NSE", "CNC", 3),
        kite_position("AARON", "NSE", "MIS", 5),
        kite_position("AARON", "BSE", "CNC", 7),
        kite_position("SBIN", "NSE", "CNC", -4),  # the sale out of holdings, again
        kite_position("SBIN", "NSE", "NRML", 9),
    ],
    "day": [kite_position("AARON", "NSE", "CNC", 3)],
}


def test_kites_documented_holdings_keep_used_quantity_and_count_t1_shares():
    holdings = [to_holding(raw) for raw in KITE_HOLDINGS]

    assert holdings == [
        Holding("AARON", 1, 161.0, 352.95, exchange="NSE", used_quantity=0),
        Holding("SBIN", 18, 571.7, 791.45, exchange="BSE", used_quantity=4),
    ]


def test_kites_net_positions_keep_their_product_and_exchange():
    positions = [to_position(raw) for raw in KITE_POSITIONS["net"]]

    assert [(p.symbol, p.exchange, p.product, p.quantity) for p in positions] == [
        ("AARON", "NSE", "CNC", 3),
        ("AARON", "NSE", "MIS", 5),
        ("AARON", "BSE", "CNC", 7),
        ("SBIN", "NSE", "CNC", -4),
        ("SBIN", "NSE", "NRML", 9),
    ]


def test_shares_held_from_kites_documented_portfolio():
    holdings = [to_holding(raw) for raw in KITE_HOLDINGS]
    positions = [to_position(raw) for raw in KITE_POSITIONS["net"]]

    # AARON: 1 held + 3 bought today on NSE (MIS and BSE left out); the MTF block is
    # another product. SBIN: 18 (2 of them T1) − 4 sold today; the NRML 9 do not count.
    assert shares_held(holdings, positions) == {"AARON": 4, "SBIN": 14}


def held(quantity: int, used: int = 0, symbol: str = "INFY", exchange: str = "NSE") -> Holding:
    return Holding(symbol, quantity, 1000.0, 1000.0, exchange=exchange, used_quantity=used)


def position(quantity: int, product: str = "CNC", exchange: str = "NSE") -> Position:
    return Position("INFY", quantity, 1000.0, 1000.0, 0.0, exchange=exchange, product=product)


@dataclass(frozen=True)
class Case:
    name: str
    holdings: tuple[Holding, ...]
    positions: tuple[Position, ...]
    shares: int


CASES = [
    Case("nothing", (), (), 0),
    Case("holdings of earlier days", (held(10),), (), 10),
    Case("bought today: a CNC position on NSE", (), (position(5),), 5),
    Case("holdings and today's buys", (held(10),), (position(5),), 15),
    Case("sold from holdings today: used_quantity", (held(10, used=4),), (position(-4),), 6),
    Case("all sold from holdings today", (held(10, used=10),), (position(-10),), 0),
    Case(
        "sold more than bought today: the rest from holdings",
        (held(10, used=2),),
        (position(-2),),
        8,
    ),  # fmt: skip
    Case("bought and sold today, none from holdings", (held(10),), (position(0),), 10),
    Case("sold from holdings on BSE", (held(10, used=4),), (position(-4, exchange="BSE"),), 6),
    Case("an MIS position does not count", (held(10),), (position(5, product="MIS"),), 10),
    Case("an NRML position does not count", (), (position(5, product="NRML"),), 0),
    Case("an MTF position does not count", (), (position(5, product="MTF"),), 0),
    Case("a BSE position does not count", (), (position(5, exchange="BSE"),), 0),
    Case("a holding listed under BSE counts", (held(10, exchange="BSE"),), (), 10),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_shares_held(case):
    assert shares_held(case.holdings, case.positions).get("INFY", 0) == case.shares


def test_shares_held_counts_each_symbol_and_leaves_out_those_with_none():
    holdings = [held(10), held(3, symbol="TCS"), held(2, used=2, symbol="SBIN")]
    positions = [position(4), Position("HDFC", 2, 1.0, 1.0, 0.0, product="MIS")]

    assert shares_held(holdings, positions) == {"INFY": 14, "TCS": 3}
