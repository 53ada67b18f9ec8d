"""The reads a (re)starting engine and the pages need: open ladders, work in flight, P&L."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from Webapp.states import GttIntentState, LadderState, LegState
from Webapp.storage.trading_models import Ladder, Trade, TradeGtt, TradeOrder
from Webapp.storage.trading_store import IN_FLIGHT_ORDER_STATES

# The GTT states whose outcome at the broker is unknown after a crash.
IN_FLIGHT_GTT_STATES = (
    GttIntentState.PENDING,
    GttIntentState.MODIFYING,
    GttIntentState.DELETING,
)


@dataclass(frozen=True)
class RealisedPnl:
    gross: float
    charges: float
    net: float
    legs: int  # legs closed in the period


def open_ladders(session: Session, account: str) -> list[Ladder]:
    """Ladders not CLOSED, oldest first, with their legs, and the legs' orders and GTTs."""
    stmt = (
        select(Ladder)
        .where(Ladder.account == account, Ladder.state != LadderState.CLOSED.value)
        .order_by(Ladder.id)
    )
    return list(session.scalars(stmt))  # legs, orders and GTTs load by selectin


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


def last_closed_at(session: Session, account: str, symbol: str) -> datetime | None:
    """When the account's last ladder on `symbol` closed (the cooldown counts from it)."""
    stmt = (
        select(Ladder.closed_at)
        .where(
            Ladder.account == account,
            Ladder.symbol == symbol,
            Ladder.state == LadderState.CLOSED.value,
        )
        .order_by(Ladder.closed_at.desc())
        .limit(1)
    )
    return session.scalar(stmt)


def todays_realised_pnl(session: Session, account: str, day_start_utc: datetime) -> RealisedPnl:
    """Gross, charges and net P&L of legs closed since `day_start_utc` (IST midnight, in UTC)."""
    stmt = (
        select(
            func.coalesce(func.sum(Trade.pnl), 0.0),
            func.coalesce(func.sum(Trade.charges), 0.0),
            func.coalesce(func.sum(Trade.pnl_net), 0.0),
            func.count(Trade.trade_id),
        )
        .join(Ladder)
        .where(
            Ladder.account == account,
            Trade.status == LegState.CLOSED.value,
            Trade.exit_time >= day_start_utc,
        )
    )
    gross, charges, net, legs = session.execute(stmt).one()
    return RealisedPnl(round(gross, 2), round(charges, 2), round(net, 2), legs)


def trades_between(session: Session, account: str, start: datetime, end: datetime) -> list[Trade]:
    """Legs bought in [start, end), in the order they were bought (the trades page)."""
    stmt = (
        select(Trade)
        .join(Ladder)
        .where(Ladder.account == account, Trade.entry_time >= start, Trade.entry_time < end)
        .order_by(Trade.entry_time, Trade.trade_id)
    )
    return list(session.scalars(stmt))
