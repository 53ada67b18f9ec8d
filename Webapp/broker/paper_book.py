"""The paper broker's fill rules as pure functions: fill prices, GTT triggers, Kite's GTT checks.

Nothing here reads a clock, a database or a price feed; PaperBroker applies these rules
to its stored state. Each function is one line of STRATEGY.md ("Paper fills", "Protection
at the broker"), so scenario tests can check it line by line.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from Webapp.broker import kite_gtt_rules
from Webapp.broker.base import (
    GttRequest,
    GttType,
    InputRejected,
    OrderType,
    Side,
    round_down_to_tick,
    round_up_to_tick,
)

STOP_LEG = 0
TARGET_LEG = 1


def against_trader(side: Side, price: float) -> float:
    """Round a fill price to the tick against the trader: buys up, sells down.

    A paper fill is never better than the model's price, so paper results do not flatter
    the strategy by a fraction of a tick on every trade.
    """
    return round_up_to_tick(price) if side is Side.BUY else round_down_to_tick(price)


def market_fill_price(side: Side, ltp: float, slippage_bps: float) -> float:
    """Market buy at LTP × (1 + bps/10,000), market sell at LTP × (1 − bps/10,000), on the tick."""
    slip = slippage_bps / 10_000
    raw = ltp * (1 + slip) if side is Side.BUY else ltp * (1 - slip)
    return against_trader(side, raw)


def limit_fill_price(side: Side, limit: float, ltp: float, slippage_bps: float) -> float | None:
    """The price a resting LIMIT order fills at with LTP `ltp`, or None when it does not fill.

    A sell fills when LTP ≥ limit, at max(limit, LTP × (1 − slippage)); a buy mirrors it:
    fills when LTP ≤ limit, at min(limit, LTP × (1 + slippage)). The limit is on the tick,
    so the max/min of it and a tick-rounded price is on the tick too.
    """
    if side is Side.SELL:
        if ltp < limit:
            return None
        return max(limit, market_fill_price(side, ltp, slippage_bps))
    if ltp > limit:
        return None
    return min(limit, market_fill_price(side, ltp, slippage_bps))


def fill_price(
    side: Side, order_type: OrderType, limit: float | None, ltp: float, slippage_bps: float
) -> float | None:
    """The price an order of this type fills at now, or None when it rests."""
    if order_type is OrderType.MARKET:
        return market_fill_price(side, ltp, slippage_bps)
    assert limit is not None  # OrderRequest refuses a LIMIT order without a price
    return limit_fill_price(side, limit, ltp, slippage_bps)


def fired_leg(
    gtt_type: GttType, triggers: tuple[float, ...], last_price: float, ltp: float
) -> int | None:
    """Which leg of a GTT the price `ltp` fires (0 the stop or only leg, 1 the target), if any.

    Two-leg: the stop fires when LTP ≤ the lower trigger, the target when LTP ≥ the upper.
    Single: as at Kite, the trigger fires when the price reaches it from the side it was
    placed on: a trigger below the last price (a stop) at LTP ≤ trigger, one above at
    LTP ≥ trigger.
    """
    if gtt_type is GttType.TWO_LEG:
        stop, target = triggers
        if ltp <= stop:
            return STOP_LEG
        if ltp >= target:
            return TARGET_LEG
        return None
    (trigger,) = triggers
    if trigger < last_price:
        return STOP_LEG if ltp <= trigger else None
    return STOP_LEG if ltp >= trigger else None


def quiet_range(
    gtts: Iterable[tuple[GttType, tuple[float, ...], float]],
) -> tuple[float, float]:
    """The prices (low, high), both excluded, at which none of `gtts` fires (see fired_leg):
    a price strictly between them needs no look at the GTTs one by one."""
    low, high = -math.inf, math.inf
    for gtt_type, triggers, last_price in gtts:
        if gtt_type is GttType.TWO_LEG:
            low, high = max(low, triggers[0]), min(high, triggers[1])
        elif triggers[0] < last_price:
            low = max(low, triggers[0])
        else:
            high = min(high, triggers[0])
    return low, high


def check_gtt_request(
    request: GttRequest, *, operation: str, active_gtts: int, uncovered_quantity: int
) -> None:
    """Refuse a GTT Kite would refuse, and one that would sell shares already spoken for.

    Kite's own rules (last price, triggers on the tick and > 0.25% away, two-leg order,
    250 active) are the very checks KiteBroker makes, from kite_gtt_rules. On top:
    only SELL GTTs (the paper broker guards holdings, it does not enter on a trigger),
    and `uncovered_quantity` is the holding of the symbol not already covered by other
    active SELL GTTs or open sell orders. Covering a share twice would let two exits
    race for it, so the paper broker refuses that when the GTT is placed.
    """
    kite_gtt_rules.check_gtt(request, operation=operation, active_gtts=active_gtts)
    where = f"{operation} {request.symbol}"
    if request.side is not Side.SELL:
        raise InputRejected(f"{where}: only SELL GTTs are supported by the paper broker")
    if request.quantity > uncovered_quantity:
        raise InputRejected(
            f"{where}: quantity {request.quantity} exceeds the {uncovered_quantity} shares held "
            "and not already covered by another GTT or an open sell order"
        )
