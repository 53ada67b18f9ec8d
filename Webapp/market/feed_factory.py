"""Builds the feed that FEED names (sim, kite, replay) from settings, params and the universe."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Protocol

from Webapp.config.params import Params
from Webapp.config.settings import FeedKind, Settings
from Webapp.event_bus import EventBus
from Webapp.market.calendar import IST
from Webapp.market.candle import Timeframe
from Webapp.market.feeds import Feed, SimulatedFeed
from Webapp.market.instruments import InstrumentMap, UnknownInstrument
from Webapp.market.ltp_store import LTPStore
from Webapp.market.ohlcv import OHLCVStore
from Webapp.market.universe import UniverseMember


class KiteCredentials(Protocol):
    """The api key and the day's access token ("" when there is none yet)."""

    def api_key(self) -> str: ...

    def access_token(self) -> str: ...


class FeedConfigError(Exception):
    """The chosen feed cannot be built as configured; the message says what to set."""


def build_feed(
    settings: Settings,
    params: Params,
    universe: list[UniverseMember],
    store: LTPStore,
    bus: EventBus,
    ohlcv: OHLCVStore | None,
    *,
    on_order_update: Callable[[dict], None] | None = None,
    credentials: KiteCredentials | None = None,
) -> Feed:
    """The feed FEED names; `on_order_update` gets the Kite ticker's order updates (live).

    `credentials` is the Kite credential source the builder shares with the broker (FEED=kite
    needs it; the market layer never reaches into the broker's credential store itself).
    """
    if settings.feed is FeedKind.SIM:
        return SimulatedFeed(
            store,
            universe,
            ticks_per_second=settings.sim_ticks_per_second,
            seed=settings.sim_seed,
            stale_after_s=params.stale_after_s,
        )
    if settings.feed is FeedKind.KITE:
        if credentials is None:
            raise FeedConfigError("FEED=kite needs the Kite credentials from its builder")
        return _kite_feed(settings, params, universe, store, bus, credentials, on_order_update)
    return _replay_feed(settings, params, universe, store, ohlcv)


def _kite_feed(settings, params, universe, store, bus, credentials, on_order_update=None) -> Feed:
    # Imported here: it loads Twisted, which the other feeds never need.
    from Webapp.market.feeds.kite import KiteFeed

    api_key = credentials.api_key()
    if not api_key:
        raise FeedConfigError(
            "FEED=kite needs the Kite api key: save it on the Settings page (under FEED=sim) "
            "and log in to Kite, or set KITE_API_KEY and KITE_ACCESS_TOKEN"
        )
    # Read at every (re)connect, so a new daily token is picked up without a restart.
    access_token = credentials.access_token
    instruments = load_instruments(settings, api_key, access_token)
    try:
        tokens = instruments.for_symbols(m.symbol for m in universe)
    except UnknownInstrument as exc:
        raise FeedConfigError(f"the universe names instruments Kite does not list: {exc}") from None
    return KiteFeed(
        store=store,
        bus=bus,
        api_key=api_key,
        access_token=access_token,
        instruments=tokens,
        mode=params.feed.mode,
        stale_after_s=params.stale_after_s,
        root=settings.kite_ws_root or None,
        on_order_update=on_order_update,
    )


def load_instruments(
    settings: Settings, api_key: str = "", access_token: Callable[[], str] | None = None
) -> InstrumentMap:
    """Kite's instrument list: from KITE_INSTRUMENTS_PATH when set, else from Kite's API."""
    path: Path | None = settings.kite_instruments_path
    if path is not None:
        try:
            return InstrumentMap.from_csv(path)
        except (OSError, ValueError) as exc:
            raise FeedConfigError(f"cannot read instruments file {path}: {exc}") from None
    from kiteconnect import KiteConnect
    from kiteconnect.exceptions import KiteException
    from requests import RequestException

    token = access_token() if access_token else settings.kite_access_token
    if not token:
        raise FeedConfigError(
            "FEED=kite needs a Kite access token to fetch the instrument list: log in to Kite "
            "(Settings page, under FEED=sim), set KITE_INSTRUMENTS_PATH, or set "
            "KITE_API_KEY and KITE_ACCESS_TOKEN"
        )
    kite = KiteConnect(
        api_key or settings.kite_api_key,
        access_token=token,
        root=settings.kite_rest_root or None,
    )
    try:
        return InstrumentMap.from_kite(kite.instruments("NSE"))
    except (KiteException, RequestException) as exc:
        raise FeedConfigError(
            f"cannot fetch the instrument list from Kite: {type(exc).__name__}: {exc}"
        ) from None


def _replay_feed(settings, params, universe, store, ohlcv: OHLCVStore | None) -> Feed:
    from Webapp.market.feeds.replay import ReplayFeed

    if ohlcv is None:
        raise FeedConfigError("FEED=replay needs the market database")
    try:
        timeframe = Timeframe(settings.replay_timeframe)
    except ValueError:
        raise FeedConfigError(
            f"REPLAY_TIMEFRAME={settings.replay_timeframe!r} is not one of "
            f"{', '.join(t.value for t in Timeframe)}"
        ) from None
    start = ist_midnight(settings.replay_from) if settings.replay_from else None
    end = ist_midnight(settings.replay_to, next_day=True) if settings.replay_to else None
    try:
        return ReplayFeed(
            store,
            source=(ohlcv, [m.symbol for m in universe], timeframe, start, end),
            speed=settings.replay_speed,
            stale_after_s=params.stale_after_s,
        )
    except ValueError as exc:
        raise FeedConfigError(
            f"FEED=replay: {exc} (import candles with `flask data import`)"
        ) from None


def ist_midnight(day: date, next_day: bool = False) -> datetime:
    """00:00 IST of `day` (or of the day after), as the aware datetime the store compares."""
    midnight = datetime.combine(day, time(0), tzinfo=IST)
    return midnight + timedelta(days=1) if next_day else midnight
