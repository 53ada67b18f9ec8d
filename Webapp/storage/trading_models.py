"""The trading tables (ladders, their legs, orders, GTTs, params), how a row is found, and
which state moves each row allows.

Every state column holds a value of Webapp/states.py and is written before the
broker call that changes it (write-ahead; see legs.py), so after a crash at any
line the rows say what may be in flight and reconciliation knows what to look up.
Every ladder belongs to one `account` ("live", "paper", "backtest:<run>", ...), so paper,
live and backtests can share one database without ever seeing each other's legs.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

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
from Webapp.storage.models import Base, UTCDateTime


class Ladder(Base):
    """The position in one symbol: up to three legs, opened and closed together."""

    __tablename__ = "ladders"
    __table_args__ = (
        Index("ix_ladders_account_state", "account", "state"),
        Index("ix_ladders_account_symbol", "account", "symbol"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))  # LadderState
    # Kept after the ladder closes (state CLOSED), for the trades page and the reports.
    stopped_out: Mapped[bool] = mapped_column(Boolean, default=False)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # cooldown
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    legs: Mapped[list[Trade]] = relationship(
        back_populates="ladder", order_by="Trade.trade_id", lazy="selectin"
    )


class Trade(Base):
    """One leg of a ladder (P1, P2 or P3): its buy, its stop and target, its sell and P&L."""

    __tablename__ = "trades"
    __table_args__ = (
        Index("ix_trades_symbol_status", "symbol", "status"),
        Index("ix_trades_entry_time", "entry_time"),
        Index("ix_trades_pnl", "pnl"),
    )

    trade_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ladder_id: Mapped[int] = mapped_column(ForeignKey("ladders.id"))
    symbol: Mapped[str] = mapped_column(String(32))
    position_number: Mapped[int] = mapped_column(Integer)  # 1-3
    qty: Mapped[int] = mapped_column(Integer)  # ordered; the filled quantity once bought
    status: Mapped[str] = mapped_column(String(16))  # LegState
    sl_pct: Mapped[float] = mapped_column(Float)
    target_pct: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: a runner
    entry_price: Mapped[float | None] = mapped_column(Float, nullable=True)
    entry_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The engine's unrounded stop; the GTT's trigger is this rounded down to the tick.
    stop_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    high: Mapped[float | None] = mapped_column(Float, nullable=True)  # highest LTP since fill
    target: Mapped[float | None] = mapped_column(Float, nullable=True)
    gtt_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the broker's GTT id
    exit_price: Mapped[float | None] = mapped_column(Float, nullable=True)
    exit_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    exit_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)  # ExitReason
    pnl: Mapped[float | None] = mapped_column(Float, nullable=True)  # gross, rupees
    pnl_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    charges: Mapped[float | None] = mapped_column(Float, nullable=True)  # buy + sell
    pnl_net: Mapped[float | None] = mapped_column(Float, nullable=True)
    entry_tag: Mapped[str | None] = mapped_column(String(20), nullable=True)
    exit_tag: Mapped[str | None] = mapped_column(String(20), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    ladder: Mapped[Ladder] = relationship(back_populates="legs")
    orders: Mapped[list[TradeOrder]] = relationship(
        back_populates="trade", order_by="TradeOrder.id", lazy="selectin"
    )
    gtts: Mapped[list[TradeGtt]] = relationship(
        back_populates="trade", order_by="TradeGtt.id", lazy="selectin"
    )


class TradeOrder(Base):
    """One order the engine asked for, found again at the broker by its `tag` after a crash."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("tag", name="uq_orders_tag"),
        Index("ix_orders_state", "state"),
        Index("ix_orders_trade_id", "trade_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trade_id: Mapped[int] = mapped_column(ForeignKey("trades.trade_id"))
    tag: Mapped[str] = mapped_column(String(20))  # Kite's client id: ≤ 20 letters or digits
    broker_order_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    side: Mapped[str] = mapped_column(String(4))  # BUY | SELL
    order_type: Mapped[str] = mapped_column(String(8))  # MARKET | LIMIT
    qty: Mapped[int] = mapped_column(Integer)
    price: Mapped[float | None] = mapped_column(Float, nullable=True)  # LIMIT only
    purpose: Mapped[str] = mapped_column(String(16))  # entry | exit | emergency
    state: Mapped[str] = mapped_column(String(16))  # OrderIntentState
    filled_qty: Mapped[int] = mapped_column(Integer, default=0)
    average_price: Mapped[float | None] = mapped_column(Float, nullable=True)
    status_message: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    trade: Mapped[Trade] = relationship(back_populates="orders")


class TradeGtt(Base):
    """The GTT protecting one leg; a modify in flight keeps its new prices in `pending_*`."""

    __tablename__ = "gtts"
    __table_args__ = (
        Index("ix_gtts_state", "state"),
        Index("ix_gtts_trade_id", "trade_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trade_id: Mapped[int] = mapped_column(ForeignKey("trades.trade_id"))
    broker_gtt_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    gtt_type: Mapped[str] = mapped_column(String(16))  # single | two-leg
    triggers: Mapped[list] = mapped_column(JSON)  # [stop] or [stop, target], as sent
    limit_prices: Mapped[list] = mapped_column(JSON)
    # A modify in flight: the old triggers still protect the leg until the broker confirms,
    # and after a crash the broker's triggers tell which of the two it holds.
    pending_triggers: Mapped[list | None] = mapped_column(JSON, nullable=True)
    pending_limit_prices: Mapped[list | None] = mapped_column(JSON, nullable=True)
    qty: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # GttIntentState
    status_message: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # Placement or the last confirmed modify: `gtt.min_interval_s` counts from here.
    last_change_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    trade: Mapped[Trade] = relationship(back_populates="gtts")


class ParamVersion(Base):
    """One version of param.yaml as loaded: the whole text, who, when, and its diff."""

    __tablename__ = "param_versions"
    __table_args__ = (UniqueConstraint("version", name="uq_param_versions_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(64))
    yaml: Mapped[str] = mapped_column(Text)
    diff: Mapped[str] = mapped_column(Text)  # unified diff against the previous version
    note: Mapped[str | None] = mapped_column(Text, nullable=True)


# --- finding a row, and the state moves the transition tables allow ----------------------

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


class RecordNotFound(LookupError):
    """No row with that id or tag: the caller holds a stale or foreign reference."""


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


def get_gtt(session: Session, gtt_row_id: int) -> TradeGtt:
    gtt = session.get(TradeGtt, gtt_row_id, with_for_update=True)
    if gtt is None:
        raise RecordNotFound(f"no GTT row with id {gtt_row_id}")
    return gtt


def require(current: str, allowed: Iterable[str], what: str) -> None:
    """Refuse a call whose precondition the transition tables cannot express."""
    allowed = set(allowed)
    if current not in allowed:
        wanted = " or ".join(sorted(allowed))
        raise IllegalTransition(f"{what}: state is {current}, needs {wanted}")


def leg_to(trade: Trade, new: LegState) -> str:
    return check_transition(LEG_TRANSITIONS, LegState(trade.status), new).value


def order_to(order: TradeOrder, new: OrderIntentState) -> str:
    return check_transition(ORDER_TRANSITIONS, OrderIntentState(order.state), new).value


def gtt_to(gtt: TradeGtt, new: GttIntentState) -> str:
    return check_transition(GTT_TRANSITIONS, GttIntentState(gtt.state), new).value


def ladder_to(ladder: Ladder, new: LadderState) -> str:
    return check_transition(LADDER_TRANSITIONS, LadderState(ladder.state), new).value
