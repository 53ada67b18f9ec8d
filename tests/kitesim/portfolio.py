"""kitesim's account: cash, the day's positions and the delivery holdings that fills change.

One trading day at a time: fills build the day's positions per instrument and
product (Kite's `net` and `day` are the same here, as nothing is carried in
positions overnight) and move cash; delivery holdings are seeded with
`add_holding` or carried from CNC positions by `new_day()`. Prices are the
exchange's last prices.

A holding is one scrip (its symbol), whichever exchange its shares were bought
on; Kite lists it under one exchange. Its `quantity` is what the day opened
with. A CNC sell is matched against the same day's CNC buys of the scrip first
(an intraday trade, on any exchange); the rest comes out of the holding, which
Kite shows as `used_quantity` while the sale also shows as a negative CNC
position. Buying the shares back the same day returns them to the holding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from Webapp.market.instruments import Instrument

PRODUCT_CNC = "CNC"


@dataclass
class _Position:
    instrument: Instrument
    product: str
    buy_quantity: int = 0
    buy_value: float = 0.0
    sell_quantity: int = 0
    sell_value: float = 0.0

    @property
    def quantity(self) -> int:
        return self.buy_quantity - self.sell_quantity


@dataclass
class _Holding:
    instrument: Instrument  # the listing Kite shows the holding under
    quantity: int  # at the start of the day
    average_price: float


class Portfolio:
    """Cash, positions and holdings of the one simulated account."""

    def __init__(self, cash: float) -> None:
        self.opening_balance = float(cash)
        self.bought_value = 0.0
        self.sold_value = 0.0
        self.positions: dict[tuple[int, str], _Position] = {}
        self.holdings: dict[str, _Holding] = {}  # by symbol
        self.close_prices: dict[int, float] = {}  # by token: the last price of the day before

    def add_holding(self, instrument: Instrument, quantity: int, average_price: float) -> None:
        held = self.holdings.get(instrument.symbol)
        if held is None:
            self.holdings[instrument.symbol] = _Holding(instrument, quantity, average_price)
            return
        total = held.quantity + quantity
        held.average_price = (held.average_price * held.quantity + average_price * quantity) / total
        held.quantity = total

    def apply_fill(
        self, instrument: Instrument, product: str, side: str, quantity: int, price: float
    ) -> None:
        key = (instrument.token, product)
        position = self.positions.setdefault(key, _Position(instrument, product))
        if side == "BUY":
            position.buy_quantity += quantity
            position.buy_value += quantity * price
            self.bought_value += quantity * price
        else:
            position.sell_quantity += quantity
            position.sell_value += quantity * price
            self.sold_value += quantity * price

    def used_quantity(self, symbol: str) -> int:
        """Shares of the holding sold today: the day's net CNC sells beyond its CNC buys."""
        held = self.holdings.get(symbol)
        if held is None:
            return 0
        return min(held.quantity, max(0, -self._delivery_net(symbol)))

    def sellable(self, instrument: Instrument) -> int:
        """Shares a CNC sell may still deliver: the holding plus the day's net CNC trades."""
        held = self.holdings.get(instrument.symbol)
        return (held.quantity if held else 0) + self._delivery_net(instrument.symbol)

    def available_cash(self, blocked: float) -> float:
        return self.opening_balance + self.sold_value - self.bought_value - blocked

    def new_day(self, prices: dict[int, float]) -> None:
        """Settle the day's delivery trades into holdings; `prices` become the closes."""
        for symbol, net in self._delivery_nets().items():
            if net > 0:
                bought = [p for p in self._delivery(symbol) if p.buy_quantity]
                average = sum(p.buy_value for p in bought) / sum(p.buy_quantity for p in bought)
                held = self.holdings.get(symbol)
                self.add_holding(held.instrument if held else bought[0].instrument, net, average)
            elif net < 0:
                held = self.holdings[symbol]
                held.quantity += net  # never below 0: the RMS refused any oversell
                if held.quantity <= 0:
                    del self.holdings[symbol]
        self.close_prices.update(prices)
        self.opening_balance = self.available_cash(0.0)
        self.bought_value = self.sold_value = 0.0
        self.positions.clear()

    def _delivery(self, symbol: str) -> list[_Position]:
        """The day's CNC positions in `symbol`, on every exchange."""
        return [
            p
            for p in self.positions.values()
            if p.product == PRODUCT_CNC and p.instrument.symbol == symbol
        ]

    def _delivery_nets(self) -> dict[str, int]:
        symbols = {p.instrument.symbol for p in self.positions.values()}
        return {symbol: self._delivery_net(symbol) for symbol in symbols}

    def _delivery_net(self, symbol: str) -> int:
        return sum(p.quantity for p in self._delivery(symbol))

    # --- Kite's shapes ------------------------------------------------------------

    def positions_kite(self, prices: dict[int, float]) -> dict[str, list[dict[str, Any]]]:
        rows = [_position_row(p, prices.get(p.instrument.token)) for p in self.positions.values()]
        return {"net": rows, "day": [dict(r) for r in rows]}

    def holdings_kite(self, prices: dict[int, float]) -> list[dict[str, Any]]:
        rows = []
        for held in self.holdings.values():
            ins = held.instrument
            last = prices.get(ins.token, held.average_price)
            close = self.close_prices.get(ins.token, last)
            rows.append(
                {
                    "tradingsymbol": ins.symbol,
                    "exchange": ins.exchange,
                    "instrument_token": ins.token,
                    "isin": "",
                    "product": PRODUCT_CNC,
                    "price": 0,
                    "quantity": held.quantity,
                    "used_quantity": self.used_quantity(ins.symbol),
                    "t1_quantity": 0,  # settlement is not simulated: bought shares are delivered
                    "realised_quantity": held.quantity,
                    "authorised_quantity": 0,
                    "authorised_date": None,
                    "authorisation": {},
                    "opening_quantity": held.quantity,
                    "short_quantity": 0,
                    "collateral_quantity": 0,
                    "collateral_type": "",
                    "discrepancy": False,
                    "average_price": round(held.average_price, 4),
                    "last_price": last,
                    "close_price": close,
                    "pnl": round((last - held.average_price) * held.quantity, 2),
                    "day_change": round(last - close, 2),
                    "day_change_percentage": (last - close) / close * 100 if close else 0.0,
                    "mtf": {
                        "quantity": 0,
                        "used_quantity": 0,
                        "average_price": 0,
                        "value": 0,
                        "initial_margin": 0,
                    },
                }
            )
        return rows

    def margins_kite(self, blocked: float, prices: dict[int, float]) -> dict[str, Any]:
        """Kite's equity segment; `blocked` is cash held for open buy orders."""
        unrealised = sum(
            (prices.get(p.instrument.token, 0.0) * p.quantity) - (p.buy_value - p.sell_value)
            for p in self.positions.values()
            if p.instrument.token in prices
        )
        net = self.available_cash(blocked)
        return {
            "enabled": True,
            "net": round(net, 2),
            "available": {
                "adhoc_margin": 0,
                "cash": round(self.opening_balance, 2),
                "opening_balance": round(self.opening_balance, 2),
                "live_balance": round(net, 2),
                "collateral": 0,
                "intraday_payin": 0,
            },
            "utilised": {
                "debits": round(self.bought_value + blocked, 2),
                "exposure": 0,
                "m2m_realised": 0,
                "m2m_unrealised": round(unrealised, 2),
                "option_premium": 0,
                "payout": 0,
                "span": 0,
                "holding_sales": round(self.sold_value, 2),
                "turnover": round(self.bought_value + self.sold_value, 2),
                "liquid_collateral": 0,
                "stock_collateral": 0,
                "delivery": round(self.bought_value, 2),
                "equity": 0,
            },
        }

    def commodity_margins_kite(self) -> dict[str, Any]:
        """Kite's commodity segment of an account that does not trade it: every key, all 0."""
        equity = self.margins_kite(0.0, {})
        return {
            "enabled": False,
            "net": 0,
            "available": dict.fromkeys(equity["available"], 0),
            "utilised": dict.fromkeys(equity["utilised"], 0),
        }


def _position_row(p: _Position, last: float | None) -> dict[str, Any]:
    ins = p.instrument
    buy_price = p.buy_value / p.buy_quantity if p.buy_quantity else 0.0
    sell_price = p.sell_value / p.sell_quantity if p.sell_quantity else 0.0
    quantity = p.quantity
    if quantity > 0:
        average = buy_price
    elif quantity < 0:
        average = sell_price
    else:
        average = 0.0
    last_price = last if last is not None else average
    pnl = p.sell_value - p.buy_value + quantity * last_price
    matched = min(p.buy_quantity, p.sell_quantity)
    realised = (sell_price - buy_price) * matched
    return {
        "tradingsymbol": ins.symbol,
        "exchange": ins.exchange,
        "instrument_token": ins.token,
        "product": p.product,
        "quantity": quantity,
        "overnight_quantity": 0,
        "multiplier": 1,
        "average_price": round(average, 4),
        "close_price": 0,
        "last_price": last_price,
        "value": round(p.sell_value - p.buy_value, 2),
        "pnl": round(pnl, 2),
        "m2m": round(pnl, 2),
        "unrealised": round(pnl - realised, 2),
        "realised": round(realised, 2),
        "buy_quantity": p.buy_quantity,
        "buy_price": round(buy_price, 4),
        "buy_value": round(p.buy_value, 2),
        "buy_m2m": round(p.buy_value, 2),
        "sell_quantity": p.sell_quantity,
        "sell_price": round(sell_price, 4),
        "sell_value": round(p.sell_value, 2),
        "sell_m2m": round(p.sell_value, 2),
        "day_buy_quantity": p.buy_quantity,
        "day_buy_price": round(buy_price, 4),
        "day_buy_value": round(p.buy_value, 2),
        "day_sell_quantity": p.sell_quantity,
        "day_sell_price": round(sell_price, 4),
        "day_sell_value": round(p.sell_value, 2),
    }
