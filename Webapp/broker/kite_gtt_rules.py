"""Kite's rules for orders and GTTs, checked before sending so a bad request never reaches Kite.

Kite refuses a GTT whose trigger lies within 0.25% of the last price, a two-leg
(OCO) GTT whose last price is not strictly between its triggers, and more than
250 active GTTs per account. Failing here raises InputRejected with the rule in
words, and costs no request (Kite's own refusal would cost one and count toward
the rate limit).
"""

from __future__ import annotations

import math

from Webapp.broker.base import (
    EXCHANGE_NSE,
    PRODUCT_CNC,
    TICK_SIZE,
    GttRequest,
    GttType,
    InputRejected,
    OrderRequest,
    OrderType,
    check_tag,
)

MIN_TRIGGER_DISTANCE_PCT = 0.25  # Kite refuses a trigger this close to the last price, or closer
MAX_ACTIVE_GTTS = 250


def check_order(request: OrderRequest, *, tick: float = TICK_SIZE) -> None:
    """A CNC equity order Kite can accept: tag, quantity, product, price on the tick."""
    where = f"place_order {request.symbol}"
    try:
        check_tag(request.tag)
    except InputRejected as exc:
        raise InputRejected(f"{where}: {exc.message}") from None
    _check_common(where, request.exchange, request.product, request.quantity)
    if request.order_type is OrderType.LIMIT:
        _check_price(where, "limit price", request.price, tick)


def check_modify(
    order_id: str, *, quantity: int | None, price: float | None, order_type: OrderType | None
) -> None:
    """A modification that makes sense: something to change, a price only for LIMIT."""
    where = f"modify_order {order_id}"
    if quantity is None and price is None and order_type is None:
        raise InputRejected(f"{where}: nothing to change")
    if quantity is not None and (not isinstance(quantity, int) or quantity <= 0):
        raise InputRejected(f"{where}: quantity must be a whole number > 0, got {quantity!r}")
    if order_type is OrderType.MARKET and price is not None:
        raise InputRejected(f"{where}: a MARKET order takes no price")
    if price is not None:
        _check_price(where, "limit price", price, TICK_SIZE)


def check_gtt(
    request: GttRequest,
    *,
    operation: str = "place_gtt",
    active_gtts: int | None = None,
    tick: float = TICK_SIZE,
) -> None:
    """Raise InputRejected unless Kite would accept `request` (see the module docstring).

    `active_gtts` is the account's count of active GTTs when known; a placement
    at the limit is refused (a modification does not add one).
    """
    where = f"{operation} {request.symbol}"
    _check_common(where, request.exchange, request.product, request.quantity)
    last_price = request.last_price
    if not (isinstance(last_price, int | float) and math.isfinite(last_price) and last_price > 0):
        raise InputRejected(f"{where}: last_price must be a price > 0, got {last_price!r}")
    for trigger in request.triggers:
        _check_price(where, "trigger", trigger, tick)
    for limit in request.limit_prices:
        _check_price(where, "limit price", limit, tick)
    if request.gtt_type is GttType.TWO_LEG:
        stop, target = request.triggers
        if not stop < last_price < target:
            raise InputRejected(
                f"{where}: a two-leg GTT needs the last price strictly between its triggers "
                f"(stop {stop} < last price {last_price} < target {target})"
            )
    for trigger in request.triggers:
        distance_pct = abs(trigger - last_price) / last_price * 100
        if distance_pct <= MIN_TRIGGER_DISTANCE_PCT:
            raise InputRejected(
                f"{where}: trigger {trigger} is {distance_pct:.3f}% from the last price "
                f"{last_price}; Kite needs more than {MIN_TRIGGER_DISTANCE_PCT}%"
            )
    if operation == "place_gtt" and active_gtts is not None and active_gtts >= MAX_ACTIVE_GTTS:
        raise InputRejected(
            f"{where}: the account already has {active_gtts} active GTTs; Kite allows "
            f"{MAX_ACTIVE_GTTS}"
        )


def _check_common(where: str, exchange: str, product: str, quantity: int) -> None:
    if exchange != EXCHANGE_NSE:
        raise InputRejected(f"{where}: only {EXCHANGE_NSE} equity is traded, got {exchange!r}")
    if product != PRODUCT_CNC:
        raise InputRejected(f"{where}: only {PRODUCT_CNC} (delivery) is traded, got {product!r}")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
        raise InputRejected(f"{where}: quantity must be a whole number > 0, got {quantity!r}")


def _check_price(where: str, what: str, price: float | None, tick: float) -> None:
    if not (isinstance(price, int | float) and math.isfinite(price) and price > 0):
        raise InputRejected(f"{where}: {what} must be a price > 0, got {price!r}")
    ticks = price / tick
    if abs(ticks - round(ticks)) > 1e-6:
        raise InputRejected(f"{where}: {what} {price} is not on the {tick} tick")
