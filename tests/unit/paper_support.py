"""Shared pieces of the paper broker tests: a database, a clock that moves when told, params."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from Webapp.broker.base import (
    GttRequest,
    GttType,
    OrderRequest,
    OrderType,
    OrderUpdate,
    Side,
    shares_held,
)
from Webapp.broker.paper import PaperBroker
from Webapp.config.params import Params, load_params
from Webapp.storage import paper_models  # noqa: F401  (registers the paper tables)
from Webapp.storage.db import make_session_factory
from Webapp.storage.models import Base

SHIPPED = Path(__file__).resolve().parents[2] / "support_files" / "param.yaml"
PARAMS = load_params(SHIPPED)
START = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # a Monday, 09:30 IST
SYMBOL = "INFY"


def params(*, slippage_bps: float = 5.0, exit_timeout_s: int = 30, charges: bool = True) -> Params:
    """The shipped params with the paper knobs set; `charges=False` zeroes every rate.

    Scenario tables run without charges so their cash figures are plain arithmetic;
    the charge tests turn them on and check against Webapp.broker.charges.
    """
    rates = PARAMS.charges
    if not charges:
        rates = rates.model_copy(
            update={
                "brokerage": 0.0,
                "stt_pct": 0.0,
                "nse_txn_pct": 0.0,
                "sebi_per_crore": 0.0,
                "stamp_duty_pct": 0.0,
                "gst_pct": 0.0,
                "dp_charge": 0.0,
            }
        )
    return PARAMS.model_copy(
        update={
            "paper": PARAMS.paper.model_copy(update={"slippage_bps": slippage_bps}),
            "exit_timeout_s": exit_timeout_s,
            "charges": rates,
        }
    )


class Clock:
    """Time that moves only when a test says so."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def memory_sessions() -> sessionmaker[Session]:
    """A private in-memory SQLite app DB with the paper tables (one connection, any thread)."""
    engine = create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    Base.metadata.create_all(engine)
    return make_session_factory(engine)


class Recorder:
    """Collects the broker's order updates, in the order they were pushed."""

    def __init__(self) -> None:
        self.updates: list[OrderUpdate] = []

    def __call__(self, update: OrderUpdate) -> None:
        self.updates.append(update)

    def states(self, order_id: str) -> list[str]:
        return [u.order.state.value for u in self.updates if u.order.order_id == order_id]


def make_broker(
    sessions: sessionmaker[Session] | None = None,
    clock: Clock | None = None,
    *,
    cash: float = 100_000.0,
    seed: int = 7,
    account: str = "paper",
    p: Params | None = None,
    ltp=None,
) -> PaperBroker:
    return PaperBroker(
        sessions or memory_sessions(),
        p or params(charges=False),
        clock=clock or Clock(),
        starting_cash=cash,
        ltp=ltp,
        seed=seed,
        account=account,
    )


def market(side: Side, quantity: int, symbol: str = SYMBOL, tag: str = "T1") -> OrderRequest:
    return OrderRequest(symbol, side, quantity, OrderType.MARKET, tag)


def limit(
    side: Side, quantity: int, price: float, symbol: str = SYMBOL, tag: str = "T1"
) -> OrderRequest:
    return OrderRequest(symbol, side, quantity, OrderType.LIMIT, tag, price=price)


def single_gtt(
    stop: float, limit_price: float, last: float, quantity: int, symbol: str = SYMBOL
) -> GttRequest:
    return GttRequest(symbol, GttType.SINGLE, (stop,), (limit_price,), last, quantity)


def oco_gtt(
    stop: float,
    target: float,
    limits: tuple[float, float],
    last: float,
    quantity: int,
    symbol: str = SYMBOL,
) -> GttRequest:
    return GttRequest(symbol, GttType.TWO_LEG, (stop, target), limits, last, quantity)


def shares(broker: PaperBroker, symbol: str = SYMBOL) -> int:
    """The shares of `symbol` the account holds: its holdings and today's positions, as on
    Kite (holdings are the shares the day opened with; today's buys are positions)."""
    return shares_held(broker.holdings(), broker.positions()).get(symbol, 0)


def bought(broker: PaperBroker, quantity: int, at: float, symbol: str = SYMBOL) -> None:
    """Hold `quantity` shares of `symbol`, bought at market with LTP `at`."""
    broker.on_price(symbol, at)
    broker.place_order(market(Side.BUY, quantity, symbol, tag="SETUP"))
