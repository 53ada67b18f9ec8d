"""Order rows of the trades: a leg's buy and sells, written before the broker call they announce.

Each write checks the order's state first (trading_models: the transition tables) and
raises IllegalTransition having written nothing when it is refused. How the engine uses
the write-ahead rows: see legs.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from Webapp.states import OrderIntentState
from Webapp.storage.trading_models import (
    IN_FLIGHT_ORDER_STATES,
    Ladder,
    Trade,
    TradeOrder,
    order_by_tag,
    order_to,
    require,
)

ORDER_TYPES = frozenset({"MARKET", "LIMIT"})


_TAG = re.compile(r"^[A-Za-z0-9]{1,20}$")  # what Kite accepts as a client id


def check_tag(tag: str) -> None:
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise ValueError(f"order tag must be 1-20 letters or digits (Kite's rule), got {tag!r}")


def check_order_shape(order_type: str, price: float | None) -> None:
    if order_type not in ORDER_TYPES:
        raise ValueError(f"order_type must be MARKET or LIMIT, got {order_type!r}")
    if (order_type == "LIMIT") != (price is not None):
        raise ValueError("a LIMIT order needs a price and a MARKET order takes none")


def new_order(
    trade: Trade,
    *,
    tag: str,
    side: str,
    order_type: str,
    price: float | None,
    purpose: str,
    now: datetime,
) -> TradeOrder:
    return TradeOrder(
        trade=trade,
        tag=tag,
        side=side,
        order_type=order_type,
        qty=trade.qty,
        price=price,
        purpose=purpose,
        state=OrderIntentState.PENDING.value,
        filled_qty=0,
        created_at=now,
        updated_at=now,
    )


def in_flight(trade: Trade, purposes: Iterable[str]) -> list[TradeOrder]:
    purposes = set(purposes)
    return [o for o in trade.orders if o.purpose in purposes and o.state in IN_FLIGHT_ORDER_STATES]


def mark_order_sent(
    session: Session, tag: str, broker_order_id: str, *, now: datetime
) -> TradeOrder:
    """The broker acknowledged the order: PENDING → OPEN with its order id.

    Recovery: an OPEN order is looked up by its broker id (or tag) for its fill.
    """
    order = order_by_tag(session, tag)
    order.state = order_to(order, OrderIntentState.OPEN)
    order.broker_order_id = broker_order_id
    order.updated_at = now
    return order


def record_order_modified(
    session: Session, tag: str, order_type: str, price: float | None, *, now: datetime
) -> TradeOrder:
    """An OPEN order was modified at the broker (the exit timeout turns a LIMIT to MARKET)."""
    check_order_shape(order_type, price)
    order = order_by_tag(session, tag)
    require(order.state, {OrderIntentState.OPEN}, f"order {tag}: modify")
    order.order_type = order_type
    order.price = price
    order.updated_at = now
    return order


def exit_order_not_filled(
    session: Session,
    tag: str,
    *,
    now: datetime,
    order_state: OrderIntentState = OrderIntentState.REJECTED,
    message: str | None = None,
) -> TradeOrder:
    """A sell ended with nothing filled: the leg stays PENDING_EXIT for a new sell_intent."""
    require(order_state, {OrderIntentState.CANCELLED, OrderIntentState.REJECTED}, "exit order")
    order = order_by_tag(session, tag)
    require(order.side, {"SELL"}, f"order {tag}")
    order.state = order_to(order, order_state)
    order.status_message = message
    order.updated_at = now
    return order


def orders_in_flight(session: Session, account: str) -> list[TradeOrder]:
    """Orders PENDING (look them up by tag: the reply may be lost) or OPEN (by broker id)."""
    stmt = (
        select(TradeOrder)
        .join(Trade)
        .join(Ladder)
        .where(
            Ladder.account == account,
            TradeOrder.state.in_([s.value for s in IN_FLIGHT_ORDER_STATES]),
        )
        .order_by(TradeOrder.id)
    )
    return list(session.scalars(stmt))
