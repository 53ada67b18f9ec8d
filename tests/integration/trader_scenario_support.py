"""Shared by the engine scenario tests: a trading-day start, scan history, live seconds.

The rig's T0 (Wed 25 Nov 2026, 10:00 IST) is a trading day; the day before is an NSE
holiday (Guru Nanak Jayanti), on which the scan opens nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.trading_history import flat_candles, store_history, trading_sessions, uptrend_candles
from tests.trading_rig import T0, PaperRig, rig_params
from Webapp.broker.base import Side
from Webapp.config.params import LegParams
from Webapp.execution import gateway as gw
from Webapp.market.calendar import IST, MarketCalendar
from Webapp.market.candle import Timeframe
from Webapp.market.ohlcv import OHLCVStore
from Webapp.storage.trading_models import Trade

CALENDAR = MarketCalendar.nse()
START = T0  # Wednesday 25 Nov 2026, 10:00 IST: a trading day
HOLIDAY = T0 - timedelta(days=1)  # Tuesday 24 Nov 2026, 10:00 IST: Guru Nanak Jayanti
STEP_PCT = 0.05  # each 15m candle of the made-up uptrend closes 0.05% above the last
BARS_BEFORE_TODAY = 9 * 25  # nine earlier sessions of 25 fifteen-minute bars
NO_ADDS = rig_params(p2=LegParams(trigger_pct=50.0, sl_pct=2.5))  # P1 alone: no P2 to muddle


def ist(hh: int, mm: int, ss: int = 0) -> datetime:
    """A time of START's day, given in IST."""
    day = START.astimezone(IST).date()
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=IST)


def uptrend(ohlcv: OHLCVStore, symbol: str, prev_close: float) -> None:
    """Ten sessions of rising 15m candles up to START's day whose previous session closes
    at `prev_close`: the trend test passes, and the day change is LTP / prev_close - 1."""
    sessions = trading_sessions(CALENDAR, START.astimezone(IST).date(), 10)
    start_price = prev_close / (1 + STEP_PCT / 100) ** BARS_BEFORE_TODAY
    candles = uptrend_candles(
        symbol,
        timeframe=Timeframe.M15,
        sessions=sessions,
        start_price=start_price,
        step_pct=STEP_PCT,
        calendar=CALENDAR,
    )
    store_history(ohlcv, candles)


def flat(ohlcv: OHLCVStore, symbol: str, price: float) -> None:
    """Ten sessions of 15m candles all closing at `price`: every EMA equals the close, so
    the trend test fails (close <= EMA9) whatever the day change."""
    sessions = trading_sessions(CALENDAR, START.astimezone(IST).date(), 10)
    store_history(
        ohlcv,
        flat_candles(
            symbol, timeframe=Timeframe.M15, sessions=sessions, price=price, calendar=CALENDAR
        ),
    )


def live(rig: PaperRig, prices: dict[str, float], seconds: int) -> None:
    """`seconds` of a live market: every second one trade of each symbol, then the timer."""
    for _ in range(seconds):
        for n, (symbol, ltp) in enumerate(prices.items()):
            rig.tick(symbol, ltp, seconds=1 if n == 0 else 0)
        rig.driver.timer(rig.clock.now())


def opened(rig: PaperRig, symbol: str = "INFY", ltp: float = 1000.0, qty: int = 3) -> None:
    """A price of `symbol`, then its P1 bought as a scan would (the scan has its own tests)."""
    rig.tick(symbol, ltp)
    rig.buy(symbol, qty, ltp)


def resting_exit(
    rig: PaperRig, decided_at: float, broker_sees: float, symbol: str = "INFY"
) -> None:
    """The engine decides an exit on `decided_at` while the feed has already stored the next,
    lower price, `broker_sees`, which the paper broker fills the sell against (the engine is
    one tick behind the feed, as it may be live): an exit LIMIT under it rests."""
    rig.clock.advance(timedelta(seconds=1))
    now = rig.clock.now()
    rig.store.update(symbol, broker_sees, exchange_time=now, received_at=now)
    rig.driver.price(symbol, decided_at, now)


def legs(rig: PaperRig, symbol: str = "INFY") -> list[tuple[int, str, str | None]]:
    """(position, status, exit_reason) of each of the symbol's trades rows."""
    return [(t.position_number, t.status, t.exit_reason) for t in rig.rows(symbol)]


def leg_row(rig: PaperRig, position: int, symbol: str = "INFY") -> Trade:
    (row,) = [t for t in rig.rows(symbol) if t.position_number == position]
    return row


def buys(rig: PaperRig) -> list[tuple[str, int]]:
    """(symbol, qty) of every BUY order sent, in order."""
    return [
        (r.order.symbol, r.order.quantity)
        for r in rig.sent(gw.PlaceOrder)
        if r.order.side is Side.BUY
    ]


def sells(rig: PaperRig) -> list[gw.PlaceOrder]:
    """Every SELL order the engine sent (a fired GTT's own order is not one of them)."""
    return [r for r in rig.sent(gw.PlaceOrder) if r.order.side is Side.SELL]


def calls_since(rig: PaperRig, start: int) -> list[str]:
    """The names of the broker calls sent from index `start` of the gateway's log on."""
    return [type(r).__name__ for r in rig.gateway.sent[start:]]
