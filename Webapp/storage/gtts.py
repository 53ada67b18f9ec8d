"""Write-ahead writes of the GTT protecting each leg: place, modify, delete, and its firing.

The state is written before each broker call (see legs.py for the pattern), so
after a crash a GTT row says what may be in flight:
PENDING   place_gtt may or may not have happened: list the broker's GTTs for the symbol.
MODIFYING the old triggers still protect the leg; the broker's triggers say whether the
          modify (kept in pending_triggers) landed.
DELETING  the delete may or may not have happened; if the GTT fired, its order sells.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from Webapp.states import ExitReason, GttIntentState, IllegalTransition, LegState
from Webapp.storage.trading_models import (
    LIVE_GTT_STATES,
    Ladder,
    Trade,
    TradeGtt,
    get_gtt,
    get_trade,
    gtt_to,
    leg_to,
    require,
)

GTT_TYPES = {"single": 1, "two-leg": 2}  # how many triggers each takes: [stop] or [stop, target]


def _check_prices(gtt_type: str, triggers: Sequence[float], limit_prices: Sequence[float]) -> None:
    if gtt_type not in GTT_TYPES:
        raise ValueError(f"gtt_type must be single or two-leg, got {gtt_type!r}")
    expected = GTT_TYPES[gtt_type]
    if len(triggers) != expected or len(limit_prices) != expected:
        raise ValueError(f"a {gtt_type} GTT takes {expected} trigger(s) and limit price(s)")


def gtt_intent(
    session: Session,
    trade_id: int,
    gtt_type: str,
    triggers: Sequence[float],
    limit_prices: Sequence[float],
    *,
    now: datetime,
) -> TradeGtt:
    """Write the leg's GTT (PENDING, for the leg's whole quantity) before place_gtt.

    For a PROTECTING leg (just bought), or an OPEN leg left without a live GTT;
    refused while the leg has another GTT that may exist at the broker.
    """
    _check_prices(gtt_type, triggers, limit_prices)
    trade = get_trade(session, trade_id)
    require(trade.status, {LegState.PROTECTING, LegState.OPEN}, f"leg {trade_id}: place GTT")
    for gtt in trade.gtts:
        if gtt.state in LIVE_GTT_STATES:
            raise IllegalTransition(f"leg {trade_id}: GTT {gtt.id} is already {gtt.state}")
    gtt = TradeGtt(
        trade=trade,
        gtt_type=gtt_type,
        triggers=list(triggers),
        limit_prices=list(limit_prices),
        qty=trade.qty,
        state=GttIntentState.PENDING.value,
        created_at=now,
        updated_at=now,
    )
    session.add(gtt)
    session.flush()
    return gtt


def gtt_placed(session: Session, gtt_row_id: int, broker_gtt_id: int, *, now: datetime) -> TradeGtt:
    """The broker holds the GTT: PENDING → ACTIVE, and the leg is protected (→ OPEN).

    The placement counts as the GTT's last change (`gtt.min_interval_s` starts here).
    """
    gtt = get_gtt(session, gtt_row_id)
    require(gtt.state, {GttIntentState.PENDING}, f"GTT {gtt_row_id}: placed")
    new_state = gtt_to(gtt, GttIntentState.ACTIVE)
    trade = gtt.trade
    new_status = trade.status
    if trade.status == LegState.PROTECTING:
        new_status = leg_to(trade, LegState.OPEN)
    gtt.state = new_state
    gtt.broker_gtt_id = broker_gtt_id
    gtt.last_change_at = now
    gtt.updated_at = now
    trade.status = new_status
    trade.gtt_id = broker_gtt_id
    trade.updated_at = now
    return gtt


def gtt_place_failed(
    session: Session, gtt_row_id: int, *, now: datetime, message: str | None = None
) -> TradeGtt:
    """place_gtt was refused (nothing exists at the broker): PENDING → DELETED.

    The leg stays unprotected (PROTECTING): retry with a new gtt_intent, or exit it.
    """
    gtt = get_gtt(session, gtt_row_id)
    require(gtt.state, {GttIntentState.PENDING}, f"GTT {gtt_row_id}: place failed")
    gtt.state = gtt_to(gtt, GttIntentState.DELETED)
    gtt.status_message = message
    gtt.updated_at = now
    return gtt


def gtt_modify_intent(
    session: Session,
    gtt_row_id: int,
    triggers: Sequence[float],
    limit_prices: Sequence[float],
    *,
    now: datetime,
) -> TradeGtt:
    """Write the new prices (ACTIVE → MODIFYING) before modify_gtt; the old ones still hold."""
    gtt = get_gtt(session, gtt_row_id)
    _check_prices(gtt.gtt_type, triggers, limit_prices)
    # The leg's status alone: loading the leg would load its orders and GTTs too, on the
    # engine thread, for every trailing step.
    status = session.scalar(select(Trade.status).where(Trade.trade_id == gtt.trade_id))
    require(status, {LegState.OPEN}, f"leg {gtt.trade_id}: modify GTT")
    gtt.state = gtt_to(gtt, GttIntentState.MODIFYING)
    gtt.pending_triggers = list(triggers)
    gtt.pending_limit_prices = list(limit_prices)
    gtt.updated_at = now
    return gtt


def gtt_modified(session: Session, gtt_row_id: int, *, now: datetime) -> TradeGtt:
    """The broker confirmed the modify: the new prices hold (MODIFYING → ACTIVE)."""
    gtt = get_gtt(session, gtt_row_id)
    require(gtt.state, {GttIntentState.MODIFYING}, f"GTT {gtt_row_id}: modified")
    gtt.state = gtt_to(gtt, GttIntentState.ACTIVE)
    gtt.triggers = gtt.pending_triggers
    gtt.limit_prices = gtt.pending_limit_prices
    gtt.pending_triggers = gtt.pending_limit_prices = None
    gtt.last_change_at = now
    gtt.updated_at = now
    return gtt


def gtt_modify_failed(
    session: Session, gtt_row_id: int, *, now: datetime, message: str | None = None
) -> TradeGtt:
    """The modify was refused: the old prices still hold (MODIFYING → ACTIVE)."""
    gtt = get_gtt(session, gtt_row_id)
    require(gtt.state, {GttIntentState.MODIFYING}, f"GTT {gtt_row_id}: modify failed")
    gtt.state = gtt_to(gtt, GttIntentState.ACTIVE)
    gtt.pending_triggers = gtt.pending_limit_prices = None
    gtt.status_message = message
    gtt.updated_at = now
    return gtt


def gtt_deleted(session: Session, gtt_row_id: int, *, now: datetime) -> TradeGtt:
    """The broker confirmed the delete of a still-active GTT: DELETING → DELETED.

    Only now may the engine sell the leg (legs.sell_intent).
    """
    gtt = get_gtt(session, gtt_row_id)
    require(gtt.state, {GttIntentState.DELETING}, f"GTT {gtt_row_id}: deleted")
    gtt.state = gtt_to(gtt, GttIntentState.DELETED)
    gtt.updated_at = now
    return gtt


def gtt_triggered(
    session: Session, gtt_row_id: int, trigger_index: int, *, now: datetime
) -> TradeGtt:
    """The GTT fired at the broker (trigger 0 the stop, 1 the target): → TRIGGERED.

    Its own LIMIT sell now sells the leg: the leg goes (or stays) PENDING_EXIT with reason
    stop_gtt or target, and the engine never sells it again; record_exit_fill closes it.
    """
    gtt = get_gtt(session, gtt_row_id)
    if not 0 <= trigger_index < GTT_TYPES[gtt.gtt_type]:
        raise ValueError(f"GTT {gtt_row_id}: no trigger {trigger_index} on a {gtt.gtt_type} GTT")
    new_state = gtt_to(gtt, GttIntentState.TRIGGERED)
    trade = gtt.trade
    new_status = trade.status
    if trade.status != LegState.PENDING_EXIT:
        new_status = leg_to(trade, LegState.PENDING_EXIT)
    gtt.state = new_state
    gtt.updated_at = now
    trade.status = new_status
    trade.exit_reason = (ExitReason.TARGET if trigger_index == 1 else ExitReason.STOP_GTT).value
    trade.updated_at = now
    return gtt


def gtt_vanished(
    session: Session, gtt_row_id: int, *, now: datetime, message: str | None = None
) -> TradeGtt:
    """The broker no longer holds an ACTIVE (or MODIFYING) GTT we did not delete: → DELETED.

    The leg keeps its state but is unprotected: legs_without_active_gtt finds it and the
    engine places a new GTT.
    """
    gtt = get_gtt(session, gtt_row_id)
    require(gtt.state, {GttIntentState.ACTIVE, GttIntentState.MODIFYING}, f"GTT {gtt_row_id}: gone")
    gtt.state = gtt_to(gtt, GttIntentState.DELETED)
    gtt.pending_triggers = gtt.pending_limit_prices = None
    gtt.status_message = message
    gtt.updated_at = now
    return gtt


def gtt_order_failed(
    session: Session, gtt_row_id: int, *, now: datetime, message: str | None = None
) -> TradeGtt:
    """A fired GTT's sell ended unfilled (rejected or cancelled): TRIGGERED → DELETED.

    The leg stays PENDING_EXIT and nothing may sell it but the engine now (sell_intent).
    """
    gtt = get_gtt(session, gtt_row_id)
    require(gtt.state, {GttIntentState.TRIGGERED}, f"GTT {gtt_row_id}: order failed")
    gtt.state = gtt_to(gtt, GttIntentState.DELETED)
    gtt.status_message = message
    gtt.updated_at = now
    return gtt


# The GTT states whose outcome at the broker is unknown after a crash.
IN_FLIGHT_GTT_STATES = (
    GttIntentState.PENDING,
    GttIntentState.MODIFYING,
    GttIntentState.DELETING,
)


def gtts_in_flight(session: Session, account: str) -> list[TradeGtt]:
    """GTTs whose place, modify or delete may or may not have reached the broker."""
    stmt = (
        select(TradeGtt)
        .join(Trade)
        .join(Ladder)
        .where(
            Ladder.account == account,
            TradeGtt.state.in_([s.value for s in IN_FLIGHT_GTT_STATES]),
        )
        .order_by(TradeGtt.id)
    )
    return list(session.scalars(stmt))
