"""One builder of a trader per driver (live, paper, backtest): the only place a Trader is wired.

The runtime (threaded engine), the backtest runner, the test rigs and the benchmarks all
build their trader here, so a driver's settings (which clock a tick's age is judged by,
whether the paper exchange runs before the rules, how often live GTTs are listed) are
written once. `inline_engine` adds the single-threaded driver backtests and tests use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy.orm import Session, sessionmaker

from Webapp.broker.base import Broker
from Webapp.broker.paper import PaperBroker
from Webapp.config.params import Params
from Webapp.execution.clock import Clock
from Webapp.execution.controls import ParamsLoader
from Webapp.execution.inline import InlineDriver, InlineGateway
from Webapp.execution.signal_inputs import SignalCandles
from Webapp.execution.trader import Submit, Trader, TraderConfig
from Webapp.market.calendar import MarketCalendar
from Webapp.market.candle import Timeframe
from Webapp.market.ltp_store import LTPStore
from Webapp.market.ohlcv import OHLCVStore

# Live: the GTT list is read this often, to learn of triggers whose order updates were lost.
LIVE_GTT_SYNC = timedelta(seconds=30)


class Driver(StrEnum):
    LIVE = "live"  # KiteBroker; the exchange fires GTTs and fills orders
    PAPER = "paper"  # PaperBroker on live, simulated or replayed prices
    BACKTEST = "backtest"  # PaperBroker on candles replayed in simulated time


def build_trader(
    driver: Driver,
    *,
    broker: Broker,
    submit: Submit,
    sessions: sessionmaker[Session],
    params: Params,
    clock: Clock,
    store: LTPStore,
    universe: Sequence[str],
    account: str,
    ohlcv: OHLCVStore | None = None,
    calendar: MarketCalendar | None = None,
    signal_candles: SignalCandles | None = None,
    params_loader: ParamsLoader | None = None,
    market_time: bool = False,
) -> Trader:
    """The trader of one driver. `market_time`: a paper replay judges a tick's age by its
    market time, as a backtest always does; `signal_candles` defaults to the OHLCV store's."""
    calendar = calendar or MarketCalendar.nse()
    if signal_candles is None:
        signal_candles = SignalCandles(ohlcv, calendar, Timeframe(params.signal_timeframe))
    exchange = None
    if driver is not Driver.LIVE:
        if not isinstance(broker, PaperBroker):
            raise TypeError(f"the {driver.value} driver trades on a PaperBroker, not {broker!r}")
        exchange = broker.on_price  # STRATEGY.md step 1: the exchange side before the rules
    config = TraderConfig(
        account=account,
        universe=list(universe),
        use_exchange_time=driver is Driver.BACKTEST or market_time,
        gtt_sync_every=LIVE_GTT_SYNC if driver is Driver.LIVE else None,
    )
    return Trader(
        config=config,
        broker=broker,
        sessions=sessions,
        params=params,
        calendar=calendar,
        clock=clock,
        store=store,
        signal_candles=signal_candles,
        submit=submit,
        exchange=exchange,
        params_loader=params_loader,
    )


def paper_account(
    sessions: sessionmaker[Session],
    params: Params,
    *,
    clock: Callable[[], datetime],
    store: LTPStore,
    account: str,
    starting_cash: float,
) -> PaperBroker:
    """The paper account `account` in the app DB, pricing orders off `store`'s quotes."""
    return PaperBroker(
        sessions, params, clock=clock, starting_cash=starting_cash, ltp=store.ltp, account=account
    )


@dataclass
class InlineEngine:
    """A trader with the single-threaded driver: broker calls run at once, in order."""

    trader: Trader
    driver: InlineDriver
    gateway: InlineGateway
    broker: Broker


def inline_engine(
    driver: Driver,
    *,
    broker: Broker,
    sessions: sessionmaker[Session],
    params: Params,
    clock: Clock,
    store: LTPStore,
    universe: Sequence[str],
    account: str,
    ohlcv: OHLCVStore | None = None,
    calendar: MarketCalendar | None = None,
    market_time: bool = False,
) -> InlineEngine:
    gateway = InlineGateway(broker, clock)
    trader = build_trader(
        driver,
        broker=broker,
        submit=gateway.send,
        sessions=sessions,
        params=params,
        clock=clock,
        store=store,
        universe=universe,
        account=account,
        ohlcv=ohlcv,
        calendar=calendar,
        market_time=market_time,
    )
    return InlineEngine(trader, InlineDriver(trader, gateway, broker), gateway, broker)
