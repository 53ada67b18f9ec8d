"""Write-ahead writes of ladders, legs and their orders: each checks the state, then writes it.

How the engine uses them: one function per step, inside one `transaction()` that is
committed BEFORE the broker call the step announces:

    with transaction(sessions) as s:
        trade, order = add_leg_intent(s, ladder_id, 2, qty, 2.5, None, tag, now=now)
    broker.place_order(...)            # a crash here: the row says PENDING, with its tag
    with transaction(sessions) as s:
        mark_order_sent(s, tag, order_id, now=now)

Every function checks the current state with `check_transition` (and the preconditions
the transition tables cannot express) before it changes anything, so a refused call raises
IllegalTransition having written nothing, and the caller's transaction rolls back.
Several calls may share one transaction when they must happen together (open_ladder and
the first leg's add_leg_intent). Exits are in trading_exits.py, GTT writes in
trading_gtts.py, the reads a restarting engine needs in trading_reads.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from Webapp.states import (
    GTT_TRANSITIONS,
    LADDER_TRANSITIONS,
    LEG_TRANSITIONS,
    ORDER_TRANSITIONS,
    ExitReason,
    GttIntentState,
    IllegalTransition,
    LadderState,
    LegState,
    OrderIntentState,
    check_transition,
)
from Webapp.storage.trading_models import Ladder, Trade, TradeGtt, TradeOrder

# states.py has no ladder table yet; a ladder only ever moves forward.
FINAL_LEG_STATES = frozenset({LegState.CLOSED, LegState.CANCELLED})
IN_FLIGHT_ORDER_STATES = frozenset({OrderIntentState.PENDING, OrderIntentState.OPEN})
# A GTT in one of these may still exist at the broker (or is about to): the leg must not
# get a second one, and must not be sold by the engine (the GTT could sell it too).
LIVE_GTT_STATES = frozenset(
    {
        GttIntentState.PENDING,
        GttIntentState.ACTIVE,
        GttIntentState.MODIFYING,
        GttIntentState.DELETING,
    }
)
STOP_REASONS = frozenset({ExitReason.STOP_GTT, ExitReason.STOP_ENGINE})
ORDER_TYPES = frozenset({"MARKET", "LIMIT"})
_TAG = re.compile(r"^[A-Za-z0-9]{1,20}$")  # what Kite accepts as a client id


class RecordNotFound(LookupError):
    """No row with that id or tag: the caller holds a stale or foreign reference."""


# --- helpers shared with trading_gtts.py and trading_reads.py ----------------------------


def get_trade(session: Session, trade_id: int) -> Trade:
    # FOR UPDATE on PostgreSQL: a second writer waits instead of deciding on a stale state.
    trade = session.get(Trade, trade_id, with_for_update=True)
    if trade is None:
        raise RecordNotFound(f"no leg with trade_id {trade_id}")
    return trade


def get_ladder(session: Session, ladder_id: int) -> Ladder:
    ladder = session.get(Ladder, ladder_id, with_for_update=True)
    if ladder is None:
        raise RecordNotFound(f"no ladder with id {ladder_id}")
    return ladder


def order_by_tag(session: Session, tag: str) -> TradeOrder:
    order = session.scalars(
        select(TradeOrder).where(TradeOrder.tag == tag).with_for_update()
    ).one_or_none()
    if order is None:
        raise RecordNotFound(f"no order with tag {tag!r}")
    return order


def require(current: str, allowed: Iterable[str], what: str) -> None:
    """Refuse a call whose precondition the transition tables cannot express."""
    allowed = set(allowed)
    if current not in allowed:
        wanted = " or ".join(sorted(allowed))
        raise IllegalTransition(f"{what}: state is {current}, needs {wanted}")


# Each returns the row's next state (a plain string for the column), or raises
# IllegalTransition when the table refuses it; none of them writes.


def leg_to(trade: Trade, new: LegState) -> str:
    return check_transition(LEG_TRANSITIONS, LegState(trade.status), new).value


def order_to(order: TradeOrder, new: OrderIntentState) -> str:
    return check_transition(ORDER_TRANSITIONS, OrderIntentState(order.state), new).value


def gtt_to(gtt: TradeGtt, new: GttIntentState) -> str:
    return check_transition(GTT_TRANSITIONS, GttIntentState(gtt.state), new).value


def ladder_to(ladder: Ladder, new: LadderState) -> str:
    return check_transition(LADDER_TRANSITIONS, LadderState(ladder.state), new).value


def settle_ladder(session: Session, ladder: Ladder, at: datetime) -> None:
    """Close the ladder when every leg is final: its symbol cools down from `closed_at`."""
    if ladder.legs and all(leg.status in FINAL_LEG_STATES for leg in ladder.legs):
        ladder.state = ladder_to(ladder, LadderState.CLOSED)
        ladder.closed_at = at
        ladder.updated_at = at


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


# --- ladders ------------------------------------------------------------------------------


def open_ladder(session: Session, account: str, symbol: str, *, now: datetime) -> Ladder:
    """A new ladder in OPEN, refused while the account has a ladder on `symbol` not CLOSED.

    Recovery: an OPEN ladder with no legs means a crash before its first add_leg_intent
    (call both in one transaction to avoid it); `abandon_ladder` closes it.
    """
    existing = session.scalars(
        select(Ladder.id).where(
            Ladder.account == account,
            Ladder.symbol == symbol,
            Ladder.state != LadderState.CLOSED.value,
        )
    ).first()
    if existing is not None:
        raise IllegalTransition(f"{account}: ladder {existing} on {symbol} is still open")
    ladder = Ladder(
        account=account,
        symbol=symbol,
        state=LadderState.OPEN.value,
        stopped_out=False,
        opened_at=now,
        updated_at=now,
    )
    session.add(ladder)
    session.flush()
    return ladder


def abandon_ladder(session: Session, ladder_id: int, *, now: datetime) -> Ladder:
    """Close a ladder none of whose legs is live (say, left with no legs by a crash)."""
    ladder = get_ladder(session, ladder_id)
    live = [leg.trade_id for leg in ladder.legs if leg.status not in FINAL_LEG_STATES]
    if live:
        raise IllegalTransition(f"ladder {ladder_id}: legs {live} are not final")
    ladder.state = ladder_to(ladder, LadderState.CLOSED)
    ladder.closed_at = now
    ladder.updated_at = now
    return ladder


# --- entries ------------------------------------------------------------------------------


def add_leg_intent(
    session: Session,
    ladder_id: int,
    position_number: int,
    qty: int,
    sl_pct: float,
    target_pct: float | None,
    tag: str,
    *,
    now: datetime,
    order_type: str = "MARKET",
    price: float | None = None,
) -> tuple[Trade, TradeOrder]:
    """Write the leg (PENDING_ENTRY) and its buy (PENDING, with `tag`) before place_order.

    Recovery: PENDING_ENTRY with a PENDING order means the buy may or may not have reached
    the broker; look the tag up in the day's orders (never place it again blindly).
    Refused: a ladder that is not OPEN (closed, or stopped out: no legs after a stop), a
    stop exit in flight, another entry in flight, or a position out of order (P1, P2, P3,
    each once; a cancelled entry may be tried again).
    """
    check_tag(tag)
    check_order_shape(order_type, price)
    if qty <= 0:
        raise ValueError(f"quantity must be > 0, got {qty}")
    if not 1 <= position_number <= 3:
        raise ValueError(f"position_number must be 1-3, got {position_number}")
    ladder = get_ladder(session, ladder_id)
    require(ladder.state, {LadderState.OPEN}, f"ladder {ladder_id}: add P{position_number}")
    if ladder.stopped_out:
        raise IllegalTransition(f"ladder {ladder_id}: stopped out, no more legs")
    legs = [leg for leg in ladder.legs if leg.status != LegState.CANCELLED]
    for leg in legs:
        if leg.status == LegState.PENDING_ENTRY:
            raise IllegalTransition(f"ladder {ladder_id}: P{leg.position_number} entry in flight")
        if leg.status == LegState.PENDING_EXIT and leg.exit_reason in STOP_REASONS:
            raise IllegalTransition(f"ladder {ladder_id}: P{leg.position_number} stop in flight")
    held = sorted(leg.position_number for leg in legs)
    if held != list(range(1, position_number)):
        raise IllegalTransition(f"ladder {ladder_id}: P{position_number} after legs {held}")
    trade = Trade(
        ladder=ladder,
        symbol=ladder.symbol,
        position_number=position_number,
        qty=qty,
        status=LegState.PENDING_ENTRY.value,
        sl_pct=sl_pct,
        target_pct=target_pct,
        entry_tag=tag,
        created_at=now,
        updated_at=now,
    )
    order = new_order(
        trade, tag=tag, side="BUY", order_type=order_type, price=price, purpose="entry", now=now
    )
    session.add_all([trade, order])
    session.flush()
    return trade, order


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


def record_entry_fill(
    session: Session,
    trade_id: int,
    price: float,
    qty: int,
    at: datetime,
    *,
    broker_order_id: str | None = None,
) -> Trade:
    """The buy filled: leg PENDING_ENTRY → PROTECTING, its stop, high and target set.

    A `qty` below the ordered quantity is a partial fill whose rest was cancelled: the leg
    holds what was bought (the order is then CANCELLED with its filled part).
    Recovery: PROTECTING means shares are held without a GTT; place one at once.
    """
    trade = get_trade(session, trade_id)
    new_status = leg_to(trade, LegState.PROTECTING)
    entries = in_flight(trade, {"entry"})
    if len(entries) != 1:
        raise IllegalTransition(f"leg {trade_id}: no entry order in flight")
    order = entries[0]
    if not 0 < qty <= order.qty:
        raise ValueError(f"leg {trade_id}: filled quantity {qty} outside 1-{order.qty}")
    if price <= 0:
        raise ValueError(f"leg {trade_id}: fill price must be > 0, got {price}")
    order_state = OrderIntentState.FILLED if qty == order.qty else OrderIntentState.CANCELLED
    order.state = order_to(order, order_state)
    order.filled_qty = qty
    order.average_price = price
    order.broker_order_id = broker_order_id or order.broker_order_id
    order.updated_at = at
    trade.status = new_status
    trade.qty = qty
    trade.entry_price = price
    trade.entry_time = at
    trade.high = price
    trade.stop_loss = price * (1 - trade.sl_pct / 100)
    trade.target = None if trade.target_pct is None else price * (1 + trade.target_pct / 100)
    trade.updated_at = at
    return trade


def cancel_entry(
    session: Session,
    trade_id: int,
    *,
    now: datetime,
    order_state: OrderIntentState = OrderIntentState.CANCELLED,
    message: str | None = None,
) -> Trade:
    """The buy ended with nothing filled (cancelled or rejected): leg → CANCELLED.

    The ladder closes when that leaves it no live leg (a refused P1 still starts the
    cooldown, so a rejected symbol is not retried every scan).
    """
    require(order_state, {OrderIntentState.CANCELLED, OrderIntentState.REJECTED}, "cancel_entry")
    trade = get_trade(session, trade_id)
    new_status = leg_to(trade, LegState.CANCELLED)
    entries = in_flight(trade, {"entry"})
    if len(entries) != 1:
        raise IllegalTransition(f"leg {trade_id}: no entry order in flight")
    order = entries[0]
    order.state = order_to(order, order_state)
    order.status_message = message
    order.updated_at = now
    trade.status = new_status
    trade.updated_at = now
    settle_ladder(session, trade.ladder, now)
    return trade


# --- the stop -----------------------------------------------------------------------------


def raise_stop(
    session: Session, trade_id: int, stop: float, high: float, *, now: datetime
) -> Trade:
    """Save a higher stop and high of a bought leg; a lower stop is refused (never moves down).

    `high` only ever rises too: a lower one is ignored, not an error (the stop is the rule).
    """
    trade = get_trade(session, trade_id)
    require(trade.status, {LegState.PROTECTING, LegState.OPEN}, f"leg {trade_id}: raise stop")
    if trade.stop_loss is not None and stop < trade.stop_loss:
        raise IllegalTransition(
            f"leg {trade_id}: stop {stop} below {trade.stop_loss} refused (never moves down)"
        )
    trade.stop_loss = stop
    trade.high = max(high, trade.high or high)
    trade.updated_at = now
    return trade
