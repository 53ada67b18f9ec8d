"""kitesim's exchange-side orders: Kite's order fields, statuses, history and fill rules.

Pure bookkeeping, no HTTP and no locks: `Exchange` owns the lock and calls in.
An order is a mutable `SimOrder`; `as_kite()` renders it with Kite's field names
and 19-character IST timestamps, and every status change appends a rendering to
its history, which is what `GET /orders/{order_id}` returns.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from Webapp.market.instruments import Instrument

IST = timezone(timedelta(hours=5, minutes=30), "IST")

# Kite's order statuses. The first four are transitional and appear in an order's history.
PUT_ORDER_REQ_RECEIVED = "PUT ORDER REQ RECEIVED"
VALIDATION_PENDING = "VALIDATION PENDING"
OPEN_PENDING = "OPEN PENDING"
MODIFY_VALIDATION_PENDING = "MODIFY VALIDATION PENDING"
MODIFY_PENDING = "MODIFY PENDING"
CANCEL_PENDING = "CANCEL PENDING"
TRIGGER_PENDING = "TRIGGER PENDING"
OPEN = "OPEN"
COMPLETE = "COMPLETE"
CANCELLED = "CANCELLED"
REJECTED = "REJECTED"
FINAL = frozenset({COMPLETE, CANCELLED, REJECTED})

ORDER_TYPES = ("MARKET", "LIMIT", "SL", "SL-M")
PRODUCTS = ("CNC", "MIS", "NRML")
VALIDITIES = ("DAY", "IOC", "TTL")
MAX_MODIFICATIONS = 25  # Kite refuses the 26th modification of one order


class KiteError(Exception):
    """A refusal the REST layer turns into Kite's error envelope with `status`."""

    def __init__(self, error_type: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status


def input_error(message: str) -> KiteError:
    return KiteError("InputException", message, 400)


def kite_time(moment: datetime | None) -> str | None:
    """Kite's 19-character `YYYY-MM-DD HH:MM:SS` in IST (what kiteconnect parses)."""
    if moment is None:
        return None
    return moment.astimezone(IST).strftime("%Y-%m-%d %H:%M:%S")


def on_tick(price: float, tick_size: float) -> bool:
    steps = price / tick_size
    return abs(steps - round(steps)) < 1e-6


@dataclass
class SimOrder:
    """One order on the simulated exchange; quantities are ints, prices floats."""

    order_id: str
    user_id: str
    instrument: Instrument
    transaction_type: str
    order_type: str
    product: str
    quantity: int
    placed_at: datetime
    variety: str = "regular"
    validity: str = "DAY"
    price: float = 0.0
    trigger_price: float = 0.0
    tag: str | None = None
    market_protection: float = 0.0
    disclosed_quantity: int = 0
    guid: str = field(default_factory=lambda: uuid.uuid4().hex[:18])
    status: str = PUT_ORDER_REQ_RECEIVED
    status_message: str | None = None
    exchange_order_id: str | None = None
    exchange_timestamp: datetime | None = None
    updated_at: datetime | None = None
    filled_quantity: int = 0
    average_price: float = 0.0
    cancelled_quantity: int = 0
    fill_cap: int | None = None  # a "partial" fault: fill no further than this until modified
    modifications: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL

    @property
    def pending_quantity(self) -> int:
        return 0 if self.is_final else self.quantity - self.filled_quantity

    @property
    def is_buy(self) -> bool:
        return self.transaction_type == "BUY"

    def move_to(self, status: str, when: datetime, message: str | None = None) -> None:
        """Change status and record the new state in the history."""
        self.status = status
        if message is not None:
            self.status_message = message
        self.updated_at = when
        self.history.append(self.as_kite())

    def as_kite(self) -> dict[str, Any]:
        ins = self.instrument
        return {
            "account_id": self.user_id,
            "placed_by": self.user_id,
            "order_id": self.order_id,
            "exchange_order_id": self.exchange_order_id,
            "parent_order_id": None,
            "status": self.status,
            "status_message": self.status_message,
            "status_message_raw": self.status_message,
            "order_timestamp": kite_time(self.updated_at or self.placed_at),
            "exchange_update_timestamp": kite_time(self.updated_at)
            if self.exchange_order_id
            else None,
            "exchange_timestamp": kite_time(self.exchange_timestamp),
            "variety": self.variety,
            "modified": self.modifications > 0,
            "exchange": ins.exchange,
            "tradingsymbol": ins.symbol,
            "instrument_token": ins.token,
            "order_type": self.order_type,
            "transaction_type": self.transaction_type,
            "validity": self.validity,
            "validity_ttl": 0,
            "product": self.product,
            "quantity": self.quantity,
            "disclosed_quantity": self.disclosed_quantity,
            "price": self.price,
            "trigger_price": self.trigger_price,
            "average_price": self.average_price,
            "filled_quantity": self.filled_quantity,
            "pending_quantity": self.pending_quantity,
            "cancelled_quantity": self.cancelled_quantity,
            "market_protection": self.market_protection,
            "meta": {},
            "tag": self.tag,
            "tags": [self.tag] if self.tag else None,
            "guid": self.guid,
        }

    def fill_price(self, last_price: float) -> float | None:
        """The price this order trades at when the market is at `last_price`, or None.

        MARKET (and a triggered SL-M) takes the LTP; a LIMIT (and a triggered SL)
        trades at its limit once the LTP reaches it.
        """
        if self.status != OPEN:
            return None
        if self.order_type in ("MARKET", "SL-M"):
            return last_price
        if self.is_buy:
            return self.price if last_price <= self.price else None
        return self.price if last_price >= self.price else None

    def stop_reached(self, last_price: float) -> bool:
        """An SL/SL-M order waiting in TRIGGER PENDING is released at its trigger."""
        if self.status != TRIGGER_PENDING:
            return False
        if self.is_buy:
            return last_price >= self.trigger_price
        return last_price <= self.trigger_price

    def fillable_quantity(self) -> int:
        pending = self.quantity - self.filled_quantity
        if self.fill_cap is not None:
            pending = min(pending, self.fill_cap - self.filled_quantity)
        return max(pending, 0)

    def record_fill(self, quantity: int, price: float) -> None:
        total = self.filled_quantity + quantity
        self.average_price = round(
            (self.average_price * self.filled_quantity + price * quantity) / total, 4
        )
        self.filled_quantity = total


@dataclass(frozen=True)
class Trade:
    """One fill, as `GET /trades` shows it."""

    trade_id: str
    order: SimOrder
    quantity: int
    price: float
    at: datetime

    def as_kite(self) -> dict[str, Any]:
        ins = self.order.instrument
        return {
            "trade_id": self.trade_id,
            "order_id": self.order.order_id,
            "exchange_order_id": self.order.exchange_order_id,
            "exchange": ins.exchange,
            "tradingsymbol": ins.symbol,
            "instrument_token": ins.token,
            "product": self.order.product,
            "transaction_type": self.order.transaction_type,
            "quantity": self.quantity,
            "average_price": self.price,
            "fill_timestamp": kite_time(self.at),
            "order_timestamp": kite_time(self.order.placed_at),
            "exchange_timestamp": kite_time(self.at),
        }


def parse_order_fields(form: dict[str, str], *, tick_size: float) -> dict[str, Any]:
    """Check a place-order form the way Kite does; the typed fields, or InputException."""
    transaction_type = form.get("transaction_type", "")
    if transaction_type not in ("BUY", "SELL"):
        raise input_error("Invalid `transaction_type`.")
    order_type = form.get("order_type", "")
    if order_type not in ORDER_TYPES:
        raise input_error("Invalid `order_type`.")
    product = form.get("product", "")
    if product not in PRODUCTS:
        raise input_error("Invalid `product`.")
    validity = form.get("validity") or "DAY"
    if validity not in VALIDITIES:
        raise input_error("Invalid `validity`.")
    quantity = _int(form.get("quantity"), "quantity")
    if quantity <= 0:
        raise input_error("Invalid `quantity`.")
    fields: dict[str, Any] = {
        "transaction_type": transaction_type,
        "order_type": order_type,
        "product": product,
        "validity": validity,
        "quantity": quantity,
        "price": _price(form.get("price"), "price"),
        "trigger_price": _price(form.get("trigger_price"), "trigger_price"),
        "market_protection": _price(form.get("market_protection"), "market_protection"),
        "disclosed_quantity": _int(form.get("disclosed_quantity") or "0", "disclosed_quantity"),
        "tag": form.get("tag") or None,
    }
    check_prices(fields, tick_size)
    tag = fields["tag"]
    if tag is not None and not (tag.isascii() and tag.isalnum() and len(tag) <= 20):
        raise input_error("Invalid `tag`. Tag can have a maximum of 20 alphanumeric characters.")
    return fields


def check_prices(fields: dict[str, Any], tick_size: float) -> None:
    """LIMIT/SL need a price, SL/SL-M a trigger, and both sit on the instrument's tick."""
    order_type = fields["order_type"]
    if order_type in ("LIMIT", "SL") and fields["price"] <= 0:
        raise input_error("Invalid `price`. A LIMIT order needs a price.")
    if order_type in ("SL", "SL-M") and fields["trigger_price"] <= 0:
        raise input_error("Invalid `trigger_price`.")
    for name in ("price", "trigger_price"):
        if fields[name] and not on_tick(fields[name], tick_size):
            raise input_error(
                f"Tick size for this script is {tick_size:g}. Kindly enter {name.replace('_', ' ')}"
                " in the multiple of tick size for this script"
            )


def _int(raw: str | None, name: str) -> int:
    try:
        return int(str(raw))
    except (TypeError, ValueError):
        raise input_error(f"Invalid `{name}`.") from None


def _price(raw: str | None, name: str) -> float:
    if raw in (None, ""):
        return 0.0
    try:
        return float(raw)
    except ValueError:
        raise input_error(f"Invalid `{name}`.") from None
