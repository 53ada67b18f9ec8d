"""The long-running parts of one Ladder process, built from settings and started together."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from Webapp.config.params import Params, load_params
from Webapp.config.settings import FeedKind, Settings, TradingMode
from Webapp.event_bus import EventBus
from Webapp.market.feeds import Feed, FeedState, SimulatedFeed
from Webapp.market.ltp_store import LTPStore
from Webapp.market.universe import UniverseMember, load_universe
from Webapp.strategy.engine import Engine, EngineState

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The process cannot start as configured; the message says what to change."""


@dataclass
class Runtime:
    settings: Settings
    params: Params
    universe: list[UniverseMember]
    store: LTPStore
    bus: EventBus
    feed: Feed
    engine: Engine

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        """Validate everything first (params, mode, feed); start nothing."""
        params = load_params(settings.params_path)  # ParamsError names file, key and reason
        if settings.trading_mode is TradingMode.LIVE:
            raise StartupError(
                "TRADING_MODE=live needs the Kite broker, which this version does not have yet; "
                "run with TRADING_MODE=paper"
            )
        if settings.feed is not FeedKind.SIM:
            raise StartupError(
                f"FEED={settings.feed.value} is not available in this version; run with FEED=sim"
            )
        universe = load_universe(params.universe)
        store = LTPStore()
        bus = EventBus()
        feed = SimulatedFeed(
            store,
            universe,
            ticks_per_second=settings.sim_ticks_per_second,
            seed=settings.sim_seed,
            stale_after_s=params.stale_after_s,
        )
        return cls(settings, params, universe, store, bus, feed, Engine(store, bus))

    @property
    def reference_prices(self) -> dict[str, float]:
        """Previous close per symbol, for the day change (the simulator starts there)."""
        return {member.symbol: member.ref_price for member in self.universe}

    def start(self) -> None:
        # Engine first: it must be listening before the first tick arrives.
        self.engine.start()
        self.feed.start()
        log.info(
            "runtime started: mode=%s feed=%s symbols=%d",
            self.settings.trading_mode.value,
            self.feed.name,
            len(self.universe),
        )

    def stop(self) -> None:
        self.feed.stop()
        self.engine.stop()

    def health(self) -> dict[str, dict]:
        feed = self.feed.status()
        engine = self.engine.status()
        engine_ok = (
            engine.state is EngineState.RUNNING
            and engine.last_beat_age_s is not None
            and engine.last_beat_age_s < 5 * Engine.BEAT_S
        )
        return {
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
