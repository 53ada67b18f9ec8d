"""A whole paper-trading engine in one thread for tests: app DB, PaperBroker, Trader, InlineDriver.

Everything is real (the migrated app DB, the paper fill model, the trader's write-ahead
steps); only time is simulated, so each test states its prices and seconds exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from Webapp.broker.paper import PaperBroker
from Webapp.config.params import Params, load_params
from Webapp.execution.builders import Driver, inline_engine, paper_account
from Webapp.execution.clock import SimulatedClock
from Webapp.execution.commands import Command, CommandKind
from Webapp.execution.inline import InlineDriver, InlineGateway
from Webapp.execution.trader import Trader
from Webapp.market.calendar import MarketCalendar
from Webapp.market.ltp_store import LTPStore
from Webapp.market.ohlcv import OHLCVStore
from Webapp.storage import migrate
from Webapp.storage.db import make_engine, make_session_factory
from Webapp.storage.trading_models import Trade, TradeGtt, TradeOrder
from Webapp.strategy.actions import Buy

SHIPPED = Path(__file__).resolve().parents[1] / "support_files" / "param.yaml"
DEFAULTS = load_params(SHIPPED)
T0 = datetime(2026, 11, 25, 4, 30, tzinfo=UTC)  # Wednesday 25 Nov 2026, 10:00 IST, a trading day


def rig_params(**updates) -> Params:
    """The shipped params with top-level `updates` (nested models passed whole)."""
    return DEFAULTS.model_copy(update=updates)


@dataclass
class PaperRig:
    trader: Trader
    driver: InlineDriver
    gateway: InlineGateway
    broker: PaperBroker
    clock: SimulatedClock
    store: LTPStore
    sessions: object
    db_url: str

    def tick(self, symbol: str, ltp: float, seconds: float = 1.0) -> None:
        """`seconds` later, one trade of `symbol` at `ltp` (store first, like a feed)."""
        self.clock.advance(timedelta(seconds=seconds))
        now = self.clock.now()
        self.store.update(symbol, ltp, exchange_time=now, received_at=now)
        self.driver.price(symbol, ltp, now)

    def wait(self, seconds: float) -> None:
        """Let `seconds` pass with a timer tick each second (no prices)."""
        for _ in range(int(seconds)):
            self.clock.advance(timedelta(seconds=1))
            self.driver.timer(self.clock.now())

    def command(self, kind: CommandKind, actor: str = "tester", **kw) -> Command:
        cmd = Command(kind, actor, **kw)
        self.driver.command(cmd)
        return cmd

    def start(self) -> None:
        cmd = self.command(CommandKind.START, "system")
        result = cmd.wait(0)
        assert result is not None and result.ok, result

    def buy(self, symbol: str, qty: int, price: float) -> None:
        """Open a ladder as a scan would (the scan itself has its own tests)."""
        self.trader.buy(Buy(symbol, 1, qty, price), None)
        self.driver.settle()

    def rows(self, symbol: str) -> list[Trade]:
        with self.sessions() as s:
            return list(
                s.scalars(select(Trade).where(Trade.symbol == symbol).order_by(Trade.trade_id))
            )

    def orders(self, symbol: str) -> list[TradeOrder]:
        with self.sessions() as s:
            stmt = select(TradeOrder).join(Trade).where(Trade.symbol == symbol)
            return list(s.scalars(stmt.order_by(TradeOrder.id)))

    def gtts(self, symbol: str) -> list[TradeGtt]:
        with self.sessions() as s:
            stmt = select(TradeGtt).join(Trade).where(Trade.symbol == symbol)
            return list(s.scalars(stmt.order_by(TradeGtt.id)))

    def sent(self, kind: type) -> list:
        return [r for r in self.gateway.sent if isinstance(r, kind)]


def make_rig(
    db_path: Path,
    params: Params = DEFAULTS,
    *,
    universe: tuple[str, ...] = ("INFY",),
    ohlcv: OHLCVStore | None = None,
    start: datetime = T0,
    db_url: str | None = None,
    account: str = "paper",
    clock: SimulatedClock | None = None,
) -> PaperRig:
    url = db_url or f"sqlite:///{db_path}"
    migrate.upgrade(url)
    sessions = make_session_factory(make_engine(url))
    clock = clock or SimulatedClock(start)
    store = LTPStore()
    calendar = MarketCalendar.nse()

    broker = paper_account(
        sessions, params, clock=clock.now, store=store, account=account, starting_cash=1_000_000
    )
    engine = inline_engine(
        Driver.PAPER,
        broker=broker,
        sessions=sessions,
        params=params,
        clock=clock,
        store=store,
        universe=universe,
        account=account,
        ohlcv=ohlcv,
        calendar=calendar,
        market_time=True,
    )
    trader, driver, gateway = engine.trader, engine.driver, engine.gateway
    return PaperRig(trader, driver, gateway, broker, clock, store, sessions, url)
