"""The long-running parts of one Ladder process, built from settings and started together."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine as DbEngine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from Webapp.broker.base import Broker
from Webapp.broker.factory import (
    PAPER_ACCOUNT,
    BrokerConfigError,
    KiteCredentialSource,
    kite_broker,
    paper_broker,
)
from Webapp.config.params import Params, load_params, parse_params_text
from Webapp.config.settings import FeedKind, Settings, TradingMode
from Webapp.event_bus import EventBus
from Webapp.execution.builders import Driver, build_trader
from Webapp.execution.clock import Clock, FeedClock, WallClock
from Webapp.execution.engine import Engine, EngineState
from Webapp.execution.gateway import OrderGateway
from Webapp.execution.signal_inputs import SignalCandles
from Webapp.execution.trading_view import TradingState
from Webapp.market.calendar import MarketCalendar
from Webapp.market.candle import Timeframe
from Webapp.market.candle_recorder import CandleRecorder
from Webapp.market.feed_factory import FeedConfigError, build_feed
from Webapp.market.feeds import Feed, FeedState
from Webapp.market.feeds.replay import ReplayFeed
from Webapp.market.ltp_store import LTPStore
from Webapp.market.ohlcv import OHLCVStore
from Webapp.market.universe import UniverseMember, load_universe
from Webapp.storage import migrate
from Webapp.storage.db import make_engine, make_session_factory

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The process cannot start as configured; the message says what to change."""


def open_market_store(url: str) -> OHLCVStore:
    """The OHLCV store, migrated; an unreachable database is a start-up error, not a traceback."""
    try:
        ohlcv = OHLCVStore(url)
        ohlcv.migrate()
    except (SQLAlchemyError, ValueError) as exc:
        # The type and the driver's first line; never the URL, which may hold a password.
        reason = str(getattr(exc, "orig", exc)).splitlines()[0] if str(exc) else ""
        raise StartupError(f"market database unusable: {type(exc).__name__}: {reason}") from None
    return ohlcv


@dataclass
class Runtime:
    settings: Settings
    params: Params
    universe: list[UniverseMember]
    store: LTPStore
    bus: EventBus
    feed: Feed
    engine: Engine
    candles: CandleRecorder
    # PaperBroker (TRADING_MODE=paper) or KiteBroker (live). The engine places no
    # orders yet: the ladder strategy that drives it is the next step.
    broker: Broker
    ohlcv: OHLCVStore | None = None
    # The scan's market inputs; their previous closes are the day change on screen too.
    signal_candles: SignalCandles | None = None
    clock: Clock = field(default_factory=WallClock)
    # The app DB engine when build() opened one itself (no session factory given).
    own_db_engine: DbEngine | None = None

    @classmethod
    def build(cls, settings: Settings, sessions: sessionmaker[Session] | None = None) -> Runtime:
        """Validate everything first (params, mode, feed, broker); start nothing.

        `sessions` is the app DB's session factory (create_app's); without one the
        runtime opens its own from DATABASE_URL and closes it in stop(). Once everything
        has been validated the app DB is migrated (the paper account lives in it).
        """
        params = load_params(settings.params_path)  # ParamsError names file, key and reason
        live = settings.trading_mode is TradingMode.LIVE
        if live and settings.feed is not FeedKind.KITE:
            raise StartupError(
                f"TRADING_MODE=live needs FEED=kite (FEED={settings.feed.value} is set): live "
                "orders must follow Kite's own prices; use TRADING_MODE=paper with other feeds"
            )
        universe = load_universe(params.universe)
        store, bus = LTPStore(), EventBus()
        calendar = MarketCalendar.nse()
        # One app-DB pool for the paper account and the stored Kite credentials.
        own_db_engine = None
        if sessions is None:
            own_db_engine = make_engine(settings.resolved_database_url)
            sessions = make_session_factory(own_db_engine)
        credentials = None
        if settings.feed is FeedKind.KITE:  # one source for the feed and the broker
            credentials = KiteCredentialSource(settings, sessions)
        broker: Broker | None = None
        on_order_update = None
        if live:
            try:
                kite = kite_broker(settings, credentials, bus)
            except BrokerConfigError as exc:
                raise StartupError(str(exc)) from None
            # The ticker's order updates reach the broker; its order poll is the fallback.
            broker, on_order_update = kite, kite.ingest_order_update
        # A replay reads the market DB; the Kite feed's candles are written to it (checked
        # after the feed's own settings, so a missing key is reported first). The
        # simulator never touches it: made-up prices must not pollute the history.
        ohlcv = None
        if settings.feed is FeedKind.REPLAY:
            ohlcv = open_market_store(settings.resolved_market_database_url)
        try:
            feed = build_feed(
                settings,
                params,
                universe,
                store,
                bus,
                ohlcv,
                on_order_update=on_order_update,
                credentials=credentials,
            )
        except FeedConfigError as exc:
            raise StartupError(str(exc)) from None
        if settings.feed is FeedKind.KITE:
            ohlcv = open_market_store(settings.resolved_market_database_url)
        symbols = [member.symbol for member in universe]
        recorder = CandleRecorder(
            store,
            calendar,
            ohlcv=ohlcv if settings.feed is FeedKind.KITE else None,
            bus=bus,
            symbols=symbols,
        )
        # Without a market store (the simulator) the universe's reference prices stand in
        # for the previous closes; with one, only stored closes count.
        fallback = {} if ohlcv is not None else {m.symbol: m.ref_price for m in universe}
        # Everything is valid: bring the app DB to the current schema (the paper account
        # lives in it; the web app needs it either way).
        migrate.upgrade(settings.resolved_database_url)
        replay = settings.feed is FeedKind.REPLAY
        clock: Clock = WallClock()
        if replay:
            # A replay trades in its own market time from its first tick on (whatever
            # REPLAY_FROM is): the entry window, cooldowns and timeouts follow the replayed
            # session, not the machine's clock. The last tick's time, not the estimate
            # between ticks: scans judge freshness at tick times, as a backtest does,
            # whatever REPLAY_SPEED is.
            assert isinstance(feed, ReplayFeed)
            first_tick_at = feed.first_tick_at
            assert first_tick_at is not None  # a replay without candles was refused above
            clock = FeedClock(lambda: feed.last_tick_at, first_tick_at)
        if broker is None:
            # Orders placed between ticks price off the store's latest quote; the trader
            # drives its on_price (fills, exit timeouts, GTT triggers) before the rules.
            broker = paper_broker(settings, params, sessions, store.ltp, clock.now)
        engine = Engine(store, bus)
        gateway = OrderGateway(broker, engine.submit, clock=clock)
        signal_candles = SignalCandles(
            ohlcv, calendar, Timeframe(params.signal_timeframe), fallback_prev_close=fallback
        )
        if recorder.stores_candles:
            # Live candles are history as soon as they are stored. A replay's are not: they
            # rebuild the stored history from its own ticks, without the EMAs before it.
            signal_candles.subscribe(bus)
        trader = build_trader(
            Driver.LIVE if live else Driver.PAPER,
            broker=broker,
            submit=gateway.send,
            sessions=sessions,
            params=params,
            clock=clock,
            store=store,
            universe=symbols,
            account="live" if live else PAPER_ACCOUNT,
            calendar=calendar,
            signal_candles=signal_candles,
            params_loader=_params_loader(settings),
            market_time=replay,
        )
        broker.on_order_update(engine.submit)
        engine.attach(
            trader,
            gateway,
            autostart=settings.engine_autostart,
            price_time=(lambda q: q.exchange_time) if replay else None,
        )
        return cls(
            settings,
            params,
            universe,
            store,
            bus,
            feed,
            engine,
            recorder,
            broker,
            ohlcv=ohlcv,
            signal_candles=signal_candles,
            clock=clock,
            own_db_engine=own_db_engine,
        )

    def reference_prices(self) -> dict[str, float]:
        """Each universe symbol's previous session close at the engine's time (a replay's
        market time), for the day change on screen: the close the scan measures from."""
        if self.signal_candles is None:
            return {}
        symbols = [member.symbol for member in self.universe]
        return self.signal_candles.previous_closes(symbols, self.clock.now())

    def start(self) -> None:
        # Engine and candles first: they must be listening before the first tick.
        self.engine.start()
        self.candles.start()
        start_polling = getattr(self.broker, "start_polling", None)
        if start_polling is not None:  # Kite: the fallback for order updates a push lost
            start_polling(self.settings.kite_order_poll_s)
        self.feed.start()
        log.info(
            "runtime started: mode=%s feed=%s broker=%s symbols=%d",
            self.settings.trading_mode.value,
            self.feed.name,
            self.broker.name,
            len(self.universe),
        )
        if self.settings.trading_mode is TradingMode.LIVE:
            connected = (
                "broker connected"
                if self.broker.status().token_valid
                else "broker paused until a Kite login"
            )
            log.info("live mode: %s", connected)

    def stop(self) -> None:
        self.feed.stop()  # first: no more order updates for the broker
        stop_broker = getattr(self.broker, "stop", None)
        if stop_broker is not None:
            stop_broker()
        self.candles.stop()
        self.engine.stop()
        if self.ohlcv is not None:
            self.ohlcv.dispose()
        if self.own_db_engine is not None:
            self.own_db_engine.dispose()

    def health(self) -> dict[str, dict]:
        feed = self.feed.status()
        engine = self.engine.status()
        trading = self.engine.view()
        engine_ok = (
            engine.state is EngineState.RUNNING
            and engine.last_beat_age_s is not None
            and engine.last_beat_age_s < 5 * Engine.BEAT_S
        )
        checks = {
            "feed": {
                "ok": feed.state is FeedState.RUNNING,
                "name": feed.name,
                "state": feed.state.value,
                "ticks": feed.ticks_total,
                "detail": feed.detail,
            },
            # A trader failed closed (reconciliation could not explain something, or a bug)
            # places no orders until someone looks: that is an outage for the operator.
            "engine": {
                "ok": engine_ok and trading.state is not TradingState.FAILED,
                "state": engine.state.value,
                "trading": trading.state.value,
                "queue_depth": engine.queue_depth,
                "detail": engine.detail or trading.detail,
            },
        }
        # An expired or missing Kite token is a login prompt on the dashboard, not an
        # outage: only an open circuit (Kite unreachable or failing) makes this unhealthy.
        broker = self.broker.status()
        checks["broker"] = {
            "ok": broker.circuit != "open",
            "name": broker.name,
            "circuit": broker.circuit,
            "token_valid": broker.token_valid,
            "last_error": broker.last_error,
        }
        if self.candles.stores_candles:
            checks["candles"] = {
                "ok": not self.candles.last_error,
                "written": self.candles.candles_written,
                "detail": self.candles.last_error,
            }
        return checks


def _params_loader(settings: Settings) -> Callable[[str | None], tuple[Params, str]]:
    """Reload: the given YAML text, or param.yaml read again; a ParamsError when invalid."""

    def load(text: str | None) -> tuple[Params, str]:
        if text is None:
            params = load_params(settings.params_path)
            return params, Path(settings.params_path).read_text(encoding="utf-8")
        return parse_params_text(text, "reloaded parameters"), text

    return load
