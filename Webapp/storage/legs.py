"""Leg rows (trades): write-ahead steps of a leg's life, from its buy intent to its exit fill.

How the engine uses them: one function per step, inside one `transaction()` that is
committed BEFORE the broker call the step announces:

    with transaction(sessions) as s:
        trade, order = add_leg_intent(s, ladder_id, 2, qty, 2.5, None, tag, now=now)
    broker.place_order(...)            # a crash here: the row says PENDING, with its tag
    with transaction(sessions) as s:
        mark_order_sent(s, tag, order_id, now=now)

Every function checks the current state (trading_models: the transition tables, and the
preconditions they cannot express) before it changes anything, so a refused call raises
IllegalTransition having written nothing. The cancel-first rule lives here too: a leg is
sold by the engine only after its GTT is confirmed deleted, never while the GTT may still
sell it. Stops, targets and P&L are what the rules computed: stored, never recomputed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, case, or_, select, update
from sqlalchemy.orm import Session

from Webapp.states import (
    ExitReason,
    GttIntentState,
    IllegalTransition,
    LadderState,
    LegState,
    OrderIntentState,
)
from Webapp.storage.ladders import settle_ladder
from Webapp.storage.orders import check_order_shape, check_tag, in_flight, new_order
from Webapp.storage.trading_models import (
    IN_FLIGHT_ORDER_STATES,
    LIVE_GTT_STATES,
    STOP_REASONS,
    Ladder,
    Trade,
    TradeGtt,
    TradeOrder,
    get_ladder,
    get_trade,
    gtt_to,
    ladder_to,
    leg_to,
    order_by_tag,
    order_to,
    require,
)


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


def record_entry_fill(
    session: Session,
    trade_id: int,
    price: float,
    qty: int,
    at: datetime,
    *,
    stop: float,
    target: float | None,
    broker_order_id: str | None = None,
) -> Trade:
    """The buy filled: leg PENDING_ENTRY → PROTECTING, with the stop and target the rules
    computed for this fill (strategy.ladder.on_fill) and its high.

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
    trade.stop_loss = stop
    trade.target = target
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


def _raise_stops_statement():
    table = Trade.__table__
    return (
        update(table)
        .where(
            table.c.trade_id == bindparam("leg"),
            # Not IN (...): an expanding parameter cannot go with executemany.
            or_(table.c.status == LegState.PROTECTING.value, table.c.status == LegState.OPEN.value),
            or_(table.c.stop_loss.is_(None), table.c.stop_loss <= bindparam("new_stop")),
        )
        .values(
            stop_loss=bindparam("new_stop"),
            high=case(
                (table.c.high > bindparam("new_high"), table.c.high),
                else_=bindparam("new_high"),
            ),
            updated_at=bindparam("now"),
        )
    )


# Built once: the flush runs every second, and building the statement costs more than it.
RAISE_STOPS = _raise_stops_statement()


def raise_stops(
    session: Session, stops: Sequence[tuple[int, float, float]], *, now: datetime
) -> None:
    """Save many legs' higher stops and highs in one statement (the engine's once-a-second
    flush): the same rule as raise_stop, without loading the rows. A leg no longer bought,
    or whose saved stop is higher, is left as it is (the stop never moves down)."""
    if not stops:
        return
    session.connection().execute(
        RAISE_STOPS,
        [{"leg": leg, "new_stop": stop, "new_high": high, "now": now} for leg, stop, high in stops],
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


def record_exit_fill(
    session: Session,
    trade_id: int,
    price: float,
    qty: int,
    at: datetime,
    *,
    pnl: float,
    pnl_pct: float,
    charges: float,
    pnl_net: float,
    tag: str | None = None,
    broker_order_id: str | None = None,
) -> Trade:
    """The leg is sold: PENDING_EXIT → CLOSED with the gross P&L, percent, charges and net
    P&L the rules computed (strategy.pnl.sold_leg_pnl).

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
    trade.status = new_status
    trade.exit_price = price
    trade.exit_time = at
    trade.pnl = pnl
    trade.pnl_pct = pnl_pct
    trade.charges = charges
    trade.pnl_net = pnl_net
    trade.updated_at = at
    if trade.exit_reason in STOP_REASONS and not ladder.stopped_out:
        ladder.stopped_out = True
        if ladder.state == LadderState.OPEN:
            ladder.state = ladder_to(ladder, LadderState.STOPPED_OUT)
        ladder.updated_at = at
    settle_ladder(session, ladder, at)
    return trade


def legs_without_active_gtt(session: Session, account: str) -> list[Trade]:
    """Bought legs (PROTECTING or OPEN) with no GTT placed, being placed, or being modified.

    Resolve gtts_in_flight first: a PENDING placement counts as protection here, so the
    engine does not place a second GTT while the first one's fate is unknown.
    """
    covered = select(TradeGtt.trade_id).where(
        TradeGtt.state.in_(
            [
                GttIntentState.PENDING.value,
                GttIntentState.ACTIVE.value,
                GttIntentState.MODIFYING.value,
            ]
        )
    )
    stmt = (
        select(Trade)
        .join(Ladder)
        .where(
            Ladder.account == account,
            Trade.status.in_([LegState.PROTECTING.value, LegState.OPEN.value]),
            Trade.trade_id.not_in(covered),
        )
        .order_by(Trade.trade_id)
    )
    return list(session.scalars(stmt))
