"""Write-ahead writes of a leg's exit: decide, delete the GTT, sell, record the fill and P&L.

The cancel-first rule lives here: a leg is sold by the engine only after its GTT is
confirmed deleted, and never while the GTT may still sell it (see trading_store.py for
how the engine calls these, one committed transaction before each broker call).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from Webapp.states import (
    ExitReason,
    GttIntentState,
    IllegalTransition,
    LadderState,
    LegState,
    OrderIntentState,
)
from Webapp.storage.trading_models import Trade, TradeOrder
from Webapp.storage.trading_store import (
    IN_FLIGHT_ORDER_STATES,
    LIVE_GTT_STATES,
    STOP_REASONS,
    check_order_shape,
    check_tag,
    get_trade,
    gtt_to,
    in_flight,
    ladder_to,
    leg_to,
    new_order,
    order_by_tag,
    order_to,
    require,
    settle_ladder,
)


def exit_intent(session: Session, trade_id: int, reason: ExitReason, *, now: datetime) -> Trade:
    """Exit decided: leg → PENDING_EXIT and its live GTT → DELETING, before delete_gtt.

    The cancel-first rule: sell (sell_intent) only after gtt_deleted confirms the GTT
    was still active; if it had fired (gtt_triggered), its own order sells the leg.
    Recovery: PENDING_EXIT with a DELETING GTT means the delete may or may not have
    happened; list the GTTs. Refused while a GTT placement is in flight (resolve it first).
    """
    trade = get_trade(session, trade_id)
    new_status = leg_to(trade, LegState.PENDING_EXIT)
    live = [g for g in trade.gtts if g.state in LIVE_GTT_STATES]
    if any(g.state == GttIntentState.PENDING for g in live):
        raise IllegalTransition(f"leg {trade_id}: GTT placement in flight")
    deleting = [(gtt, gtt_to(gtt, GttIntentState.DELETING)) for gtt in live]  # check all first
    for gtt, state in deleting:
        gtt.state = state
        gtt.updated_at = now
    trade.status = new_status
    trade.exit_reason = ExitReason(reason).value
    trade.updated_at = now
    return trade


def exit_undone(session: Session, trade_id: int, *, now: datetime) -> Trade:
    """The GTT delete failed and the GTT still protects the leg: back to OPEN, GTT ACTIVE."""
    trade = get_trade(session, trade_id)
    new_status = leg_to(trade, LegState.OPEN)
    deleting = [g for g in trade.gtts if g.state == GttIntentState.DELETING]
    if len(deleting) != 1:
        raise IllegalTransition(f"leg {trade_id}: no GTT being deleted to keep")
    if in_flight(trade, {"exit", "emergency"}):
        raise IllegalTransition(f"leg {trade_id}: a sell is in flight")
    gtt = deleting[0]
    gtt.state = gtt_to(gtt, GttIntentState.ACTIVE)
    gtt.updated_at = now
    trade.status = new_status
    trade.exit_reason = None
    trade.updated_at = now
    return trade


def sell_intent(
    session: Session,
    trade_id: int,
    tag: str,
    *,
    now: datetime,
    order_type: str = "MARKET",
    price: float | None = None,
    purpose: str = "exit",
) -> TradeOrder:
    """Write the sell (PENDING, with `tag`) of a PENDING_EXIT leg before place_order.

    Refused while any GTT of the leg may still exist or has fired, and while another
    sell is in flight or filled: a leg is never sold twice.
    Recovery: as for the buy, look the tag up; never place it again blindly.
    """
    check_tag(tag)
    check_order_shape(order_type, price)
    if purpose not in ("exit", "emergency"):
        raise ValueError(f"a sell's purpose is exit or emergency, got {purpose!r}")
    trade = get_trade(session, trade_id)
    require(trade.status, {LegState.PENDING_EXIT}, f"leg {trade_id}: sell")
    for gtt in trade.gtts:
        if gtt.state in LIVE_GTT_STATES or gtt.state == GttIntentState.TRIGGERED:
            raise IllegalTransition(f"leg {trade_id}: GTT {gtt.id} is {gtt.state}, not deleted")
    for order in trade.orders:
        if order.side == "SELL" and order.state in {
            *IN_FLIGHT_ORDER_STATES,
            OrderIntentState.FILLED,
        }:
            raise IllegalTransition(f"leg {trade_id}: sell {order.tag} is {order.state}")
    order = new_order(
        trade, tag=tag, side="SELL", order_type=order_type, price=price, purpose=purpose, now=now
    )
    session.add(order)
    trade.exit_tag = tag
    trade.updated_at = now
    session.flush()
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


def record_exit_fill(
    session: Session,
    trade_id: int,
    price: float,
    qty: int,
    at: datetime,
    charges: float,
    *,
    tag: str | None = None,
    broker_order_id: str | None = None,
) -> Trade:
    """The leg is sold: PENDING_EXIT → CLOSED with gross P&L, pnl_pct, charges and net P&L.

    `tag` names our sell order; without it the leg must have a TRIGGERED GTT (its order
    sold the leg). `charges` are all of the leg's charges, buy and sell. A stop exit marks
    the ladder stopped out; the ladder closes (cooldown from `at`) with its last leg.
    """
    trade = get_trade(session, trade_id)
    new_status = leg_to(trade, LegState.CLOSED)
    if trade.exit_reason is None:
        raise IllegalTransition(f"leg {trade_id}: no exit reason recorded")
    if qty != trade.qty:
        raise ValueError(f"leg {trade_id}: sold {qty} of {trade.qty} (partial exits unsupported)")
    order = None
    if tag is not None:
        order = order_by_tag(session, tag)
        if order.trade_id != trade_id or order.side != "SELL":
            raise IllegalTransition(f"order {tag} is not a sell of leg {trade_id}")
        order_state = order_to(order, OrderIntentState.FILLED)
    elif not any(g.state == GttIntentState.TRIGGERED for g in trade.gtts):
        raise IllegalTransition(f"leg {trade_id}: sold by neither a sell of ours nor its GTT")
    ladder = trade.ladder
    if order is not None:
        order.state = order_state
        order.filled_qty = qty
        order.average_price = price
        order.broker_order_id = broker_order_id or order.broker_order_id
        order.updated_at = at
    gross = (price - trade.entry_price) * qty
    trade.status = new_status
    trade.exit_price = price
    trade.exit_time = at
    trade.pnl = round(gross, 2)
    trade.pnl_pct = round((price / trade.entry_price - 1) * 100, 4)
    trade.charges = round(charges, 2)
    trade.pnl_net = round(gross - charges, 2)
    trade.updated_at = at
    if trade.exit_reason in STOP_REASONS and not ladder.stopped_out:
        ladder.stopped_out = True
        if ladder.state == LadderState.OPEN:
            ladder.state = ladder_to(ladder, LadderState.STOPPED_OUT)
        ladder.updated_at = at
    settle_ladder(session, ladder, at)
    return trade
