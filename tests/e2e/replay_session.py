"""A paper session on a replayed day, served for real: candles that open ladders, the app on HTTP.

`ladder_day` makes the market history of one symbol for a replay of `day`: ten sessions of
a steady 15m uptrend before it (enough for EMA200), then a day that opens with a gap up
and keeps rising bar after bar. Its 5m candles are what the replay plays; its 15m candles
(the 5m ones aggregated) are what the scan reads as the last closed signal candle, so the
trend holds and no candle is missing at any market time of the replay.

`serve_replay_session` runs the app as `python -m Webapp` does (create_app, then
start_services: paper broker, replay feed, engine, Socket.IO bridges) on a real local
HTTP server thread, with an admin user, and stops it all afterwards.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from flask import Flask

from tests.conftest import ADMIN_PASSWORD, REPO_ROOT, add_user
from tests.trading_history import store_history, trading_sessions, uptrend_candles
from Webapp import create_app
from Webapp.config.settings import load_settings
from Webapp.execution.runtime import Runtime
from Webapp.market.calendar import MarketCalendar
from Webapp.market.candle import Candle, Timeframe
from Webapp.market.ohlcv import OHLCVStore
from Webapp.market.rollup import roll_up
from Webapp.services import start_services, stop_services

SHIPPED_PARAMS = REPO_ROOT / "support_files" / "param.yaml"
HISTORY_SESSIONS = 10  # 250 bars of 15m: EMA200 is seeded with 50 bars to spare
HISTORY_STEP_PCT = 0.05  # each 15m bar before the replayed day closes this much higher


@dataclass(frozen=True)
class DayShape:
    """How the replayed day trades: a gap at the open, then every 5m bar a little higher."""

    gap_pct: float  # the first bar's open over the previous session's close
    step_pct: float  # each 5m bar closes this much above its open (its low; its high is the close)
    bars: int  # 5m bars from 09:15; a multiple of 3, so the 15m candles are whole
    first_played: int = 0  # 5m bars stored (and so replayed) from this one on; 15m: all


def ladder_day(
    symbol: str,
    *,
    day: date,
    start_price: float,
    shape: DayShape,
    calendar: MarketCalendar,
) -> tuple[list[Candle], float]:
    """`symbol`'s history for a replay of `day` (15m before and on it, 5m on it), and the
    previous session's close the day change is measured from.

    The replay starts with the first 5m bar stored: `first_played` skips the quiet minutes
    before the entry window opens, while the scan still finds every 15m candle of the day.
    """
    if shape.bars % 3:
        raise ValueError(f"bars must be a multiple of 3 (whole 15m candles), got {shape.bars}")
    before = trading_sessions(calendar, day, HISTORY_SESSIONS + 1)[:-1]
    history = uptrend_candles(
        symbol,
        timeframe=Timeframe.M15,
        sessions=before,
        start_price=start_price,
        step_pct=HISTORY_STEP_PCT,
        calendar=calendar,
    )
    prev_close = history[-1].close
    five: list[Candle] = []
    price = prev_close * (1 + shape.gap_pct / 100)
    for ts in calendar.expected_bars(day, Timeframe.M5)[: shape.bars]:
        close = round(price * (1 + shape.step_pct / 100), 2)
        five.append(Candle(symbol, Timeframe.M5, ts, price, close, price, close, 1000))
        price = close
    fifteen = roll_up(five, Timeframe.M15)
    return history + fifteen + five[shape.first_played :], prev_close


def store_market(url: str, candles: Sequence[Candle]) -> None:
    """A fresh OHLCV store at `url` holding `candles` with their EMAs."""
    ohlcv = OHLCVStore(url)
    try:
        ohlcv.migrate()
        store_history(ohlcv, candles)
    finally:
        ohlcv.dispose()


def write_params(path: Path, **values: object) -> Path:
    """The shipped param.yaml with top-level scalar keys set to `values`, written to `path`."""
    text = SHIPPED_PARAMS.read_text(encoding="utf-8")
    for key, value in values.items():
        text, found = re.subn(rf"(?m)^{re.escape(key)}:\s*\S+", f"{key}: {value}", text)
        if found != 1:
            raise KeyError(f"param.yaml has no top-level scalar {key!r}")
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class ReplaySession:
    url: str
    app: Flask
    runtime: Runtime
    admin_password: str


@contextmanager
def serve_replay_session(
    folder: Path, *, day: date, speed: float, params_path: Path, market_url: str
) -> Iterator[ReplaySession]:
    """The app in paper mode on a replay of `day` at `speed`×, served on a free local port."""
    from werkzeug.serving import make_server

    settings = load_settings(
        instance_path=folder / "instance",
        database_url=f"sqlite:///{folder / 'app.db'}",
        secret_key="replay-session-secret-not-for-production",
        market_database_url=market_url,
        trading_mode="paper",
        feed="replay",
        params_path=params_path,
        replay_timeframe="5m",
        replay_from=day,
        replay_to=day,
        replay_speed=speed,
        engine_autostart=True,
    )
    app = create_app({"TESTING": True}, settings=settings)
    try:
        runtime = start_services(app)  # migrates the app DB first
        add_user(app, "admin", ADMIN_PASSWORD, "admin")
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
        thread.start()
        try:
            yield ReplaySession(
                f"http://127.0.0.1:{server.server_port}/", app, runtime, ADMIN_PASSWORD
            )
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)
    finally:
        stop_services(app)
        app.extensions["ladder"].db_engine.dispose()
