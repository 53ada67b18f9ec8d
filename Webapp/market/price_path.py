"""The price path assumed inside a candle, for backtest fills and the replay feed.

STRATEGY.md (backtest fills): open → high → low → close when close ≥ open, else
open → low → high → close. Where a fill depends on the order of prices inside
one candle, this path is a guess; the backtest reports such fills.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from Webapp.market.calendar import MarketCalendar
from Webapp.market.candle import Candle, Timeframe

# The last tick is stamped this much before the candle's end, so it stays inside it.
PATH_END_EPSILON = timedelta(milliseconds=1)


def price_path(candle: Candle) -> tuple[float, float, float, float]:
    """The four prices in the order the candle is assumed to have traded them."""
    if candle.close >= candle.open:
        return (candle.open, candle.high, candle.low, candle.close)
    return (candle.open, candle.low, candle.high, candle.close)


class PathTick(NamedTuple):
    """One synthetic trade on a candle's path.

    `volume` is the candle's volume traded up to and including this tick (the last
    tick carries the whole candle's volume); a replay feed adds the day's volume of
    the candles before to get Kite's cumulative day volume.
    """

    ts: datetime
    price: float
    volume: int


def path_ticks(
    candle: Candle,
    steps_per_leg: int = 1,
    calendar: MarketCalendar | None = None,
    tick_size: float | None = None,
) -> list[PathTick]:
    """Ticks along price_path(candle): the open, then `steps_per_leg` evenly spaced steps
    on each of the three legs, 1 + 3 × steps_per_leg ticks in all.

    Times are spread evenly from the candle's start to its end minus PATH_END_EPSILON.
    The end is start + length; with a `calendar` it is the bar's real end (a 60m bar
    at 15:15 ends at 15:30), and a 1d candle, which needs one, is spread over its
    session 09:15–15:30. Intermediate prices are interpolated linearly and, with a
    `tick_size`, rounded to it; the four path prices are kept exactly.
    """
    if steps_per_leg < 1:
        raise ValueError(f"steps_per_leg must be at least 1, got {steps_per_leg}")
    if calendar is not None:
        if candle.timeframe is Timeframe.D1:
            start, end = calendar.session_bounds(calendar.session_date(candle.ts))
        else:
            start, end = candle.ts, calendar.bar_end(candle.ts, candle.timeframe)
    elif candle.timeframe is Timeframe.D1:
        raise ValueError("a 1d candle's ticks need a calendar to place them in its session")
    else:
        start, end = candle.ts, candle.ts + candle.timeframe.length

    points = price_path(candle)
    prices = [points[0]]
    for leg in range(3):
        begin, finish = points[leg], points[leg + 1]
        for step in range(1, steps_per_leg + 1):
            if step == steps_per_leg:
                prices.append(finish)
                continue
            price = begin + (finish - begin) * step / steps_per_leg
            if tick_size is not None:
                price = round(round(price / tick_size) * tick_size, 10)
            prices.append(price)

    count = len(prices)
    span = (end - PATH_END_EPSILON) - start
    ticks: list[PathTick] = []
    for index, price in enumerate(prices):
        ts = start + span * index / (count - 1)
        # Integer shares: the running volume rounds down, and the last tick takes the rest.
        volume = candle.volume * (index + 1) // count
        ticks.append(PathTick(ts, price, volume))
    return ticks
