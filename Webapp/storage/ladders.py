"""Ladder rows: opened with their first leg, closed with their last; what the day's ladders made.

A ladder closes when every leg is final (its symbol then cools down from `closed_at`);
the reads here give a restarting engine its open ladders and today's realised P&L.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from Webapp.states import IllegalTransition, LadderState, LegState
from Webapp.storage.trading_models import FINAL_LEG_STATES, Ladder, Trade, get_ladder, ladder_to


def settle_ladder(session: Session, ladder: Ladder, at: datetime) -> None:
    """Close the ladder when every leg is final: its symbol cools down from `closed_at`."""
    if ladder.legs and all(leg.status in FINAL_LEG_STATES for leg in ladder.legs):
        ladder.state = ladder_to(ladder, LadderState.CLOSED)
        ladder.closed_at = at
        ladder.updated_at = at


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


def open_ladders(session: Session, account: str) -> list[Ladder]:
    """Ladders not CLOSED, oldest first, with their legs, and the legs' orders and GTTs."""
    stmt = (
        select(Ladder)
        .where(Ladder.account == account, Ladder.state != LadderState.CLOSED.value)
        .order_by(Ladder.id)
    )
    return list(session.scalars(stmt))  # legs, orders and GTTs load by selectin


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


@dataclass(frozen=True)
class RealisedPnl:
    gross: float
    charges: float
    net: float
    legs: int  # legs closed in the period


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
