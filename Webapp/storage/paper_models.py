"""SQLAlchemy models of the paper broker's state: account, orders and their history, GTTs, fills.

Every row belongs to one paper account (`paper_account.name`), so paper trading and any
number of backtests can share one database without seeing each other's orders.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from Webapp.storage.models import Base, UTCDateTime


class PaperAccount(Base):
    """One paper trading account: its cash and the counters its ids come from."""

    __tablename__ = "paper_account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    seed: Mapped[int] = mapped_column(Integer)
    starting_cash: Mapped[float] = mapped_column(Float)
    cash: Mapped[float] = mapped_column(Float)
    # Ids come from these counters (never from wall time or uuid4): a replay of the
    # same prices gives the same ids, and a restart continues the sequence.
    next_order_seq: Mapped[int] = mapped_column(Integer, default=1)
    next_gtt_seq: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PaperOrder(Base):
    """An order as it stands now; its every state change is a PaperOrderEvent row."""

    __tablename__ = "paper_orders"
    __table_args__ = (
        UniqueConstraint("account_id", "order_id", name="uq_paper_orders_account_order"),
        Index("ix_paper_orders_account_state", "account_id", "state"),
        Index("ix_paper_orders_account_tag", "account_id", "tag"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("paper_account.id"))
    order_id: Mapped[str] = mapped_column(String(32))
    tag: Mapped[str | None] = mapped_column(String(20), nullable=True)
    symbol: Mapped[str] = mapped_column(String(32))
    exchange: Mapped[str] = mapped_column(String(8))
    product: Mapped[str] = mapped_column(String(8))
    side: Mapped[str] = mapped_column(String(4))
    order_type: Mapped[str] = mapped_column(String(8))
    quantity: Mapped[int] = mapped_column(Integer)
    price: Mapped[float | None] = mapped_column(Float, nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    filled_quantity: Mapped[int] = mapped_column(Integer, default=0)
    average_price: Mapped[float] = mapped_column(Float, default=0.0)
    status_message: Mapped[str | None] = mapped_column(String(255), nullable=True)
    gtt_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the GTT that placed it
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the exit timeout counts from here
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Optimistic lock: every UPDATE checks the version it read, so a second writer on the
    # same account (another process) fails with StaleDataError instead of filling twice.
    version: Mapped[int] = mapped_column(Integer)

    __mapper_args__ = {"version_id_col": version}


class PaperOrderEvent(Base):
    """One state of one order, oldest first by id: what order_history returns."""

    __tablename__ = "paper_order_events"
    __table_args__ = (Index("ix_paper_order_events_order", "order_pk"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_pk: Mapped[int] = mapped_column(ForeignKey("paper_orders.id"))
    state: Mapped[str] = mapped_column(String(16))
    order_type: Mapped[str] = mapped_column(String(8))
    quantity: Mapped[int] = mapped_column(Integer)
    price: Mapped[float | None] = mapped_column(Float, nullable=True)
    filled_quantity: Mapped[int] = mapped_column(Integer)
    average_price: Mapped[float] = mapped_column(Float)
    status_message: Mapped[str | None] = mapped_column(String(255), nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class PaperGtt(Base):
    """A GTT; `state` moves from active exactly once, by a compare-and-set UPDATE."""

    __tablename__ = "paper_gtts"
    __table_args__ = (
        UniqueConstraint("account_id", "gtt_id", name="uq_paper_gtts_account_gtt"),
        Index("ix_paper_gtts_account_state", "account_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("paper_account.id"))
    gtt_id: Mapped[int] = mapped_column(Integer)
    symbol: Mapped[str] = mapped_column(String(32))
    exchange: Mapped[str] = mapped_column(String(8))
    product: Mapped[str] = mapped_column(String(8))
    gtt_type: Mapped[str] = mapped_column(String(16))
    side: Mapped[str] = mapped_column(String(4))
    state: Mapped[str] = mapped_column(String(16))
    triggers: Mapped[list] = mapped_column(JSON)
    limit_prices: Mapped[list] = mapped_column(JSON)
    last_price: Mapped[float] = mapped_column(Float)
    quantity: Mapped[int] = mapped_column(Integer)
    triggered_leg: Mapped[int | None] = mapped_column(Integer, nullable=True)
    results: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PaperHolding(Base):
    """Delivery shares held, at their average cost."""

    __tablename__ = "paper_holdings"
    __table_args__ = (
        UniqueConstraint("account_id", "exchange", "symbol", name="uq_paper_holdings_scrip"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("paper_account.id"))
    exchange: Mapped[str] = mapped_column(String(8))
    symbol: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[int] = mapped_column(Integer)
    average_price: Mapped[float] = mapped_column(Float)


class PaperFill(Base):
    """One execution with its charges; the ledger positions, DP charges and P&L are read from."""

    __tablename__ = "paper_fills"
    __table_args__ = (Index("ix_paper_fills_account_day", "account_id", "ist_day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("paper_account.id"))
    order_pk: Mapped[int] = mapped_column(ForeignKey("paper_orders.id"))
    exchange: Mapped[str] = mapped_column(String(8))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[int] = mapped_column(Integer)
    price: Mapped[float] = mapped_column(Float)
    charges: Mapped[float] = mapped_column(Float)
    dp_charged: Mapped[bool] = mapped_column(Boolean, default=False)
    # (sell price − average cost) × quantity on a sell; 0 on a buy.
    realised_pnl: Mapped[float] = mapped_column(Float, default=0.0)
    ist_day: Mapped[date] = mapped_column(Date)  # DP and positions are per IST trading day
    at: Mapped[datetime] = mapped_column(UTCDateTime)
