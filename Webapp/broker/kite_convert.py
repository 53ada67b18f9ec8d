"""Kite's JSON dicts (orders, GTTs, positions, holdings, margins) as base.py's dataclasses.

Kite writes times as naive IST ("2026-03-02 09:15:04", or a datetime the client
parsed from it); they come out aware UTC. Order updates from the ticker and from
postbacks use the same fields as the order book, so one function reads all three.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from Webapp.broker.base import (
    EXCHANGE_NSE,
    PRODUCT_CNC,
    Gtt,
    GttOrderResult,
    GttState,
    GttType,
    Holding,
    InputRejected,
    Margins,
    Order,
    OrderState,
    OrderType,
    Position,
    Side,
)

_log = logging.getLogger(__name__)

IST = ZoneInfo("Asia/Kolkata")

# Kite's final and resting statuses; every other status (…PENDING, …REQ RECEIVED) is PENDING.
_STATES = {
    "COMPLETE": OrderState.FILLED,
    "CANCELLED": OrderState.CANCELLED,
    "CANCELLED AMO": OrderState.CANCELLED,
    "REJECTED": OrderState.REJECTED,
    "OPEN": OrderState.OPEN,
    "TRIGGER PENDING": OrderState.OPEN,  # resting at the exchange, waiting for its trigger
    "MODIFIED": OrderState.OPEN,  # a history step: the order rests with new terms
    # Postbacks and ticker updates: an open order was modified or partly filled.
    "UPDATE": OrderState.OPEN,
}
# Order types beyond the two the engine sends, for orders a person placed by hand.
_ORDER_TYPES = {"MARKET": OrderType.MARKET, "LIMIT": OrderType.LIMIT, "SL": OrderType.LIMIT}


def order_state(status: str | None) -> OrderState:
    """Kite's order status in words of the engine (an unknown one is PENDING: not final)."""
    text = (status or "").strip().upper()
    state = _STATES.get(text)
    if state is not None:
        return state
    if not (text.endswith("PENDING") or "REQ RECEIVED" in text or "VALIDATION" in text):
        _log.warning("unknown Kite order status %r; treating it as pending", status)
    return OrderState.PENDING


def kite_time(value: Any) -> datetime | None:
    """Kite's naive-IST time (string or datetime) as aware UTC; None when absent."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        stamp = value
    else:
        try:
            stamp = datetime.fromisoformat(str(value).strip())
        except ValueError:
            return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=IST)
    return stamp.astimezone(UTC)


def to_order(raw: Mapping[str, Any]) -> Order:
    """One order dict (order book, history step, ticker update or postback) as an Order."""
    order_id = raw.get("order_id")
    if not order_id:
        raise InputRejected(f"an order update without an order_id: keys {sorted(raw)[:12]}")
    status = raw.get("status")
    updated = (
        raw.get("exchange_update_timestamp")
        or raw.get("exchange_timestamp")
        or raw.get("order_timestamp")
    )
    price = _float(raw.get("price"))
    return Order(
        order_id=str(order_id),
        tag=raw.get("tag") or None,
        symbol=str(raw.get("tradingsymbol") or ""),
        side=Side.SELL if str(raw.get("transaction_type", "")).upper() == "SELL" else Side.BUY,
        order_type=_ORDER_TYPES.get(str(raw.get("order_type", "")).upper(), OrderType.MARKET),
        quantity=_int(raw.get("quantity")),
        state=order_state(status),
        filled_quantity=_int(raw.get("filled_quantity")),
        average_price=_float(raw.get("average_price")),
        price=price if price > 0 else None,
        exchange=str(raw.get("exchange") or EXCHANGE_NSE),
        product=str(raw.get("product") or PRODUCT_CNC),
        status_message=raw.get("status_message") or raw.get("status_message_raw") or None,
        updated_at=kite_time(updated),
    )


def to_gtt(raw: Mapping[str, Any]) -> Gtt:
    condition = raw.get("condition") or {}
    orders = raw.get("orders") or []
    results = []
    for leg, order in enumerate(orders):
        result = order.get("result")
        if not result:
            continue
        order_result = result.get("order_result") or {}
        results.append(
            GttOrderResult(
                leg=leg,
                order_id=order_result.get("order_id") or None,
                status=order_result.get("status") or None,
                rejection_reason=order_result.get("rejection_reason") or None,
            )
        )
    first = orders[0] if orders else {}
    return Gtt(
        gtt_id=int(raw["id"]),
        symbol=str(condition.get("tradingsymbol") or first.get("tradingsymbol") or ""),
        gtt_type=GttType.TWO_LEG if raw.get("type") == GttType.TWO_LEG.value else GttType.SINGLE,
        state=_gtt_state(raw.get("status")),
        triggers=tuple(float(v) for v in condition.get("trigger_values") or ()),
        limit_prices=tuple(_float(order.get("price")) for order in orders),
        last_price=_float(condition.get("last_price")),
        quantity=_int(first.get("quantity")),
        side=Side.BUY if str(first.get("transaction_type", "")).upper() == "BUY" else Side.SELL,
        exchange=str(condition.get("exchange") or EXCHANGE_NSE),
        created_at=kite_time(raw.get("created_at")),
        updated_at=kite_time(raw.get("updated_at")),
        results=tuple(results),
    )


def to_position(raw: Mapping[str, Any]) -> Position:
    return Position(
        symbol=str(raw.get("tradingsymbol") or ""),
        quantity=_int(raw.get("quantity")),
        average_price=_float(raw.get("average_price")),
        last_price=_float(raw.get("last_price")),
        pnl=_float(raw.get("pnl")),
        exchange=str(raw.get("exchange") or EXCHANGE_NSE),
        product=str(raw.get("product") or PRODUCT_CNC),
    )


def to_holding(raw: Mapping[str, Any]) -> Holding:
    """A delivery holding; the `mtf` block (shares bought on margin) is another product."""
    return Holding(
        symbol=str(raw.get("tradingsymbol") or ""),
        quantity=_int(raw.get("quantity")) + _int(raw.get("t1_quantity")),
        average_price=_float(raw.get("average_price")),
        last_price=_float(raw.get("last_price")),
        exchange=str(raw.get("exchange") or EXCHANGE_NSE),
        used_quantity=_int(raw.get("used_quantity")),
    )


def to_margins(raw: Mapping[str, Any]) -> Margins:
    """Kite's equity segment: `available.live_balance` (or `cash`), `utilised.debits`, `net`."""
    available = raw.get("available") or {}
    utilised = raw.get("utilised") or {}
    cash = available.get("live_balance", available.get("cash"))
    return Margins(
        available_cash=_float(cash),
        utilised=_float(utilised.get("debits")),
        net=_float(raw.get("net")),
    )


def gtt_orders(symbol: str, exchange: str, side: str, quantity: int, limits) -> list[dict]:
    """The `orders` argument of KiteConnect.place_gtt/modify_gtt: one LIMIT per trigger."""
    return [
        {
            "exchange": exchange,
            "tradingsymbol": symbol,
            "transaction_type": side,
            "quantity": quantity,
            "order_type": "LIMIT",
            "product": PRODUCT_CNC,
            "price": limit,
        }
        for limit in limits
    ]


def _gtt_state(status: Any) -> GttState:
    try:
        return GttState(str(status).lower())
    except ValueError:
        # The safe reading: the engine waits for the GTT's order rather than selling twice.
        _log.warning("unknown Kite GTT status %r; treating it as triggered", status)
        return GttState.TRIGGERED


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _float(value: Any) -> float:
    try:
        return float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0
