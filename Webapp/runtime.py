"""The long-running parts of one Ladder process, built from settings and started together."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from Webapp.config.params import Params, load_params
from Webapp.config.settings import FeedKind, Settings, TradingMode
from Webapp.event_bus import EventBus
from Webapp.market.calendar import MarketCalendar
from Webapp.market.candle_recorder import CandleRecorder
from Webapp.market.feed_factory import FeedConfigError, build_feed, previous_closes
from Webapp.market.feeds import Feed, FeedState
from Webapp.market.ltp_store import LTPStore
from Webapp.market.ohlcv import OHLCVStore
from Webapp.market.universe import UniverseMember, load_universe
from Webapp.strategy.engine import Engine, EngineState

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
    ohlcv: OHLCVStore | None = None
    # Previous session close per symbol, for the day change on screen.
    reference_prices: dict[str, float] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        """Validate everything first (params, mode, feed); start nothing."""
        params = load_params(settings.params_path)  # ParamsError names file, key and reason
        if settings.trading_mode is TradingMode.LIVE:
            raise StartupError(
                "TRADING_MODE=live needs the Kite broker, which this version does not have yet; "
                "run with TRADING_MODE=paper"
            )
        universe = load_universe(params.universe)
        store, bus = LTPStore(), EventBus()
        calendar = MarketCalendar.nse()
        # A replay reads the market DB; the Kite feed's candles are written to it (checked
        # after the feed's own settings, so a missing key is reported first). The
        # simulator never touches it: made-up prices must not pollute the history.
        ohlcv = None
        if settings.feed is FeedKind.REPLAY:
            ohlcv = open_market_store(settings.resolved_market_database_url)
        try:
            feed = build_feed(settings, params, universe, store, bus, ohlcv)
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
        if ohlcv is None:
            references = {member.symbol: member.ref_price for member in universe}
        else:
            today = calendar.session_date(datetime.now(UTC))
            before = settings.replay_from if settings.feed is FeedKind.REPLAY else today
            references = previous_closes(ohlcv, symbols, before or today)
        return cls(
            settings,
            params,
            universe,
            store,
            bus,
            feed,
            Engine(store, bus),
            recorder,
            ohlcv=ohlcv,
            reference_prices=references,
        )

    def start(self) -> None:
        # Engine and candles first: they must be listening before the first tick.
        self.engine.start()
        self.candles.start()
        self.feed.start()
        log.info(
            "runtime started: mode=%s feed=%s symbols=%d",
            self.settings.trading_mode.value,
            self.feed.name,
            len(self.universe),
        )

    def stop(self) -> None:
        self.feed.stop()
        self.candles.stop()
        self.engine.stop()
        if self.ohlcv is not None:
            self.ohlcv.dispose()

    def health(self) -> dict[str, dict]:
        feed = self.feed.status()
        engine = self.engine.status()
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
            "engine": {
                "ok": engine_ok,
                "state": engine.state.value,
                "queue_depth": engine.queue_depth,
                "detail": engine.detail,
            },
        }
        if self.candles.stores_candles:
            checks["candles"] = {
                "ok": not self.candles.last_error,
                "written": self.candles.candles_written,
                "detail": self.candles.last_error,
            }
        return checks
